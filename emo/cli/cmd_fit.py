"""``emo fit``: train a head on labelled records and write a head file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from emo.cli.options import pass_opts

_LOSS_HELP = ("ce: cross-entropy on the label (Rao et al. eq. 7); multi: (1-lambda) CE + lambda KL to the "
              "record's distribution, else eq. 4's over Mikels' wheel (eq. 6); prob: the label weighted by its "
              "probability (eq. 10-11). va heads train with squared error (mse).")


def _ints(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    if value.strip().lower() in ("", "none", "linear"):
        return ()
    try:
        out = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter("give layer sizes like 3000,1000,500 (or 'none' for a linear head)") from None
    if any(v < 1 for v in out):
        raise click.BadParameter("layer sizes must be positive")
    return out


def _read_records(sources: tuple[str, ...]) -> tuple[list[dict[str, Any]], int]:
    """Records from JSONL files ('-' or none: stdin); lines that are not JSON objects are counted."""
    from emo.cli.cmd_score import iter_jsonl

    records, bad = [], 0
    for _, _, obj in iter_jsonl(sources):
        if obj is None:
            bad += 1
        else:
            records.append(obj)
    return records, bad


def collect_features(records: list[dict[str, Any]], groups: tuple[str, ...], settings: Any, root: Path | None,
                     verbose: bool, quiet: bool, regions_k: int = 10) -> tuple[list[dict[str, Any]], list[int]]:
    """Feature groups of every record (from its ``features`` or computed) and the indices that failed."""
    from emo.cli.cmd_classify import feature_stages
    from emo.io.records import item_from_record
    from emo.pipeline import run

    class _Need:
        def __init__(self) -> None:
            self.groups = groups
            self.header = {"backbone": {}}

        def check_backbone(self, backbone: str, sha256: str) -> None:
            return None

    stages = feature_stages([_Need()], settings, verbose)
    if "regions" in groups:
        from emo.stages.regions_stage import region_stage

        stages.insert(0, region_stage(settings, top_k=regions_k, emit=False, local=True, verbose=verbose))
    items = (item_from_record(i, dict(r), root) for i, r in enumerate(records))
    feats: list[dict[str, Any]] = [{} for _ in records]
    failed: list[int] = []

    def sink(batch):
        for it in batch:
            if it.ok:
                feats[it.index] = {g: it.features[g] for g in groups}
            else:
                failed.append(it.index)

    def on_error(item):
        if not quiet:
            click.echo(f"emo: {item.label}: {item.error.kind}: {item.error.message} (skipped)", err=True)

    run(items, stages, settings, sink, on_error)
    return feats, failed


def _progress(enabled: bool):
    if not enabled:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                 TimeElapsedColumn(), transient=True, console=Console(stderr=True))
    return p, p.add_task("fit", total=None, info="")


@click.command()
@click.argument("records", nargs=-1, type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Head file to write (safetensors; a readable FILE.json is written beside it).")
@click.option("--task", type=click.Choice(["classify", "va", "regions"]), default="classify", show_default=True,
              help="classify: a label set; va: valence and arousal on 1-9; regions: the emotional-region "
                   "head (p_emo for emo regions --region-head) from ground-truth boxes, records with "
                   "\"regions\": [{\"box\": [x0, y0, x1, y1]}] (EmotionROI format).")
@click.option("--regions", "with_regions", is_flag=True,
              help="classify: also read the K best emotional regions' local features (X = [X_global, "
                   "X_local 1..K], Rao et al. eq. 5), found as emo regions does; use with emo classify --regions.")
@click.option("--regions-k", type=click.IntRange(1), default=10, show_default=True,
              help="K, the number of regions --regions reads (zero-padded with a mask when fewer are found).")
@click.option("--labels", "label_spec", default="emotion6", show_default=True,
              help="Label set: mikels8, emotion6, five, sentiment, or a,b,c (classify).")
@click.option("--features", "groups", default="deep", show_default=True,
              help="Comma-separated feature groups the head reads (deep, object, color, lbp, gist, scene).")
@click.option("--loss", type=click.Choice(["ce", "multi", "prob", "mse"]), default=None, help=_LOSS_HELP + " [default: multi; mse for va]")
@click.option("--lambda", "lam", type=click.FloatRange(0, 1), default=None,
              help="Weight of the distribution term in --loss multi [default: 0.4, Rao et al. 5.4.4].")
@click.option("--label-prob", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="p* of eq. 4 and eq. 10-11 for records with a bare label [default: 0.7].")
@click.option("--label-smoothing", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Smooth the one-hot label of the classification term.")
@click.option("--hidden", callback=_ints, default=None,
              help="Hidden layer sizes, e.g. 512 or 3000,1000,500; 'none' for a linear head "
                   "[default: 512; 3000,1000,500 for va, Kim et al.].")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="Dropout after each hidden layer.")
@click.option("--input-dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Dropout on the standardised input features.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Passes over the data [default: 60; 5 with --finetune].")
@click.option("--lr", type=float, default=None,
              help="Peak learning rate [default: 5e-4; 1e-4 for the backbone with --finetune, 10x for its new layer].")
@click.option("--weight-decay", type=click.FloatRange(0), default=0.05, show_default=True,
              help="AdamW's decoupled weight decay (L2 with sgd).")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Training batch size [default: 64; 32 with --finetune].")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True,
              help="sgd with --lr 1e-4 --batch-size 1000 --schedule constant is Kim et al.'s setting (momentum 0.9).")
@click.option("--schedule", type=click.Choice(["onecycle", "constant"]), default="onecycle", show_default=True,
              help="onecycle: warm up then anneal the learning rate; constant: keep it.")
@click.option("--members", type=click.IntRange(1), default=1, show_default=True,
              help="Train this many networks (seeds seed, seed+1, ...) and average them.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same data, options and seed: the same head.")
@click.option("--val-split", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Hold out this share (stratified) for validation metrics and early stopping.")
@click.option("--patience", type=click.IntRange(0), default=10, show_default=True,
              help="With --val-split: stop after this many epochs without a better validation loss (0: never).")
@click.option("--folds", type=click.IntRange(2), default=None,
              help="K-fold cross-validation first: prints each metric's mean and spread, stores them in the header; "
                   "the head is then trained on all records.")
@click.option("--finetune", is_flag=True,
              help="Train the backbone end to end with mirroring and random crops (You et al.); needs image paths.")
@click.option("--name", default=None, help="Name stored in the header [default: the output file's stem].")
@click.option("--data-description", default=None, help="What the training data is (stored in the header).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Resolve relative image paths against this folder.")
@click.option("--device", default=None, help="Device for computing missing features (auto, cpu, cuda[:N]).")
@click.option("--backbone", default=None, help="Backbone for object/deep features [default: mobilenet_v2].")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Cache for weights and engines.")
@click.option("--weights-dir", type=click.Path(file_okay=False), default=None, help="Extra folder searched for weights.")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True, help="Torch threads while training (0: torch's default).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary on stderr.")
@click.option("-v", "--verbose", is_flag=True, help="Per-epoch metrics on stderr.")
@pass_opts
def fit(opts: dict[str, Any]) -> int:
    """Train a head on labelled records (JSONL files or stdin) and write a head file.

    Each record has "path" and/or precomputed "features", and a target: "label" or
    "distribution" (class -> probability) for --task classify, "valence" and "arousal" (1-9)
    for --task va. Records without a target, or whose image fails, are skipped and counted.

    \b
    Examples:
      emo fit --labels emotion6 --loss multi --folds 5 --root data train.jsonl -o my.head
      emo features --set deep --root data < train.jsonl > feats.jsonl
      emo fit --task va --folds 5 feats.jsonl -o my_va.head
      emo classify --head my.head --root data < test.jsonl | emo score
    """
    if opts["task"] == "regions":
        from emo.regions.fit_regions import run_fit

        return run_fit(opts)
    return _run(opts)


def _command_line() -> str:
    import shlex

    return " ".join(["emo", *(shlex.quote(a) for a in sys.argv[1:])])


def _run(opts: dict[str, Any]) -> int:
    import numpy as np

    from emo.cli.options import settings_from
    from emo.emotions import label_set
    from emo.errors import UsageError
    from emo.features import parse_groups
    from emo.models.head_file import new_head
    from emo.train import (DEFAULT_LABEL_PROB, DEFAULT_LAMBDA, FitConfig, cross_validate, evaluate, fit_head,
                           kfold, split_val, summarise, targets_from_records)

    task = opts["task"]
    quiet, verbose = opts["quiet"], opts["verbose"]
    try:
        groups = parse_groups(opts["groups"])
    except ValueError as e:
        raise UsageError(str(e)) from None
    if opts["with_regions"]:
        groups = tuple(g for g in groups if g != "regions") + ("regions",)
    labels = None
    if task == "classify":
        try:
            labels = label_set(opts["label_spec"])
        except ValueError as e:
            raise UsageError(str(e)) from None
    loss = opts["loss"] or ("mse" if task == "va" else "multi")
    ft = opts["finetune"]
    hidden = opts["hidden"] if opts["hidden"] is not None else ((3000, 1000, 500) if task == "va" else (512,))
    if ft:
        hidden = ()  # the backbone itself is trained, under one new linear layer
        if tuple(opts["groups"].split(",")) != ("deep",):
            raise UsageError("--finetune trains the backbone under its deep embedding: use --features deep")
    epochs = opts["epochs"] or (5 if ft else 60)
    lr = opts["lr"] or (1e-4 if ft else 5e-4)
    batch = opts["batch_size"] or (32 if ft else 64)
    cfg = FitConfig(task=task, loss=loss, lam=DEFAULT_LAMBDA if opts["lam"] is None else opts["lam"],
                    label_smoothing=opts["label_smoothing"], hidden=hidden, dropout=opts["dropout"],
                    input_dropout=opts["input_dropout"], epochs=epochs, lr=lr,
                    weight_decay=opts["weight_decay"], batch_size=batch, optimizer=opts["optimizer"],
                    schedule=opts["schedule"], members=opts["members"], seed=opts["seed"],
                    patience=opts["patience"] if opts["val_split"] else 0, threads=opts["threads"]).check()
    settings = settings_from(opts)
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(f"emo fit: {msg}", err=True))

    records, bad_lines = _read_records(opts["records"])
    label_prob = opts["label_prob"] or DEFAULT_LABEL_PROB
    targets, kept, no_target = targets_from_records(records, task, labels, label_prob)
    if not kept:
        raise UsageError(f"none of the {len(records)} records has a {'valence and arousal' if task == 'va' else 'label or distribution'} "
                         f"that fits the task" + (f" and the classes {', '.join(labels.labels)}" if labels else ""))
    recs = [records[i] for i in kept]
    if ft:
        return _finetune(opts, cfg, settings, recs, targets, labels, label_prob,
                         {"records": len(records) + bad_lines, "bad_lines": bad_lines, "no_target": len(no_target)}, say)
    feats, failed = collect_features(recs, groups, settings, opts["root"], verbose, quiet, opts["regions_k"])
    good = [i for i in range(len(recs)) if i not in set(failed)]
    if not good:
        raise UsageError("no record has usable features")
    dims = {g: int(np.asarray(feats[good[0]][g]).size) for g in groups}
    rows, wrong = [], []
    for i in good:
        try:
            rows.append(np.concatenate([np.asarray(feats[i][g], np.float32).reshape(-1) for g in groups]))
            if any(np.asarray(feats[i][g]).size != dims[g] for g in groups):
                raise ValueError
        except ValueError:
            rows.pop() if len(rows) > len(good) else None
            wrong.append(i)
    good = [i for i in good if i not in set(wrong)]
    X = np.stack([np.concatenate([np.asarray(feats[i][g], np.float32).reshape(-1) for g in groups]) for i in good])
    targets = targets.take(np.asarray(good))
    counts = {"records": len(records) + bad_lines, "bad_lines": bad_lines, "no_target": len(no_target),
              "failed_features": len(failed), "wrong_dims": len(wrong), "used": len(good)}
    say(f"{len(good)} records used; skipped: {bad_lines} bad lines, {len(no_target)} without a target, "
        f"{len(failed)} whose features failed, {len(wrong)} with other dims")

    uses_net = any(g in ("object", "deep") for g in groups)
    backbone_sha = ""
    if uses_net:
        from emo.models.registry import get

        entry = get(settings.backbone)
        backbone_sha = entry.weights.sha256 if entry.weights else ""
        if entry.embed_dim and "deep" in dims and dims["deep"] != entry.embed_dim:
            raise UsageError(f"the records' deep features have {dims['deep']} values; {entry.name} gives "
                             f"{entry.embed_dim}: pass the --backbone that computed them")
    out_labels = labels.labels if labels is not None else ()

    def make():
        return new_head(groups, dims, task, out_labels, settings.backbone if uses_net else "", backbone_sha)

    progress, ptask = _progress(not quiet and sys.stderr.isatty())

    def on_step(step: int, total: int, row: dict) -> None:
        if progress is not None:
            progress.update(ptask, completed=step, total=total,
                            info=" ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float)))
        if verbose:
            click.echo("emo fit: " + " ".join(f"{k}={v:.4g}" for k, v in row.items()), err=True)

    strata = targets.y if task == "classify" else None
    metrics: dict[str, Any] = {}
    if progress is not None:
        progress.start()
    try:
        if opts["folds"]:
            k = opts["folds"]
            folds = kfold(len(good), k, opts["seed"], strata)
            if progress is not None:
                progress.update(ptask, description=f"{k}-fold CV")
            res = cross_validate(X, targets, cfg, lambda: make().net, folds=folds, progress=on_step,
                                 metric=lambda p, t: evaluate(p, t, task, labels))
            metrics = {"cv": {"folds": k, "seed": opts["seed"], **summarise(res.per_fold)},
                       "out_of_fold": evaluate(res.pred, targets, task, labels)}
        head = make()
        if opts["val_split"]:
            is_val = split_val(len(good), opts["val_split"], opts["seed"], strata)
            tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
            if progress is not None:
                progress.update(ptask, description="train (val split)")
            fit_head(X[tr], targets.take(tr), cfg, head.net, val=(X[va], targets.take(va)), progress=on_step)
            metrics["validation"] = {"share": opts["val_split"], "n": int(len(va)),
                                     **evaluate(head.predict(X[va]), targets.take(va), task, labels)}
        else:
            if progress is not None:
                progress.update(ptask, description="train")
            fit_head(X, targets, cfg, head.net, progress=on_step)
    finally:
        if progress is not None:
            progress.stop()
    return _write(opts, head, cfg, labels, label_prob, groups, counts, metrics, say)


def _write(opts, head, cfg, labels, label_prob, groups, counts, metrics, say) -> int:
    import datetime

    from emo import __version__
    from emo.models.head_file import save_head

    out: Path = opts["output"]
    srcs = [str(Path(s).resolve()) if s != "-" else "stdin" for s in (opts["records"] or ("-",))]
    head.header.update({
        "name": opts["name"] or out.name.split(".")[0],
        "label_set": labels.name if labels is not None else "va",
        "training": {
            "command": _command_line(),
            "config": {**cfg.as_dict(), "label_prob": label_prob, "features": list(groups),
                       "finetune": bool(opts["finetune"])},
            "data": {"sources": srcs, "description": opts["data_description"] or "", "counts": counts},
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "emo_version": __version__,
        },
        "metrics": metrics,
    })
    save_head(head, out)
    if not opts["quiet"]:
        _print_metrics(metrics)
        say(f"wrote {out} ({', '.join(groups)} -> {', '.join(head.labels)})")
    return 0


def _decode_all(recs: list[dict[str, Any]], root: Path | None, size: int, settings: Any, say) -> tuple[Any, list[int]]:
    """Every record's image as a ``size`` x ``size`` centre square (shorter side to ``size``)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from emo.config import decode_workers
    from emo.errors import InputError
    from emo.io.decode import View, decode
    from emo.io.records import item_from_record

    view = View(size, size, "crop")

    def one(i: int):
        item = item_from_record(i, dict(recs[i]), root)
        if item.path is None:
            return None, "no path"
        try:
            return decode(item.path, (view,), settings.max_pixels).views[view], None
        except InputError as e:
            return None, f"{e.kind}: {e.message}"

    with ThreadPoolExecutor(decode_workers(settings)) as pool:
        res = list(pool.map(one, range(len(recs))))
    bad = [i for i, (a, why) in enumerate(res) if a is None]
    for i in bad:
        say(f"{recs[i].get('path', f'record {i + 1}')}: {res[i][1]} (skipped)")
    good = [a for a, _ in res if a is not None]
    return (np.stack(good) if good else np.zeros((0, size, size, 3), np.uint8)), bad


def _finetune(opts, cfg, settings, recs, targets, labels, label_prob, counts, say) -> int:
    import time

    import numpy as np
    import torch

    from emo.errors import UsageError
    from emo.models import create, get
    from emo.models.head_file import new_head
    from emo.train import evaluate, finetune, kfold, split_val, summarise

    entry = get(settings.backbone)
    pp = entry.preprocess
    images, bad = _decode_all(recs, opts["root"], pp.resize, settings, say)
    keep = np.asarray([i for i in range(len(recs)) if i not in set(bad)], dtype=np.int64)
    if len(keep) == 0:
        raise UsageError("--finetune needs images: no record's path could be decoded")
    targets = targets.take(keep)
    counts = {**counts, "failed_images": len(bad), "used": int(len(keep))}
    strata = targets.y if cfg.task == "classify" else None
    progress, ptask = _progress(not opts["quiet"] and sys.stderr.isatty())
    t0 = time.perf_counter()

    def on_step(step, total, row):
        if progress is not None:
            progress.update(ptask, completed=step, total=total, info=f"loss={row['loss']:.3f}")
        if opts["verbose"]:
            click.echo(f"emo fit: epoch {row['epoch']} loss {row['loss']:.4f} ({time.perf_counter() - t0:.0f} s)", err=True)

    def train(idx: np.ndarray, what: str):
        """A fresh backbone and head fine-tuned on the images ``idx``."""
        model = create(entry.name, settings)
        head = new_head(("deep",), {"deep": entry.embed_dim}, cfg.task, labels.labels if labels else (),
                        entry.name, model.weights_sha256)
        if progress is not None:
            progress.update(ptask, description=what, completed=0)
        finetune(images[idx], targets.take(idx), cfg, model, head.net, pp.crop, progress=on_step)
        return model, head

    def score(model, head, idx: np.ndarray) -> dict[str, float]:
        """Metrics on the held-out images ``idx``, from their centre crops."""
        off = (pp.resize - pp.crop) // 2
        embs = []
        with torch.inference_mode():
            for i in range(0, len(idx), 32):
                x = torch.from_numpy(images[idx[i:i + 32], off:off + pp.crop, off:off + pp.crop]).permute(0, 3, 1, 2)
                embs.append(model(x)[1].numpy())
        return evaluate(head.predict(np.concatenate(embs)), targets.take(idx), cfg.task, labels)

    metrics: dict[str, Any] = {}
    tr = np.arange(len(keep))
    if progress is not None:
        progress.start()
    try:
        if opts["folds"]:
            # K backbones, each trained on K-1 folds and scored on the one it never saw.
            k = opts["folds"]
            folds = kfold(len(keep), k, opts["seed"], strata)
            per_fold = []
            for f in range(k):
                model, head = train(np.flatnonzero(folds != f), f"fold {f + 1}/{k}")
                per_fold.append(score(model, head, np.flatnonzero(folds == f)))
                say(f"fold {f + 1}/{k}: " + ", ".join(f"{m} {v:.4f}" for m, v in per_fold[-1].items()
                                                      if isinstance(v, float)))
            metrics["cv"] = {"folds": k, "seed": opts["seed"], **summarise(per_fold)}
        va_idx = None
        if opts["val_split"]:
            is_val = split_val(len(keep), opts["val_split"], opts["seed"], strata)
            tr, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        t_final = time.perf_counter()
        model, head = train(tr, f"fine-tune {entry.name}")
    finally:
        if progress is not None:
            progress.stop()
    secs = time.perf_counter() - t_final
    say(f"fine-tuned {entry.name} on {len(tr)} images, {cfg.epochs} epochs, {secs:.0f} s")
    metrics["train_seconds"] = round(secs, 1)
    if va_idx is not None:
        metrics["validation"] = {"share": opts["val_split"], "n": int(len(va_idx)), **score(model, head, va_idx)}
    head.backbone_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return _write(opts, head, cfg, labels, label_prob, ("deep",), counts, metrics, say)


def _print_metrics(metrics: dict[str, Any]) -> None:
    cv = metrics.get("cv")
    if cv:
        click.echo(f"emo fit: {cv['folds']}-fold cross-validation (mean ± std over folds):", err=True)
        for k, v in cv.items():
            if isinstance(v, dict) and "mean" in v:
                some = f"  ({v['n']} of {cv['folds']} folds)" if "n" in v else ""
                click.echo(f"  {k:22s} {v['mean']:.4f} ± {v['std']:.4f}{some}", err=True)
    val = metrics.get("validation")
    if val:
        click.echo(f"emo fit: validation ({val['n']} records):", err=True)
        for k, v in val.items():
            if isinstance(v, float):
                click.echo(f"  {k:22s} {v:.4f}", err=True)
