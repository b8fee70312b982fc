"""The small trained layers regions use, and their files (safetensors plus a JSON header).

- A CAM layer: a linear emotion classifier on the backbone's mean-pooled last feature map.
  Applied to every cell of that map instead of the pooled vector it gives the class activation
  maps, CAM_c = W_c . F (Zhou et al.), since pooling and a linear layer commute.
- A region head: a logistic layer on a region's local features giving p_emo, the probability
  that the region evokes emotion (Rao et al. section 4.1), trained on ground-truth boxes.

The header says what the layer was trained on: ``kind``, ``labels``, ``backbone``,
``backbone_sha256``, ``feature``, ``data``, ``metrics``.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emo.errors import ModelError
from emo.io.jsonl import surrogate_problem

if TYPE_CHECKING:  # reading and checking a layer file needs no torch: a run checks it before torch loads
    import torch

SHIPPED_CAM = Path(__file__).with_name("cam_emotion6.safetensors")


@dataclass
class LinearLayer:
    """``weight (E, C)`` and ``bias (E,)`` with the header that describes them."""

    weight: torch.Tensor
    bias: torch.Tensor
    header: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return list(self.header.get("labels", []))

    @property
    def kind(self) -> str:
        return str(self.header.get("kind", ""))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` features -> ``(..., E)`` scores (logits)."""
        return x.float() @ self.weight.T + self.bias

    def cam(self, fmap: torch.Tensor) -> torch.Tensor:
        """Class activation maps: ``(B, C, h, w)`` -> ``(B, E, h, w)``, CAM_c = W_c . F + b_c."""
        import torch

        return torch.einsum("ec,bchw->behw", self.weight, fmap.float()) + self.bias[None, :, None, None]

    def save(self, path: Path) -> None:
        """Write ``path`` (safetensors; the header as JSON under the ``emo`` metadata key)."""
        from safetensors.torch import save_file

        tensors = {"weight": self.weight.float().contiguous(), "bias": self.bias.float().contiguous()}
        save_file(tensors, str(path), metadata={"emo": json.dumps(self.header, sort_keys=True)})


def read_layer(path: Path, kind: str, in_dim: int | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read and check a layer file written by :meth:`LinearLayer.save` without torch:
    ``(weight (E, C), bias (E,), header)`` as float32 arrays, or :class:`ModelError`."""
    from safetensors import safe_open

    _regular_file(path)
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            header = _checked_header(path, meta, kind)
            # The index says each tensor's type and shape: one numpy cannot hold (bf16, float8),
            # that is not floating point, or whose shape does not fit is refused before a byte of
            # it is read, so a sparse file claiming gigabytes is never read.
            dtypes = {k: f.get_slice(k).get_dtype() for k in ("weight", "bias")}
            odd = sorted({d for d in dtypes.values() if d not in FLOAT_DTYPES})
            if odd:
                raise ModelError(f"{path}: weight and bias must be floating point "
                                 f"({', '.join(FLOAT_DTYPES)}), not {', '.join(odd)}")
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in ("weight", "bias")}
            _check_shapes(path, shapes, len(header["labels"]), in_dim)
            weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    except ModelError:
        raise
    except Exception as e:  # whatever the file holds, it is one line: the file is not a layer
        raise ModelError(f"{path}: not a regions layer file ({type(e).__name__}: {_first_line(e)})") from None
    if weight.dtype.kind != "f" or bias.dtype.kind != "f":
        raise ModelError(f"{path}: weight and bias must be floating point")
    weight, bias = weight.astype(np.float32), bias.astype(np.float32)
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):  # float64 beyond float32's range too
        raise ModelError(f"{path}: weight or bias holds values that are not finite")
    return weight, bias, header


# An emotion layer has a handful of outputs; more is a forged file, not a layer.
MAX_LAYER_OUTPUTS = 1024


def _checked_header(path: Path, meta: dict[str, str], kind: str) -> dict[str, Any]:
    """The layer's header, its types and kind checked; else a one-line :class:`ModelError`."""
    if "emo" not in meta:  # some other safetensors file (or none of ours at all)
        raise ModelError(f"{path}: not a regions layer file (it has no emo header)")
    try:
        header = json.loads(meta["emo"], parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise ModelError(f"{path}: its header is not JSON") from None
    problem = _header_problem(header, meta["emo"])
    if problem:
        raise ModelError(f"{path}: broken layer header ({problem})")
    if header.get("kind") != kind:
        raise ModelError(f"{path}: is a {header.get('kind') or 'unknown'} layer, not a {kind} layer")
    return header


def _check_shapes(path: Path, shapes: dict[str, tuple[int, ...]], n_labels: int, in_dim: int | None) -> None:
    """``weight (E, C)`` and ``bias (E,)`` with one label per output and C the backbone's size."""
    weight, bias = tuple(shapes["weight"]), tuple(shapes["bias"])
    if len(weight) != 2 or bias != (weight[0],):
        raise ModelError(f"{path}: weight {weight} and bias {bias} do not fit")
    if in_dim is not None and weight[1] != in_dim:
        raise ModelError(f"{path}: takes {weight[1]} features, the backbone gives {in_dim}")
    if n_labels != weight[0]:
        raise ModelError(f"{path}: {n_labels} labels for {weight[0]} outputs")
    if weight[0] > MAX_LAYER_OUTPUTS:
        raise ModelError(f"{path}: {weight[0]} outputs; a regions layer has at most {MAX_LAYER_OUTPUTS}")


# Tensor types a layer may be stored in (safetensors' names); each is read as float32.
FLOAT_DTYPES = ("F16", "F32", "F64")


def _regular_file(path: Path) -> None:
    """Refuse anything but a regular file (through links) before it is opened: a FIFO would wait
    for a writer forever, and a device or folder is no layer."""
    try:
        st = os.stat(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: not a regions layer file ({getattr(e, 'strerror', None) or e})") from None
    if not stat.S_ISREG(st.st_mode):
        what = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO, socket or device"
        raise ModelError(f"{path}: not a regions layer file (it is {what}, not a regular file)")


def load_layer(path: Path, kind: str, in_dim: int | None = None) -> LinearLayer:
    """Read a layer file written by :meth:`LinearLayer.save`, checking its kind and input size."""
    return layer_of(read_layer(path, kind, in_dim))


Read = tuple[np.ndarray, np.ndarray, dict[str, Any]]  # what read_layer gives: weight, bias, header


def read_region_layers(entry: Any, cam_file: Path | None, region_head: Path | None) -> tuple[Read, Read | None]:
    """The CAM layer (``cam_file``, default the shipped one) and the optional region head for the
    registry network ``entry``, read and checked against it without torch, or :class:`ModelError`."""
    if not entry.stages:
        raise ModelError(f"{entry.name}: the registry names no stages, so it has no feature map for regions")
    channels = entry.stages[-1][1]
    cam = read_layer(cam_file or SHIPPED_CAM, "cam", channels)
    if cam[2].get("backbone") not in (None, entry.name):
        raise ModelError(f"the CAM layer was trained on {cam[2].get('backbone')}, not {entry.name} (--backbone)")
    head = read_layer(region_head, "region_head", 2 * channels) if region_head else None
    return cam, head


def layer_of(read: Read) -> LinearLayer:
    """The layer a :func:`read_layer` result holds (its tensors share the arrays)."""
    import torch

    weight, bias, header = read
    return LinearLayer(torch.from_numpy(weight), torch.from_numpy(bias), header)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else ""


def _header_problem(header: Any, text: str | None = None) -> str:
    """What is wrong with a layer header's types ("" when nothing is): it comes from a file.
    ``text``: the JSON it was parsed from, which spares the walk for a lone surrogate."""
    if not isinstance(header, dict):
        return f"a JSON {type(header).__name__}, not an object"
    if not isinstance(header.get("kind", ""), str):
        return "'kind' is not a string"
    labels = header.get("labels")  # one name per output: regions name the emotion they found
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        return "'labels' is not a non-empty list of names"
    for key in ("backbone", "backbone_sha256", "feature"):
        if not isinstance(header.get(key, ""), str):
            return f"{key!r} is not a string"
    return surrogate_problem(header, text)  # its labels go into every region record
