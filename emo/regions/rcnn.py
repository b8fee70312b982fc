"""The ``rcnn`` proposal source: Faster R-CNN on a P2..P5 feature pyramid (Rao et al. section 3.2).

The detector is torchvision's :class:`~torchvision.models.detection.FasterRCNN` on a
:class:`emo.models.pyramid.PyramidBackbone` over a registry backbone's stages, with the paper's
anchors: one square anchor per level, 32^2, 64^2, 128^2, 256^2 pixels on P2..P5. With
``resnet50`` it takes torchvision's COCO weights (``fasterrcnn_resnet50_fpn_coco``), fetched by
URL on a connected machine and hash-checked; their RPN has three aspect ratios per location and
the 1:1 anchor's outputs are kept. p_obj of a box is the detector's class score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from emo.config import Settings
from emo.errors import ModelError
from emo.models.registry import get

COCO_WEIGHTS = get("fasterrcnn_resnet50_fpn").weights
ANCHOR_SIZES = ((32,), (64,), (128,), (256,))
# torchvision's COCO RPN predicts aspect ratios (0.5, 1.0, 2.0) per location; 1:1 is the middle one.
_COCO_RATIOS, _KEEP_RATIO = 3, 1


@dataclass(frozen=True)
class Detections:
    """One picture's detections in the input's pixels: ``boxes (N, 4)``, ``scores (N,)``, ``labels``."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: list[str]


def coco_categories() -> list[str]:
    """COCO's 91 category names in torchvision's order (index 0 is the background)."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    return list(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])


def build_detector(backbone: str = "resnet50", min_size: int = 512, max_size: int = 800,
                   score_thresh: float = 0.05, settings: Settings | None = None) -> nn.Module:
    """A Faster R-CNN with random weights on ``backbone``'s pyramid (91 COCO classes), in eval mode."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    from emo.models import create, get
    from emo.models.pyramid import PyramidBackbone

    entry = get(backbone)
    body = create(backbone, settings, pretrained=False).body
    pyramid = PyramidBackbone(body, entry)
    pp = entry.preprocess
    return FasterRCNN(
        pyramid,
        num_classes=91,
        min_size=min_size,
        max_size=max_size,
        image_mean=list(pp.mean),
        image_std=list(pp.std),
        rpn_anchor_generator=AnchorGenerator(ANCHOR_SIZES, ((1.0,),) * len(ANCHOR_SIZES)),
        box_roi_pool=MultiScaleRoIAlign(["0", "1", "2", "3"], output_size=7, sampling_ratio=2),
        box_score_thresh=score_thresh,
    ).eval()


def _coco_state(coco: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision's checkpoint keys and shapes -> this model's (body under ``body.body.net``, 1:1 RPN anchor)."""
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, v in coco.items():
        if k.startswith("backbone.body."):
            k = "backbone.body.body.net." + k[len("backbone.body."):]
        elif k == "rpn.head.cls_logits.weight" or k == "rpn.head.cls_logits.bias":
            v = v[_KEEP_RATIO:_KEEP_RATIO + 1]
        elif k == "rpn.head.bbox_pred.weight" or k == "rpn.head.bbox_pred.bias":
            v = v.reshape(_COCO_RATIOS, 4, *v.shape[1:])[_KEEP_RATIO]
        out[k] = v
    missing = [k for k in own if k not in out and not k.endswith("num_batches_tracked") and ".fc." not in k]
    if missing:
        raise ModelError(f"COCO detector weights lack {len(missing)} parameters, e.g. {missing[:3]}")
    return {k: v for k, v in out.items() if k in own}


def load_coco(model: nn.Module, settings: Settings, explicit: Path | None = None) -> str:
    """Load torchvision's COCO weights (verified) into a ``resnet50`` detector; returns their sha256."""
    from emo.models.weights import load_state_dict, resolve

    path, digest = resolve(COCO_WEIGHTS, settings, explicit=explicit)
    state = load_state_dict(path)
    # The checkpoint's FPN keys predate Conv2dNormActivation; torchvision's own loader renames them.
    fixed = {}
    for k, v in state.items():
        for part in ("inner_blocks", "layer_blocks"):
            head = f"backbone.fpn.{part}."
            if k.startswith(head) and k.count(".") == 4:
                i, rest = k[len(head):].split(".", 1)
                k = f"{head}{i}.0.{rest}"
        fixed[k] = v
    try:
        model.load_state_dict(_coco_state(fixed, model), strict=False)
    except RuntimeError as e:
        raise ModelError(f"{path}: does not fit the detector: {str(e)[:300]}") from None
    return digest


class Detector:
    """Runs the detector on pictures and returns their boxes, scores and COCO labels."""

    def __init__(self, model: nn.Module, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.categories = coco_categories()

    def __call__(self, pictures: list[torch.Tensor]) -> list[Detections]:
        """``pictures``: ``(3, h, w) uint8`` each, any sizes -> detections in their pixels."""
        with torch.inference_mode():
            outs = self.model([p.to(self.device).float().div_(255.0) for p in pictures])
        return [Detections(o["boxes"].float().cpu(), o["scores"].float().cpu(),
                           [self.categories[int(i)] for i in o["labels"]]) for o in outs]


def detector(settings: Settings, backbone: str = "resnet50", pretrained: bool = True, **kw) -> Detector:
    """The ``rcnn`` source's detector: COCO weights for ``resnet50`` unless ``pretrained`` is False."""
    from emo.engine import resolve_device

    model = build_detector(backbone, settings=settings, **kw)
    if pretrained:
        if backbone != "resnet50":
            raise ModelError(f"COCO detector weights exist for resnet50, not {backbone}")
        load_coco(model, settings)
    return Detector(model, resolve_device(settings.device))


__all__ = ["COCO_WEIGHTS", "Detections", "Detector", "build_detector", "coco_categories", "detector", "load_coco"]
