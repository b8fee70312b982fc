"""``emo classify``: the features its heads read (and regions, for a regions head), then the heads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emo import config
from emo.assembly.feature_needs import feature_stages
from emo.assembly.filters import BuildContext, Filter, flag
from emo.errors import UsageError
from emo.tasks import CLASSIFY, Task

NO_HEAD = "none"  # --sentiment-head none


@dataclass(frozen=True)
class ClassifyOptions:
    """The options of ``emo classify`` (its emotion head is ``settings.head``)."""

    sentiment_head: str | None = None  # a head for sentiment when the classes lack a polarity; "none": no sentiment
    top_k: int = 0  # also add emotion.top, the K most probable classes
    with_regions: bool = flag("--regions", default=False)  # classify from global + local region features
    min_prob: float = 0.0  # below it the emotion label is null and "uncertain": true
    sentiment_min_prob: float = 0.0  # the same for sentiment (its best side is always >= 0.5)
    raw_probs: bool = False  # the probabilities as trained, without the head's fitted temperature
    xmp: bool = False  # write emotion|LABEL and sentiment|LABEL keywords into each picture's XMP sidecar

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise UsageError("--top-k must be 0 or more")
        if not (0.0 <= self.min_prob <= 1.0 and 0.0 <= self.sentiment_min_prob <= 1.0):
            raise UsageError("--min-prob and --sentiment-min-prob must be between 0 and 1")


# emo classify and emo va both read it: exported for one of them, it reaches the other in a chain.
ENV_HEAD = config.ENV_PREFIX + "HEAD"


def load_task_head(spec: str, task: Task, command: str, settable: bool = False) -> Any:
    """The head ``spec`` (a shipped name or a file), refused with a UsageError unless it predicts ``task``.

    ``settable``: ``spec`` is the subcommand's own head, which ``EMO_HEAD`` may have set; a wrong
    one from there says so, since ``emo classify | emo va`` reads one variable for both heads."""
    import os

    from emo.errors import ModelError
    from emo.models.head_file import load_head

    try:
        head = load_head(spec)
    except OSError as e:  # a name too long for the file system, a folder in the way...
        raise ModelError(f"cannot read head {spec[:80]!r}: {e.strerror or e}") from None
    if head.task != task.name:
        why = f"head {head.name} predicts {head.task}; {command} needs a {task.name} head"
        if settable and os.environ.get(ENV_HEAD) == spec:
            why += (f" ({ENV_HEAD}={spec} set it, and both emo classify and emo va read {ENV_HEAD}: "
                    f"give this one --head, or unset {ENV_HEAD})")
        raise UsageError(why)
    return head


def build(o: ClassifyOptions, settings: config.Settings, ctx: BuildContext) -> list[Any]:
    """Feature stages for the heads, the regions stage a regions head needs, then ClassifyStage."""
    from emo.emotions import from_labels
    from emo.heads import SENTIMENT_HEAD
    from emo.stages.head_stages import ClassifyStage

    head = load_task_head(settings.head or CLASSIFY.default_head, CLASSIFY, "emo classify", settable=True)
    sent = None
    spec = o.sentiment_head or SENTIMENT_HEAD
    if spec != NO_HEAD and not from_labels(head.labels).complete_sentiment:
        sent = load_task_head(spec, CLASSIFY, "--sentiment-head")
    heads = [h for h in (head, sent) if h is not None]
    stages = feature_stages(heads, settings, ctx.say) + [
        ClassifyStage(head, sent, o.top_k, min_prob=o.min_prob, sentiment_min_prob=o.sentiment_min_prob,
                      calibrated=not o.raw_probs)]
    if o.with_regions or "regions" in head.groups:
        from emo.assembly.regions_recipe import regions_for_head

        stages.insert(0, regions_for_head(head, settings, ctx.verbose))
    if o.xmp:
        from emo.stages.xmp_stage import XmpStage

        stages.append(XmpStage())
    return stages


FILTER = Filter("classify", ClassifyOptions, build)
