"""``emo va``: the features a va head reads, then the head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emo import config
from emo.assembly.feature_needs import feature_stages
from emo.assembly.filters import BuildContext, Filter
from emo.tasks import VA


@dataclass(frozen=True)
class VAOptions:
    """The options of ``emo va`` (its head is ``settings.head``)."""


def build(o: VAOptions, settings: config.Settings, ctx: BuildContext) -> list[Any]:
    """Feature stages for the head, then :class:`~emo.stages.head_stages.VAStage`."""
    from emo.assembly.classify_recipe import load_task_head
    from emo.stages.head_stages import VAStage

    head = load_task_head(settings.head or VA.default_head, VA, "emo va", settable=True)
    return feature_stages([head], settings, ctx.say) + [VAStage(head)]


FILTER = Filter("va", VAOptions, build)
