"""The stages that fill the feature groups a set of heads reads, built only when a record lacks them.

Shared by ``classify``, ``va`` and ``fit``: each asks for the groups its heads need, and gets
the check of the groups records carry, then hand-crafted, backbone, fine-tuned-backbone and
"must be carried" stages, in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from emo import config
from emo.features import HANDCRAFTED_DIMS, NETWORK_GROUPS
from emo.io.records import Item

if TYPE_CHECKING:  # the stage imports numpy, which --help and completion must not load
    from emo.stages.carried_check import GroupShape


class NeedsFeatures(Protocol):
    """What :func:`feature_stages` asks of a head: its groups, where it reads each, a backbone check."""

    groups: tuple[str, ...]

    def feature_key(self, group: str) -> str: ...

    def check_backbone(self, backbone: str, sha256: str) -> None: ...


class GroupsOnly:
    """Feature groups wanted without a head (``emo fit`` collecting its training features)."""

    finetuned = None

    def __init__(self, groups: Sequence[str]) -> None:
        self.groups = tuple(groups)

    def feature_key(self, group: str) -> str:
        """Where ``group`` lives in ``item.features``: under its own name."""
        return group

    def check_backbone(self, backbone: str, sha256: str) -> None:
        return None


def backbone_engine(settings: config.Settings, say: Callable[[str], None] | None = None):
    """The engine of the backbone named in ``settings``: ``(entry, weights sha256, engine)``.

    The network itself is built only when the engine is not in the cache yet.
    """
    from emo.engine import Profile, load
    from emo.models import create, get, weights_digest

    entry = get(settings.backbone)
    digest = weights_digest(settings.backbone, settings)
    engine = load(lambda: create(settings.backbone, settings), network_id=entry.name, weights_sha256=digest,
                  profile=Profile(entry.preprocess.crop, settings.batch_size), settings=settings,
                  verbose=say is not None)
    if say is not None:
        say(f"emo: {entry.name} on {engine.device} ({engine.backend}, {engine.precision})")
    return entry, digest, engine


def carried_shape(group: str, backbone: str) -> GroupShape:
    """What a record carrying ``group`` must hold: a hand-crafted group's fixed size, ``object`` and
    ``deep`` sizes from the registry entry of ``backbone`` (no network is loaded), else any size."""
    from emo.stages.carried_check import GroupShape

    if group in HANDCRAFTED_DIMS:
        return GroupShape(HANDCRAFTED_DIMS[group])
    if group in NETWORK_GROUPS:
        from emo.models.registry import get

        entry = get(backbone)
        return GroupShape((entry.num_classes if group == "object" else entry.embed_dim) or None, entry.name)
    return GroupShape(None)


def carried_shapes(heads: Sequence[Any], settings: config.Settings) -> dict[str, GroupShape]:
    """Each feature key ``heads`` read -> what a record carrying it must hold. A fine-tuned head's
    own ``deep`` has its own backbone's size; every other network group the run's backbone's."""
    shapes: dict[str, GroupShape] = {}
    for h in heads:
        own = h.backbone.get("id", "") if getattr(h, "finetuned", None) else ""
        for g in h.groups:
            key = h.feature_key(g)
            if key not in shapes:
                shapes[key] = carried_shape(g, own if key != g else settings.backbone)
    return shapes


def feature_stages(heads: Sequence[Any], settings: config.Settings,
                   say: Callable[[str], None] | None = None) -> list[Any]:
    """Stages that fill the feature groups ``heads`` read, in the order they must run.

    The backbone is built on the first batch that needs it, so records that already carry
    ``features`` never load a network; what they carry is checked first (:func:`carried_shapes`),
    so a malformed group fails its own record alone. Every head is checked against the run's
    backbone first. ``say`` (verbose runs) is told which network and engine run.
    """
    from emo.io.decode import View
    from emo.models.registry import get
    from emo.stages.carried_check import CheckCarried
    from emo.stages.head_stages import LazyStage

    shapes = carried_shapes(heads, settings)
    stages: list[Any] = [CheckCarried(shapes)] if shapes else []
    own = [h for h in heads if getattr(h, "finetuned", None)]
    stages += [own_backbone(h, settings, say) for h in own]
    heads = [h for h in heads if h not in own]
    groups = tuple(dict.fromkeys(g for h in heads for g in h.groups))
    hand = tuple(g for g in groups if g in HANDCRAFTED_DIMS)
    if hand:
        from emo.engine import resolve_device
        from emo.stages.handcrafted_stage import HandcraftedStage

        stages.append(HandcraftedStage(hand, resolve_device(settings.device)))
    net = tuple(g for g in groups if g in NETWORK_GROUPS)
    if net:
        entry = get(settings.backbone)
        for h in heads:
            h.check_backbone(entry.name, entry.weights.sha256 if entry.weights else "")

        def build():
            from emo.stages.backbone_stage import BackboneStage

            entry_, digest, engine = backbone_engine(settings, say)
            for h in heads:
                h.check_backbone(entry_.name, digest)
            return BackboneStage(engine, entry_, net)

        pp = entry.preprocess
        stages.append(LazyStage(build, (View(pp.crop, pp.resize, "crop"),), net))
        if hand:  # neither needs the other's groups: they share the cores on each batch
            from emo.stages.together import Together

            stages[-2:] = [Together(stages[-2:])]
    other = tuple(g for g in groups if g not in HANDCRAFTED_DIMS and g not in NETWORK_GROUPS)
    if other:
        stages.append(RequireGroups(other))
    return stages


def own_backbone(head: Any, settings: config.Settings, say: Callable[[str], None] | None = None) -> Any:
    """A lazily built backbone with a fine-tuned head's own weights (from the head file)."""
    from emo.errors import ModelError
    from emo.io.decode import View
    from emo.models.registry import get
    from emo.stages.head_stages import LazyStage, OwnBackboneStage

    name = head.backbone.get("id", "")
    entry = get(name)
    ft = head.finetuned["id"]
    pp = entry.preprocess
    view = View(pp.crop, pp.resize, "crop")
    key = head.feature_key("deep")

    def build():
        from emo.engine import Profile, load
        from emo.models import create

        model = create(name, settings, pretrained=False)
        try:
            model.load_state_dict(head.backbone_state)
        except RuntimeError as e:
            raise ModelError(f"head {head.name}: its backbone weights do not fit {name}: {str(e)[:200]}") from None
        model.eval()
        engine = load(model, network_id=f"{name}+ft-{ft}", weights_sha256=ft,
                      profile=Profile(pp.crop, settings.batch_size), settings=settings, verbose=say is not None)
        if say is not None:
            say(f"emo: {name} fine-tuned by head {head.name} on {engine.device} ({engine.backend})")
        return OwnBackboneStage(engine, view, key)

    return LazyStage(build, (view,), (key,))


class RequireGroups:
    """Groups these commands do not compute (scene): the record must carry them."""

    views = ()

    def __init__(self, groups: tuple[str, ...]) -> None:
        self.groups = groups

    def wants(self, item: Item) -> bool:
        return any(g not in item.features for g in self.groups)

    def run(self, items: list[Item]) -> None:
        for item in items:
            missing = [g for g in self.groups if g not in item.features]
            item.fail("bad_features", f"record lacks {', '.join(missing)} (compute it with emo features --set ...)")
