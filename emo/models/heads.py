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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emo.errors import ModelError

FORMAT = "emo-head/1"
META_KEY = "emo_head"
# Object probabilities span many decades; their log is what a linear layer can use.
GROUP_TRANSFORMS = {"object": "log"}
LOG_EPS = 1e-4


class HeadNet(nn.Module):
    """Standardise, then average ``members`` MLPs: ``(B, D) float32`` raw features ->
    ``(B, C)`` class probabilities (classify) or ``(B, 2)`` valence, arousal on 1-9 (va).

    ``log_mask`` marks input columns that go through ``log(x + 1e-4)`` first (object groups).
    """

    def __init__(self, in_dim: int, n_out: int, task: str, log_mask: np.ndarray | None = None) -> None:
        super().__init__()
        self.in_dim, self.n_out, self.task = in_dim, n_out, task
        mask = torch.zeros(in_dim, dtype=torch.bool) if log_mask is None else torch.as_tensor(log_mask, dtype=torch.bool)
        self.register_buffer("log_mask", mask)
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(n_out))
        self.register_buffer("out_std", torch.ones(n_out))
        self.members = nn.ModuleList()
        self.hidden: tuple[int, ...] = ()

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        if bool(self.log_mask.any()):
            x = torch.where(self.log_mask, torch.log(x.clamp_min(0) + LOG_EPS), x)
        return x

    def fit_input(self, X: np.ndarray) -> None:
        """Set the standardisation from training features ``X (N, D)``."""
        x = self._transform(torch.as_tensor(X, dtype=torch.float32))
        self.in_mean.copy_(x.mean(0))
        self.in_std.copy_(x.std(0, unbiased=False).clamp_min(1e-6))

    def fit_output(self, Y: np.ndarray) -> None:
        """Set the target standardisation (regression) from ``Y (N, n_out)``."""
        y = torch.as_tensor(Y, dtype=torch.float32)
        self.out_mean.copy_(y.mean(0))
        self.out_std.copy_(y.std(0, unbiased=False).clamp_min(1e-6))

    def out_mean_np(self) -> np.ndarray:
        return self.out_mean.numpy().copy()

    def out_std_np(self) -> np.ndarray:
        return self.out_std.numpy().copy()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (self._transform(x) - self.in_mean) / self.in_std

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.out_std + self.out_mean

    def new_member(self, hidden: Sequence[int], dropout: float = 0.0, input_dropout: float = 0.0) -> nn.Sequential:
        """A fresh MLP: [Dropout(input)] (Linear, ReLU, Dropout) per hidden layer, then Linear."""
        self.hidden = tuple(hidden)
        layers: list[nn.Module] = [nn.Dropout(input_dropout)]
        prev = self.in_dim
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        layers.append(nn.Linear(prev, self.n_out))
        return nn.Sequential(*layers)

    def add_member(self, mlp: nn.Module) -> None:
        self.members.append(mlp.eval())

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, B, n_out)``: every member's logits (classify) or standardised outputs (va)."""
        z = self.normalise(x)
        return torch.stack([m(z) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.raw(x)
        if self.task == "classify":
            return torch.softmax(out, dim=2).mean(0)
        return self.denormalise(out.mean(0))

    def predict_array(self, X: np.ndarray, batch: int = 4096) -> np.ndarray:
        """``(N, D)`` raw features -> ``(N, n_out) float32``, in eval mode without gradients."""
        self.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, len(X), batch):
                outs.append(self(torch.as_tensor(X[i:i + batch], dtype=torch.float32)).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.n_out), np.float32)


@dataclass
class Head:
    """A trained head and its header. ``header`` is the JSON written with it (see module doc)."""

    net: HeadNet
    header: dict[str, Any]
    source: str = ""  # where it was loaded from (name or path), for messages
    # A fine-tuned head carries its own backbone weights (``emo fit --finetune``).
    backbone_state: dict[str, torch.Tensor] | None = None

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
            a = np.asarray(features[key], dtype=np.float32).reshape(-1)
            if a.shape[0] != self.dims[g]:
                raise ValueError(f"{g!r} has {a.shape[0]} values; head {self.name} needs {self.dims[g]}")
            if not np.isfinite(a).all():
                raise ValueError(f"{g!r} has values that are not finite")
            parts.append(a)
        return np.concatenate(parts)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``(N, D)`` stacked features -> ``(N, C)`` probabilities or ``(N, 2)`` valence, arousal."""
        return self.net.predict_array(X)

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
        if self.net.hidden or any(isinstance(m, nn.Linear) for mem in self.net.members for m in list(mem)[:-1]):
            raise ModelError(f"head {self.name} has hidden layers; a class activation map needs a linear head")
        if bool(self.net.log_mask.any()):
            raise ModelError(f"head {self.name} takes log-object features; not linear in its input")
        ws = [mem[-1].weight.detach().double() for mem in self.net.members]
        bs = [mem[-1].bias.detach().double() for mem in self.net.members]
        W, b = torch.stack(ws).mean(0), torch.stack(bs).mean(0)
        mean, std = self.net.in_mean.double(), self.net.in_std.double()
        Wf = W / std
        bf = b - (Wf * mean).sum(1)
        return Wf.float().numpy(), bf.float().numpy()


def _tensors(net: HeadNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in net.state_dict().items()}


def save_head(head: Head, path: str | Path) -> Path:
    """Write ``path`` (safetensors with the header in its metadata) and ``path.json``, atomically."""
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
    text = json.dumps(header, indent=2, sort_keys=False)
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
    Path(str(path) + ".json").write_text(text + "\n")
    head.header = header
    return path


BACKBONE_PREFIX = "backbone."


def _state_id(state: Mapping[str, torch.Tensor]) -> str:
    """A short digest of backbone weights: names a fine-tuned head's features and engine."""
    import hashlib

    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _build_net(arch: Mapping[str, Any], task: str) -> HeadNet:
    net = HeadNet(int(arch["in_dim"]), int(arch["n_out"]), task)
    for _ in range(int(arch["members"])):
        net.add_member(net.new_member(arch["hidden"]))
    return net


def load_head_file(path: str | Path, source: str = "") -> Head:
    """Read a head file written by :func:`save_head`; anything else is a :class:`ModelError`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"head file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{path}: not a safetensors head file ({str(e)[:200]})") from None
    if META_KEY not in meta:
        raise ModelError(f"{path}: a safetensors file without an emo head header")
    try:
        header = json.loads(meta[META_KEY])
        arch = header["architecture"]
        if header.get("format") != FORMAT:
            raise ValueError(f"format {header.get('format')!r}, expected {FORMAT}")
        bb = {k[len(BACKBONE_PREFIX):]: v for k, v in tensors.items() if k.startswith(BACKBONE_PREFIX)}
        tensors = {k: v for k, v in tensors.items() if not k.startswith(BACKBONE_PREFIX)}
        # Shapes the header claims are checked on the meta device first: a forged header
        # must not make us allocate memory for a network that the stored tensors do not fill.
        with torch.device("meta"):
            shape_net = _build_net(arch, header["task"])
        claimed = {k: tuple(v.shape) for k, v in shape_net.state_dict().items()}
        stored = {k: tuple(v.shape) for k, v in tensors.items()}
        if claimed != stored:
            raise ValueError("the header's architecture does not match the stored tensors")
        net = _build_net(arch, header["task"])
        tensors["log_mask"] = tensors["log_mask"].bool()
        net.load_state_dict(tensors, strict=True)
        if header.get("finetuned") and not bb:
            raise ValueError("a fine-tuned head without its backbone weights")
        if len(header["labels"]) != net.n_out and header["task"] == "classify":
            raise ValueError("label count differs from the output size")
        if sum(int(d) for d in header["dims"].values()) != net.in_dim:
            raise ValueError("feature dims do not add up to the input size")
    except (KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ModelError(f"{path}: broken head file ({type(e).__name__}: {str(e)[:200]})") from None
    net.eval()
    return Head(net, header, source or str(path), bb or None)


def load_head(spec: str) -> Head:
    """A shipped head by name (``emotion6``, ``sentiment``, ``va``, see ``emo models``) or a file."""
    from emo.heads import SHIPPED, head_path

    if spec in SHIPPED:
        p = head_path(spec)
        if not p.is_file():
            raise ModelError(f"shipped head {spec} is missing from this installation ({p})")
        return load_head_file(p, spec)
    p = Path(os.path.expanduser(spec))
    if p.is_file():
        return load_head_file(p)
    raise ModelError(f"no head {spec!r}: not a file, and not one of the shipped heads ({', '.join(SHIPPED)})")


def new_head(groups: Sequence[str], dims: Mapping[str, int], task: str, labels: Sequence[str],
             backbone: str = "", backbone_sha256: str = "") -> Head:
    """An untrained head for ``groups`` (in this order) with the given dims and output labels."""
    in_dim = sum(int(dims[g]) for g in groups)
    mask = np.concatenate([np.full(int(dims[g]), GROUP_TRANSFORMS.get(g) == "log") for g in groups])
    n_out = len(labels) if task == "classify" else 2
    header = {
        "format": FORMAT,
        "task": task,
        "labels": list(labels) if task == "classify" else ["valence", "arousal"],
        "groups": list(groups),
        "dims": {g: int(dims[g]) for g in groups},
        "transforms": {g: GROUP_TRANSFORMS[g] for g in groups if g in GROUP_TRANSFORMS},
        "backbone": {"id": backbone, "sha256": backbone_sha256} if any(g in ("object", "deep") for g in groups) else {},
    }
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
