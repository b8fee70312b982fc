"""``emo classify``: the emotion distribution and sentiment of each image."""

from __future__ import annotations

from typing import Any

import click

from emo.cli.options import heads_completer, head_option, input_options, pass_opts, run_options


@click.command()
@head_option("emotion6", "classify")
@click.option("--sentiment-head", default=None, shell_complete=heads_completer("classify", ("none",)),
              help="Head for sentiment when the emotion head's classes lack a polarity (Emotion6's surprise, "
                   "neutral) [default: sentiment]; 'none' leaves sentiment out.")
@click.option("--top-k", type=click.IntRange(0), default=None,
              help="Also add emotion.top: the K most probable classes with their probabilities, most probable first [default: 0].")
@click.option("--regions", "with_regions", is_flag=True,
              help="Classify from [X_global, X_local of the K best emotional regions] (Rao et al. eq. 5) with a head "
                   "trained by emo fit --task classify --regions; also adds \"regions\" as emo regions does.")
@click.option("--min-prob", type=click.FloatRange(0, 1), default=None,
              help="Below this probability the emotion is uncertain: \"label\": null, \"uncertain\": true, "
                   "\"best\" names the likeliest class (jq: select(.emotion.uncertain | not)) [default: 0].")
@click.option("--sentiment-min-prob", type=click.FloatRange(0, 1), default=None,
              help="The same for sentiment; its likelier side always has at least 0.5 [default: 0].")
@click.option("--raw-probs", is_flag=True,
              help="Probabilities as the head was trained, without the temperature fitted on held-out folds "
                   "that calibrates them (so that labels given with p 0.7 are right about 70% of the time).")
@click.option("--xmp", is_flag=True,
              help="Also write emotion|LABEL and sentiment|LABEL keywords into each picture's PICTURE.xmp sidecar "
                   "(merged: other fields and keywords stay; uncertain labels write none).")
@input_options
@run_options
@pass_opts
def classify(opts: dict[str, Any]) -> int:
    """Predict the emotion distribution and sentiment of each image.

    Adds "emotion": {"label", "p", "probs"} ("p" the label's probability; every class named,
    probabilities summing to 1) and "sentiment": {"label", "p", "p_positive"}. A record that carries the features the head needs
    (from emo features) is not recomputed; the network is not even loaded. A carried group the
    head needs that is malformed makes that record a bad_features error record.

    \b
    Examples:
      emo classify photo.jpg
      find photos -name '*.jpg' | emo classify > tags.jsonl
      emo classify --head my.head --root data < test.jsonl | emo score
      emo features --set deep -r photos | emo classify --top-k 3
      emo classify --min-prob 0.3 --xmp -r ~/Pictures -o tags.jsonl
    """
    from emo.assembly.runner import run_command

    return run_command("classify", opts)
