"""Emotion heads: a small network on feature groups, and its file (safetensors + a JSON header).

A head file is one ``.safetensors`` file; its JSON header (label names, task, feature groups and
dims, backbone id and weights sha256, training data, command, date, validation metrics) is kept
in the safetensors metadata under ``emo_head``, and a readable copy is written beside it as
``<file>.json``. Loading never unpickles anything.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emo.errors import ModelError
from emo.io.jsonl import surrogate_at, surrogate_problem
from emo.tasks import HEAD_TASKS, get_task

if TYPE_CHECKING:
    import torch

    from emo.models.headnet import HeadNet

FORMAT = "emo-head/1"
META_KEY = "emo_head"
# Object probabilities span many decades; their log is what a linear layer can use.
GROUP_TRANSFORMS = {"object": "log"}
# A temperature outside this range is a broken header, not a calibration.
TEMPERATURE_RANGE = (0.01, 100.0)


class Head:
    """A trained head and its header. ``header`` is the JSON written with it (see module doc).

    A head read from a file keeps its tensors as numpy arrays and builds its torch network on
    first use (``net``), so loading and checking heads costs no torch import.
    """

    def __init__(self, net: HeadNet | None, header: dict[str, Any], source: str = "",
                 backbone_state: Mapping[str, Any] | None = None,
                 state: Mapping[str, np.ndarray] | None = None) -> None:
        if net is None and state is None:
            raise ValueError("a head needs its network or its stored tensors")
        self._net = net
        self._state = dict(state) if state is not None else None
        self.header = header
        self.source = source  # where it was loaded from (name or path), for messages
        # A fine-tuned head carries its own backbone weights (``emo fit --finetune``).
        self._backbone_state = dict(backbone_state) if backbone_state is not None else None
        if net is not None:
            net.temperature = self.temperature

    @property
    def net(self) -> HeadNet:
        """The torch network (built from the stored tensors on first use)."""
        if self._net is None:
            assert self._state is not None
            try:
                self._net = _net_from_state(self.header["architecture"], self.header["task"], self._state)
            except (ImportError, OSError, MemoryError, RuntimeError) as e:  # no torch here, no memory: the run's, not an input's
                lines = str(e).strip().splitlines()
                raise ModelError(f"cannot build head {self.name}: {type(e).__name__}: "
                                 f"{lines[0][:200] if lines else ''}") from None
            self._net.temperature = self.temperature
            self._state = None
        return self._net

    @property
    def temperature(self) -> float:
        """The header's ``temperature`` (1.0 when absent): logits are divided by it before softmax."""
        return float(self.header.get("temperature", 1.0))

    def set_temperature(self, value: float) -> None:
        """Store a fitted temperature in the header and apply it to the network (classify heads)."""
        check_temperature(value, self.task)
        self.header["temperature"] = float(value)
        if self._net is not None:
            self._net.temperature = float(value)

    @property
    def in_dim(self) -> int:
        """Length of the stacked feature vector the head takes."""
        return sum(self.dims.values())

    @property
    def backbone_state(self) -> dict[str, torch.Tensor] | None:
        """A fine-tuned head's backbone weights as torch tensors, else None."""
        st = self._backbone_state
        if st is not None and any(isinstance(v, np.ndarray) for v in st.values()):
            import torch

            st = self._backbone_state = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                         for k, v in st.items()}
        return st

    @backbone_state.setter
    def backbone_state(self, value: Mapping[str, Any] | None) -> None:
        self._backbone_state = dict(value) if value is not None else None

    @property
    def finetuned(self) -> dict[str, Any] | None:
        """``{"id": ...}`` for a head with its own backbone weights, else None."""
        return self.header.get("finetuned") or None

    def feature_key(self, group: str) -> str:
        """Where this head's group lives in ``item.features``: a fine-tuned head's ``deep`` is its
        own (``deep@<id>``), so features computed by the stock backbone are never fed to it."""
        ft = self.finetuned
        return f"{group}@{ft['id']}" if ft and group in ("object", "deep") else group

    @property
    def task(self) -> str:
        return self.header["task"]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.header["labels"])

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.header["groups"])

    @property
    def dims(self) -> dict[str, int]:
        return {g: int(d) for g, d in self.header["dims"].items()}

    @property
    def backbone(self) -> dict[str, str]:
        return self.header.get("backbone") or {}

    @property
    def name(self) -> str:
        return self.header.get("name") or self.source

    def stack(self, features: Mapping[str, Any]) -> np.ndarray:
        """One item's groups, concatenated in the head's order: ``(D,) float32``.

        Raises ValueError naming the group that is missing or has the wrong size.
        """
        parts = []
        for g in self.groups:
            key = self.feature_key(g)
            if key not in features:
                raise ValueError(f"no {g!r} features")
            raw = np.asarray(features[key])
            if raw.dtype.kind not in "fiu":  # booleans, strings, nulls: not features, whatever their count
                raise ValueError(f"{g!r} holds {raw.dtype.name} values, not numbers")
            a = raw.astype(np.float32).reshape(-1)
            if a.shape[0] != self.dims[g]:
                raise ValueError(f"{g!r} has {a.shape[0]} values; head {self.name} needs {self.dims[g]}")
            if not np.isfinite(a).all():
                raise ValueError(f"{g!r} has values that are not finite")
            parts.append(a)
        return np.concatenate(parts)

    def predict(self, X: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """``(N, D)`` stacked features -> ``(N, C)`` probabilities or ``(N, 2)`` valence, arousal.

        ``calibrated=False`` ignores the header's temperature: the probabilities as trained.
        """
        return self.net.predict_array(X, temperature=None if calibrated else 1.0)

    def check_backbone(self, backbone: str, sha256: str) -> None:
        """Refuse a head whose object/deep features came from another network or other weights."""
        if not any(g in ("object", "deep") for g in self.groups):
            return
        want = self.backbone
        if want.get("id") and want["id"] != backbone:
            raise ModelError(
                f"head {self.name} was trained on {want['id']} features, this run uses {backbone}; "
                f"run with --backbone {want['id']} or fit a head for {backbone}")
        if want.get("sha256") and sha256 and not (want["sha256"].startswith(sha256) or sha256.startswith(want["sha256"])):
            raise ModelError(
                f"head {self.name} was trained on {want['id']} weights sha256 {want['sha256'][:12]}…, "
                f"this run's weights are {sha256[:12]}…; refit the head on these weights")

    def linear_layer(self) -> tuple[np.ndarray, np.ndarray]:
        """The head as one linear map on its raw input, for class activation maps.

        Only for a linear head (no hidden layers, no log transform): the standardisation is folded
        in and the members' logits averaged, so ``logits = x @ W.T + b`` with ``W (C, D)``, ``b (C,)``.
        """
        import torch
        from torch import nn

        if self.net.hidden or any(isinstance(m, nn.Linear) for mem in self.net.members for m in list(mem)[:-1]):
            raise ModelError(f"head {self.name} has hidden layers; a class activation map needs a linear head")
        if bool(self.net.log_mask.any()):
            raise ModelError(f"head {self.name} takes log-object features; not linear in its input")
        ws = [mem[-1].weight.detach().double() for mem in self.net.members]
        bs = [mem[-1].bias.detach().double() for mem in self.net.members]
        # Divided by the temperature, so softmax of these logits is the head's calibrated probability.
        W, b = torch.stack(ws).mean(0) / self.temperature, torch.stack(bs).mean(0) / self.temperature
        mean, std = self.net.in_mean.double(), self.net.in_std.double()
        Wf = W / std
        bf = b - (Wf * mean).sum(1)
        return Wf.float().numpy(), bf.float().numpy()


def check_temperature(value: Any, task: str) -> None:
    """Raise ValueError unless ``value`` is a usable temperature for a ``task`` head."""
    lo, hi = TEMPERATURE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
        raise ValueError(f"temperature {value!r} is not a number between {lo:g} and {hi:g}")
    if get_task(task).regression and float(value) != 1.0:
        raise ValueError("only a head of class probabilities has a temperature")


def _tensors(net: HeadNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}


def save_head(head: Head, path: str | Path) -> Path:
    """Write ``path`` (safetensors with the header in its metadata) and ``path.json``, atomically."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = dict(head.header)
    header["format"] = FORMAT
    header["architecture"] = {"in_dim": head.net.in_dim, "n_out": head.net.n_out, "hidden": list(head.net.hidden),
                              "members": len(head.net.members)}
    tensors = _tensors(head.net)
    tensors["log_mask"] = tensors["log_mask"].to(torch.uint8)
    if head.backbone_state is not None:
        tensors.update({BACKBONE_PREFIX + k: v.detach().contiguous().clone() for k, v in head.backbone_state.items()})
        header["finetuned"] = {"id": _state_id(head.backbone_state), "base": header.get("backbone", {})}
    # A head emo would refuse to load is not written: training that diverged is an error here.
    bad = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if bad:
        raise ModelError(f"cannot write {path}: training diverged, {bad[0]} holds values that are not finite "
                         "(a lower --lr or --weight-decay may help)")
    where = surrogate_at(header)
    if where is not None:  # load_head_file refuses such a header: never write a head emo cannot read
        raise ModelError(f"cannot write {path}: its header's {where} holds text that is not UTF-8")
    try:
        text = json.dumps(header, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise ModelError(f"cannot write {path}: its header holds a number that is not finite "
                         "(training diverged: a lower --lr or --weight-decay may help)") from None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={META_KEY: text})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a head is a shareable file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _replace_text(Path(str(path) + ".json"), text + "\n")
    head.header = header
    return path


BACKBONE_PREFIX = "backbone."


def _replace_text(path: Path, text: str) -> None:
    """Write ``path`` through a temporary file renamed over it: a link standing there is
    replaced, never followed, and a reader never sees half the text."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _state_id(state: Mapping[str, torch.Tensor]) -> str:
    """A short digest of backbone weights: names a fine-tuned head's features and engine."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _build_net(arch: Mapping[str, Any], task: str) -> HeadNet:
    from emo.models.headnet import HeadNet

    net = HeadNet(int(arch["in_dim"]), int(arch["n_out"]), task)
    for _ in range(int(arch["members"])):
        net.add_member(net.new_member(arch["hidden"]))
    return net


def _int_arch(arch: Mapping[str, Any]) -> dict[str, Any]:
    """The header's architecture with whole numbers only (``8``, not ``"8"`` or ``8.5``)."""

    def whole(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise ValueError(f"architecture size {v!r} is not a whole number")
        return int(v)

    return {**arch, "in_dim": whole(arch["in_dim"]), "n_out": whole(arch["n_out"]),
            "members": whole(arch["members"]), "hidden": [whole(h) for h in arch["hidden"]]}


def state_count(arch: Mapping[str, Any]) -> int:
    """How many tensors :func:`state_shapes` lists for ``arch``, without listing them: five
    normalisation tensors, then a weight and a bias per Linear layer of every member."""
    return 5 + 2 * int(arch["members"]) * (len(arch["hidden"]) + 1)


def state_shapes(arch: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes a :class:`HeadNet` of ``arch`` has, by arithmetic alone.

    Each member is ``Sequential(Dropout, (Linear, ReLU, Dropout) per hidden layer, Linear)``, so its
    Linear layers sit at indices 1, 4, 7, ... (a test holds this to the real network's state dict).
    """
    in_dim, n_out, members = int(arch["in_dim"]), int(arch["n_out"]), int(arch["members"])
    hidden = [int(h) for h in arch["hidden"]]
    if min([in_dim, n_out, members, *hidden]) < 1:
        raise ValueError("the header's architecture has a size below 1")
    shapes: dict[str, tuple[int, ...]] = {"log_mask": (in_dim,), "in_mean": (in_dim,), "in_std": (in_dim,),
                                          "out_mean": (n_out,), "out_std": (n_out,)}
    for m in range(members):
        prev = in_dim
        for j, h in enumerate([*hidden, n_out]):
            shapes[f"members.{m}.{1 + 3 * j}.weight"] = (h, prev)
            shapes[f"members.{m}.{1 + 3 * j}.bias"] = (h,)
            prev = h
    return shapes


def _net_from_state(arch: Mapping[str, Any], task: str, state: Mapping[str, np.ndarray]) -> HeadNet:
    import torch

    with torch.device("meta"):  # no random initialisation of weights that are replaced at once
        net = _build_net(arch, task)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state.items()}  # own, writable copies
    tensors["log_mask"] = tensors["log_mask"].bool()
    net.load_state_dict(tensors, strict=True, assign=True)
    return net.eval()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _str_list(header: Mapping[str, Any], key: str) -> list[str]:
    v = header[key]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"{key!r} must be a non-empty list of names, not {json.dumps(v)[:60]}")
    if len(set(v)) != len(v):
        raise ValueError(f"{key!r} names one entry twice")
    return v


def check_header(header: Any, text: str | None = None) -> dict[str, Any]:
    """The fields of a head header, each checked for its type; raises ValueError naming the first
    wrong one (a header is data from a file, so every field is untrusted). ``text``: the JSON the
    header was parsed from, when known: without a ``\\uD800``-``\\uDFFF`` escape in it no string
    can hold a lone surrogate, so the header is not walked for one."""
    if not isinstance(header, dict):
        raise ValueError(f"the header is a JSON {type(header).__name__}, not an object")
    if header.get("format") != FORMAT:
        raise ValueError(f"format {str(header.get('format'))[:40]!r}, expected {FORMAT}")
    if header.get("task") not in HEAD_TASKS:
        raise ValueError(f"task {str(header.get('task'))[:40]!r} is not classify or va")
    if not isinstance(header.get("architecture"), dict):
        raise ValueError("'architecture' must be an object")
    _str_list(header, "labels")
    groups = _str_list(header, "groups")
    dims = header["dims"]
    if not isinstance(dims, dict) or set(dims) != set(groups):
        raise ValueError("'dims' must be an object giving each group's size")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims.values()):
        raise ValueError("'dims' must hold whole numbers of 1 or more")
    for key in ("backbone", "transforms"):
        v = header.get(key, {})
        if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
            raise ValueError(f"{key!r} must be an object of strings")
    ft = header.get("finetuned")
    if ft is not None and not (isinstance(ft, dict) and isinstance(ft.get("id", ""), str)):
        raise ValueError("'finetuned' must be an object with a string id")
    if not isinstance(header.get("name", ""), str):
        raise ValueError("'name' must be a string")
    problem = surrogate_problem(header, text)
    if problem:  # its labels and name go into records, messages and sidecars
        raise ValueError(problem)
    return header


# Values a fine-tuned head may carry for its backbone (1 GiB of float32): more is no head.
MAX_BACKBONE_VALUES = 1 << 28


def _checked_header(path: Path, text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and its architecture, every field checked; else a one-line :class:`ModelError`."""
    try:
        header = check_header(json.loads(text, parse_constant=_no_constants), text)
        arch = header["architecture"] = _int_arch(header["architecture"])
        if len(header["labels"]) != int(arch["n_out"]) and not get_task(header["task"]).regression:
            raise ValueError("label count differs from the output size")
        if sum(int(d) for d in header["dims"].values()) != int(arch["in_dim"]):
            raise ValueError("feature dims do not add up to the input size")
        check_temperature(header.get("temperature", 1.0), header.get("task"))
    except (KeyError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise ModelError(f"{path}: broken head file ({type(e).__name__}: {str(e)[:200]})") from None
    return header, arch


def _check_shapes(path: Path, arch: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> None:
    """The stored tensors' shapes against the header's architecture, by arithmetic: a forged
    header or index must not make us allocate memory the head does not need."""
    head = {k: v for k, v in shapes.items() if not k.startswith(BACKBONE_PREFIX)}
    try:
        # Counted first: a header claiming 10^9 members must not make us list 10^9 layers.
        if state_count(arch) != len(head) or state_shapes(arch) != head:
            raise ValueError("the header's architecture does not match the stored tensors")
    except ValueError as e:
        raise ModelError(f"{path}: broken head file (ValueError: {e})") from None
    values = sum(int(np.prod(v, dtype=np.float64)) for k, v in shapes.items() if k.startswith(BACKBONE_PREFIX))
    if values > MAX_BACKBONE_VALUES:
        raise ModelError(f"{path}: broken head file (backbone weights of {values} values; "
                         f"a head carries at most {MAX_BACKBONE_VALUES})")


# Types the mask of log-transformed inputs may be stored in (safetensors' names; numpy holds each).
_MASK_DTYPES = frozenset({"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64"})


def load_head_file(path: str | Path, source: str = "") -> Head:
    """Read a head file written by :func:`save_head`; anything else is a :class:`ModelError`.

    Every check (format, shapes against the header's architecture, labels, dims) runs on the
    stored arrays without torch; the network is built when the head first predicts.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not _is_file(path):
        raise ModelError(f"head file {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            if META_KEY not in meta:
                raise ModelError(f"{path}: a safetensors file without an emo head header")
            header, arch = _checked_header(path, meta[META_KEY])
            # Shapes come from the file's index: nothing is read into memory before they fit.
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            _check_shapes(path, arch, shapes)
            # Types from the index too, so a tensor numpy cannot hold (bf16, float8) is refused
            # by name instead of failing inside the reader.
            dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
            odd = sorted({d for k, d in dtypes.items() if d != "F32" and (k != "log_mask" or d not in _MASK_DTYPES)})
            if odd:
                raise ModelError(f"{path}: broken head file (head tensors must be float32, not {', '.join(odd)})")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except ModelError:
        raise
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise ModelError(f"{path}: not a safetensors head file ({str(e)[:200]})") from None
    try:
        bb = {k[len(BACKBONE_PREFIX):]: v for k, v in tensors.items() if k.startswith(BACKBONE_PREFIX)}
        tensors = {k: v for k, v in tensors.items() if not k.startswith(BACKBONE_PREFIX)}
        if any(v.dtype != np.float32 for k, v in tensors.items() if k != "log_mask"):
            raise ValueError("head tensors must be float32")
        if not all(np.isfinite(v).all() for k, v in tensors.items() if k != "log_mask"):
            raise ValueError("head tensors hold values that are not finite")
        if header.get("finetuned") and not bb:
            raise ValueError("a fine-tuned head without its backbone weights")
    except (KeyError, ValueError, TypeError, OverflowError) as e:
        raise ModelError(f"{path}: broken head file ({type(e).__name__}: {str(e)[:200]})") from None
    return Head(None, header, source or str(path), bb or None, state=tensors)


def _is_file(p: Path) -> bool:
    """``p.is_file()`` that answers False where the system refuses the lookup (name too long...)."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def load_head(spec: str) -> Head:
    """A shipped head by name (``emotion6``, ``sentiment``, ``va``, see ``emo models``) or a file."""
    from emo.heads import SHIPPED, head_path

    if spec in SHIPPED:
        p = head_path(spec)
        if not p.is_file():
            raise ModelError(f"shipped head {spec} is missing from this installation ({p})")
        return load_head_file(p, spec)
    p = Path(os.path.expanduser(spec))
    if _is_file(p):
        return load_head_file(p)
    raise ModelError(f"no head {spec!r}: not a file, and not one of the shipped heads ({', '.join(SHIPPED)})")


def new_head(groups: Sequence[str], dims: Mapping[str, int], task: str, labels: Sequence[str],
             backbone: str = "", backbone_sha256: str = "") -> Head:
    """An untrained head for ``groups`` (in this order) with the given dims and output labels."""
    in_dim = sum(int(dims[g]) for g in groups)
    mask = np.concatenate([np.full(int(dims[g]), GROUP_TRANSFORMS.get(g) == "log") for g in groups])
    outputs = get_task(task).output_names(tuple(labels))
    n_out = len(outputs)
    header = {
        "format": FORMAT,
        "task": task,
        "labels": list(outputs),
        "groups": list(groups),
        "dims": {g: int(dims[g]) for g in groups},
        "transforms": {g: GROUP_TRANSFORMS[g] for g in groups if g in GROUP_TRANSFORMS},
        "backbone": {"id": backbone, "sha256": backbone_sha256} if any(g in ("object", "deep") for g in groups) else {},
    }
    from emo.models.headnet import HeadNet

    return Head(HeadNet(in_dim, n_out, task, mask), header)


def cam_layer(spec: str = "") -> tuple[np.ndarray, np.ndarray, tuple[str, ...], Head]:
    """A linear emotion layer on ``deep`` for class activation maps: ``(W (C, D), b (C,), labels, head)``.

    ``spec`` names a head or a file; by default the shipped linear ``emotion6_linear`` head. Since
    the backbone's ``deep`` embedding is the global average of its last feature map ``F (D, h, w)``,
    the map of class ``c`` is ``W[c] @ F`` at each position (plus ``b[c]``), and its average is the
    head's logit. Raises :class:`ModelError` if the head is not linear on ``deep`` alone.
    """
    from emo.heads import CAM_HEAD

    head = load_head(spec or CAM_HEAD)
    if head.groups != ("deep",):
        raise ModelError(f"head {head.name} takes {', '.join(head.groups)}; a CAM head takes deep alone")
    W, b = head.linear_layer()
    return W, b, head.labels, head
