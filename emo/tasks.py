"""What emo can predict, one object per task: its targets, loss, output key, default head.

Pure data, importable without torch. Training (:mod:`emo.train`), head files
(:mod:`emo.models.head_file`), the head stages, scoring (:mod:`emo.metrics`) and the commands
ask a :class:`Task` instead of testing its name, so a new task is one entry here (plus its stage
and metric functions) and its command-line choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from emo import config
from emo.errors import UsageError


@dataclass(frozen=True)
class Task:
    """One kind of prediction.

    ``regression``: outputs are numbers on a scale (``outputs`` names them), else class
    probabilities over a label set. ``stage`` and ``scorer`` are ``module:attribute`` names, imported
    only when used.
    """

    name: str
    output_key: str  # the JSONL key predictions go under
    target: str  # what a training record must carry, in words
    target_keys: tuple[str, ...]  # the record fields that hold the target
    losses: tuple[str, ...]  # the first is the default
    default_hidden: tuple[int, ...]
    default_head: str = ""  # a shipped head name; "" = none ships
    outputs: tuple[str, ...] = ()  # the fixed output names of a regression task
    regression: bool = False
    stage: str = ""
    scorer: str = ""

    @property
    def default_loss(self) -> str:
        return self.losses[0]

    def output_names(self, labels: tuple[str, ...] = ()) -> tuple[str, ...]:
        """The names of the head's outputs: the fixed ones, else the label set's classes."""
        return self.outputs if self.regression else tuple(labels)


CLASSIFY = Task(
    name="classify", output_key=config.KEY_EMOTION, target="a label or distribution",
    target_keys=("label", "distribution"), losses=("multi", "ce", "prob"), default_hidden=(512,),
    default_head="emotion6", stage="emo.stages.head_stages:ClassifyStage", scorer="emo.metrics:score_classify",
)
VA = Task(
    name="va", output_key=config.KEY_VA, target="valence and arousal (1-9)", target_keys=("valence", "arousal"),
    losses=("mse",), default_hidden=(3000, 1000, 500), default_head="va", outputs=("valence", "arousal"),
    regression=True, stage="emo.stages.head_stages:VAStage", scorer="emo.metrics:score_va",
)
REGIONS = Task(
    name="regions", output_key=config.KEY_REGIONS, target="ground-truth boxes", target_keys=("regions",),
    losses=("logistic",), default_hidden=(), stage="emo.stages.regions_stage:RegionStage",
)

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFY, VA, REGIONS)}
# Tasks a head file predicts (regions has its own layer file, see emo.regions.layers).
HEAD_TASKS = ("classify", "va")


def get_task(name: str) -> Task:
    """The task called ``name``; a UsageError names the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise UsageError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None
