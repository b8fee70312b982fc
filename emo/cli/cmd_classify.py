"""``emo classify``: the emotion distribution and sentiment of each image."""

from __future__ import annotations

from typing import Any

import click

from emo.cli.options import input_options, pass_opts, run_options, run_stages


def complete_heads(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from emo.heads import names

    return [n for n in names() if n.startswith(incomplete)]


def head_option(default_name: str) -> Any:
    return click.option("--head", default=None, shell_complete=complete_heads,
                        help=f"Head: a shipped name (see emo models) or a file from emo fit [default: {default_name}; env EMO_HEAD].")


def feature_stages(heads: list[Any], settings: Any, verbose: bool) -> list[Any]:
    """Stages that fill the feature groups the heads need, built only when a record lacks them.

    The backbone is built on the first batch that needs it, so records that already carry
    ``features`` never load a network. Every head is checked against the run's backbone first.
    """
    from emo.cli.options import backbone_engine
    from emo.features import HANDCRAFTED_DIMS
    from emo.io.decode import View
    from emo.models.registry import get
    from emo.stages.head_stages import LazyStage

    stages: list[Any] = []
    own = [h for h in heads if getattr(h, "finetuned", None)]
    for h in own:
        stages.append(_own_backbone(h, settings, verbose))
    heads = [h for h in heads if h not in own]
    groups = tuple(dict.fromkeys(g for h in heads for g in h.groups))
    hand = tuple(g for g in groups if g in HANDCRAFTED_DIMS)
    if hand:
        from emo.engine import resolve_device
        from emo.stages.handcrafted_stage import HandcraftedStage

        stages.append(HandcraftedStage(hand, resolve_device(settings.device)))
    net = tuple(g for g in groups if g in ("object", "deep"))
    if net:
        entry = get(settings.backbone)
        for h in heads:
            h.check_backbone(entry.name, entry.weights.sha256 if entry.weights else "")

        def build():
            from emo.stages.backbone_stage import BackboneStage

            entry_, digest, engine = backbone_engine(settings, verbose)
            for h in heads:
                h.check_backbone(entry_.name, digest)
            return BackboneStage(engine, entry_, net)

        pp = entry.preprocess
        stages.append(LazyStage(build, (View(pp.crop, pp.resize, "crop"),), net))
    other = [g for g in groups if g not in HANDCRAFTED_DIMS and g not in ("object", "deep")]
    if other:
        stages.append(_RequireGroups(tuple(other)))
    return stages


def _own_backbone(head: Any, settings: Any, verbose: bool) -> Any:
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
                      profile=Profile(pp.crop, settings.batch_size), settings=settings, verbose=verbose)
        if verbose:
            click.echo(f"emo: {name} fine-tuned by head {head.name} on {engine.device} ({engine.backend})", err=True)
        return OwnBackboneStage(engine, view, key)

    return LazyStage(build, (view,), (key,))


class _RequireGroups:
    """Groups emo classify does not compute (scene): the record must carry them."""

    views = ()

    def __init__(self, groups: tuple[str, ...]) -> None:
        self.groups = groups

    def wants(self, item: Any) -> bool:
        return any(g not in item.features for g in self.groups)

    def run(self, items: list[Any]) -> None:
        for item in items:
            missing = [g for g in self.groups if g not in item.features]
            item.fail("bad_features", f"record lacks {', '.join(missing)} (compute it with emo features --set ...)")


@click.command()
@head_option("emotion6")
@click.option("--sentiment-head", default=None, shell_complete=complete_heads,
              help="Head for sentiment when the emotion head's classes lack a polarity (Emotion6's surprise, "
                   "neutral) [default: sentiment]; 'none' leaves sentiment out.")
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True,
              help="Also add emotion.top: the K most probable classes, most probable first.")
@click.option("--regions", "with_regions", is_flag=True,
              help="Classify from [X_global, X_local of the K best emotional regions] (Rao et al. eq. 5) with a head "
                   "trained by emo fit --task classify --regions; also adds \"regions\" as emo regions does.")
@input_options
@run_options
@pass_opts
def classify(opts: dict[str, Any]) -> int:
    """Predict the emotion distribution and sentiment of each image.

    Adds "emotion": {"label", "probs"} (every class named, probabilities summing to 1) and
    "sentiment": {"label", "p_positive"}. A record that carries the features the head needs
    (from emo features) is not recomputed; the network is not even loaded.

    \b
    Examples:
      emo classify photo.jpg
      find photos -name '*.jpg' | emo classify > tags.jsonl
      emo classify --head my.head --root data < test.jsonl | emo score
      emo features --set deep -r photos | emo classify --top-k 3
    """

    def build(settings):
        from emo.heads import DEFAULT_HEAD, SENTIMENT_HEAD
        from emo.models.head_file import load_head
        from emo.stages.head_stages import ClassifyStage

        default = DEFAULT_HEAD["classify"]
        if opts["with_regions"]:
            from emo.stages.regions_stage import REGIONS_HEAD

            default = str(REGIONS_HEAD) if REGIONS_HEAD.is_file() else default
        head = load_head(settings.head or default)
        if head.task != "classify":
            from emo.errors import UsageError

            raise UsageError(f"head {head.name} predicts {head.task}; emo classify needs a classify head (emo va takes va heads)")
        from emo.emotions import from_labels

        sent = None
        spec = opts["sentiment_head"] or SENTIMENT_HEAD
        if spec != "none" and not from_labels(head.labels).complete_sentiment:
            sent = load_head(spec)
        heads = [h for h in (head, sent) if h is not None]
        stages = feature_stages(heads, settings, opts["verbose"]) + [ClassifyStage(head, sent, opts["top_k"])]
        if opts["with_regions"] or "regions" in head.groups:
            from emo.stages.regions_stage import regions_for_head

            stages.insert(0, regions_for_head(head, settings, opts["verbose"]))
        return stages

    return run_stages(opts, build)


def heads_table() -> Any:
    """A rich table of the shipped heads (``emo models`` prints it under the networks)."""
    import json

    from rich.table import Table

    from emo.heads import SHIPPED, head_path

    t = Table(box=None, pad_edge=False, title="heads (--head NAME)", title_justify="left")
    for col in ("head", "task", "labels", "features", "default for", "present", "cross-validated"):
        t.add_column(col, no_wrap=True)
    for name, e in sorted(SHIPPED.items()):
        side = head_path(name).with_name(head_path(name).name + ".json")
        cv = ""
        if side.is_file():
            m = json.loads(side.read_text()).get("metrics", {}).get("cv", {})
            cv = ", ".join(f"{k} {v['mean']:.3f}" for k, v in m.items() if isinstance(v, dict) and k in
                           ("top1", "valence_mse", "arousal_mse"))
        t.add_row(name, e.task, e.labels, ",".join(e.groups), e.default_for or "-",
                  "yes" if head_path(name).is_file() else "no", cv)
    return t
