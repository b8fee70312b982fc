"""``emo fit``: read labelled records, collect their features, train (and cross-validate) a head, write it.

The training itself (losses, loops, folds) is :mod:`emo.train`; this module assembles it: which
records, which features (computed through the same pipeline as ``emo features`` when a record
lacks them), which task, and what the head file's header records. ``--task regions`` trains the
region head instead (:mod:`emo.regions.fit_regions`).

Options come as one dict with the command line's names (``opts["folds"]``, ``opts["root"]``...).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emo.assembly.progress import Progress, say as _say, stderr_is_terminal
from emo.io.records import counted


def collect_features(records: list[dict[str, Any]], groups: tuple[str, ...], settings: Any, root: Path | None,
                     verbose: bool, quiet: bool, regions_k: int = 10,
                     progress: Progress | None = None) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Feature groups of every record (from its ``features``, checked, or computed) and, for each
    index that failed, what failed it (``name: kind: message``)."""
    from emo.assembly.feature_needs import GroupsOnly, feature_stages
    from emo.io.records import item_from_record
    from emo.pipeline import run

    stages = feature_stages([GroupsOnly(groups)], settings, _say if verbose else None)
    if "regions" in groups:
        from emo.assembly.regions_recipe import region_stage

        stages.insert(0, region_stage(settings, top_k=regions_k, emit=False, local=True, verbose=verbose))
    items = (item_from_record(i, dict(r), root) for i, r in enumerate(records))
    feats: list[dict[str, Any]] = [{} for _ in records]
    failed: dict[int, str] = {}
    if progress is not None:
        progress.phase("features", len(records))

    def sink(batch):
        for it in batch:
            if it.ok:
                feats[it.index] = {g: it.features[g] for g in groups}
            else:
                failed[it.index] = f"{it.label}: {it.error.kind}: {it.error.message}"
        if progress is not None:
            progress.advance(len(batch))

    def on_error(item):
        if not quiet:
            line = item.error_line(" (skipped)")
            progress.print(line) if progress is not None else _say(line)

    run(items, stages, settings, sink, on_error)
    return feats, failed


def record_label(rec: dict[str, Any], index: int) -> str:
    """How a training record is named on stderr: its file's name, else its place in the input."""
    from emo.io.records import record_name, shown

    name = record_name(rec)
    return shown(name) if name is not None else f"record {index + 1}"


def _say_refused(records: list[dict[str, Any]], refused: dict[int, str], quiet: bool,
                 progress: Progress | None) -> None:
    """One stderr line per record whose target has the wrong type, as a bad input is named."""
    from emo.io.records import one_line

    if quiet:
        return
    for i in sorted(refused):
        line = one_line(f"emo: {record_label(records[i], i)}: bad_record: {refused[i]} (skipped)")
        progress.print(line) if progress is not None else _say(line)


def _portable(path: str, root: Path | None) -> str:
    """A data file's name as a header may record it: relative to ``root`` when inside it, else its
    own name; never an absolute folder of the machine that trained the head. Bytes of a name that
    are not UTF-8 read as U+FFFD, so the header stays JSON that any parser takes."""
    from emo.io.records import printable

    p = Path(path)
    if root is not None:
        try:
            return printable(str(p.resolve().relative_to(root.resolve())))
        except (ValueError, OSError):
            pass
    return printable(p.name if p.is_absolute() or ".." in p.parts else str(p))


def _command_line(root: Path | None) -> str:
    """The command that trained the head, with any absolute path shortened as :func:`_portable` does."""
    import shlex

    from emo.io.records import printable

    args = [_portable(a, root) if os.path.isabs(a) else printable(a) for a in sys.argv[1:]]
    return " ".join(["emo", *(shlex.quote(a) for a in args)])


def fit(opts: dict[str, Any]) -> int:
    """``emo fit`` with the command line's options; the exit code. ``--task regions`` trains the
    region head (its own layer file), every other task a head file."""
    from emo.tasks import REGIONS, get_task

    # Before any work: a place that cannot hold the head fails now, and a link is followed once.
    opts["output"] = _check_output(opts["output"], opts["records"], copy=get_task(opts["task"]) is not REGIONS)
    if get_task(opts["task"]) is REGIONS:
        return _fit_regions(opts)
    return _fit_head(opts)


def _fit_regions(opts: dict[str, Any]) -> int:
    """``emo fit --task regions``: read records, fit the region head, write the layer file."""
    from emo.assembly.filters import settings_from
    from emo.io.jsonl import read_records
    from emo.regions.fit_regions import fit_region_head, fit_settings

    records, bad = read_records(opts["records"])
    _refuse_pictures(opts["output"], records, opts["root"], head=False)
    settings = fit_settings(settings_from(opts))

    def on_error(item) -> None:
        if not opts["quiet"]:
            _say(item.error_line(" (skipped)"))

    refused: dict[int, str] = {}
    try:
        layer, counts = fit_region_head(records, settings, opts["root"], seed=opts["seed"], on_error=on_error,
                                        refused=refused)
    finally:  # said even when no record was usable: these are often why
        _say_refused(records, refused, opts["quiet"], None)
    layer.header["data"]["bad_lines"] = bad
    out: Path = opts["output"]
    mode = _old_mode(out)
    try:
        layer.save(out)
    except OSError as e:
        from emo.errors import OutputError

        raise OutputError(f"-o {out}: cannot write the region head: {e.strerror or e}") from None
    _keep_mode(out, mode)
    if not opts["quiet"]:
        _say(f"emo fit: wrote {out} (region head: {counted(counts['records'], 'image')}, {counts['positives']} positive "
             f"and {counts['negatives']} negative anchors, training accuracy "
             f"{layer.header['metrics']['train_accuracy']:.3f})")
    return 0


def _check_output(out: Path, sources: tuple[str, ...], copy: bool = True) -> Path:
    """Where the head goes: ``out``, or the regular file a link there names. A folder, a device, a
    FIFO or one of the record files being read is refused (exit 2) before any work is done, and
    so (``copy``: a head, which gets its readable ``.json`` beside it) is a folder or other file
    that is not a regular one at that copy's name, which would fail only once the head is written."""
    import stat

    from emo.errors import UsageError

    target = Path(os.path.realpath(out))
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as e:
        raise UsageError(f"-o {out}: {getattr(e, 'strerror', None) or e}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise UsageError(f"-o {out}: not a regular file (a head file is written whole, then put in place)")
    side = target.with_name(target.name + ".json")
    try:
        side_st = os.lstat(side) if copy else None
    except (OSError, ValueError):
        side_st = None
    if side_st is not None and not (stat.S_ISREG(side_st.st_mode) or stat.S_ISLNK(side_st.st_mode)):
        raise UsageError(f"-o {out}: {side.name} beside it, where the head's readable copy goes, is not a "
                         "regular file")
    from emo.io.output import refuse_inputs

    refuse_inputs(out, sources or ("-",), "record files read")  # by inode: links, hard links, stdin
    _make_parent(target)
    return target


def _refuse_pictures(out: Path, records: list[dict[str, Any]], root: Path | None, head: bool = True) -> None:
    """Refuse (exit 2) before training when the head file, or the readable ``.json`` copy a head
    gets beside it, is one of the training pictures: writing it would replace that picture."""
    from emo.io.output import refuse_inputs
    from emo.io.records import record_name

    names = [n for n in (record_name(r) for r in records) if n is not None]
    for target in (out, out.with_name(out.name + ".json")) if head else (out,):
        refuse_inputs(target, names, "training pictures", root)


def _keep_mode(out: Path, mode: int | None) -> None:
    """A head that replaced a file keeps that file's permissions (a 0600 file stays 0600)."""
    if mode is not None:
        for p in (out, out.with_name(out.name + ".json")):
            try:
                os.chmod(p, mode)
            except OSError:
                pass


def _old_mode(out: Path) -> int | None:
    try:
        return os.stat(out).st_mode & 0o7777
    except OSError:
        return None


def _make_parent(out: Path) -> None:
    from emo.errors import UsageError

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as e:
        raise UsageError(f"-o {out}: cannot make its folder: {getattr(e, 'strerror', None) or e}") from None
    if out.is_dir():
        raise UsageError(f"-o {out}: is a folder")


def _fit_head(opts: dict[str, Any]) -> int:
    import numpy as np

    from emo.assembly.filters import settings_from
    from emo.io.jsonl import read_records
    from emo.emotions import label_set
    from emo.errors import UsageError
    from emo.features import NETWORK_GROUPS, parse_groups
    from emo.models.head_file import new_head
    from emo.tasks import get_task
    from emo.train import (DEFAULT_LABEL_PROB, DEFAULT_LAMBDA, FitConfig, calibration_report, cross_validate,
                           evaluate, fit_head, fit_temperature, kfold, member_logits, split_val, summarise,
                           targets_from_records)

    task = opts["task"]
    spec = get_task(task)
    quiet, verbose = opts["quiet"], opts["verbose"]
    try:
        groups = parse_groups(opts["groups"], "--features", ("deep",))
    except ValueError as e:
        raise UsageError(str(e)) from None
    if opts["with_regions"]:
        groups = tuple(g for g in groups if g != "regions") + ("regions",)
    labels = None
    if not spec.regression:
        try:
            labels = label_set(opts["label_spec"])
        except ValueError as e:
            raise UsageError(str(e)) from None
    loss = opts["loss"] or spec.default_loss
    ft = opts["finetune"]
    hidden = opts["hidden"] if opts["hidden"] is not None else spec.default_hidden
    if ft:
        hidden = ()  # the backbone itself is trained, under one new linear layer
        if tuple(opts["groups"].split(",")) != ("deep",):
            raise UsageError("--finetune trains the backbone under its deep embedding: use --features deep")
    epochs = opts["epochs"] or (5 if ft else 60)
    lr = opts["lr"] or (1e-4 if ft else 5e-4)
    batch = opts["train_batch_size"] or (32 if ft else 64)
    cfg = FitConfig(task=task, loss=loss, lam=DEFAULT_LAMBDA if opts["lam"] is None else opts["lam"],
                    label_smoothing=opts["label_smoothing"], hidden=hidden, dropout=opts["dropout"],
                    input_dropout=opts["input_dropout"], epochs=epochs, lr=lr,
                    weight_decay=opts["weight_decay"], batch_size=batch, optimizer=opts["optimizer"],
                    schedule=opts["schedule"], members=opts["members"], seed=opts["seed"],
                    patience=opts["patience"] if opts["val_split"] else 0, threads=opts["threads"]).check()
    settings = settings_from(opts)
    progress = Progress(not quiet and stderr_is_terminal(), unit="it")

    def say(msg: str) -> None:
        if not quiet:
            progress.print(f"emo fit: {msg}")

    records, bad_lines = read_records(opts["records"])
    if not records:  # an empty file, or a FIFO nobody wrote to
        where = ", ".join("stdin" if s == "-" else s for s in (opts["records"] or ("-",)))
        raise UsageError(f"no records in {where}" + (f" ({counted(bad_lines, 'line')} not a JSON object)"
                                                     if bad_lines else ""))
    _refuse_pictures(opts["output"], records, opts["root"])
    label_prob = opts["label_prob"] or DEFAULT_LABEL_PROB
    refused: dict[int, str] = {}
    targets, kept, no_target = targets_from_records(records, task, labels, label_prob, refused)
    _say_refused(records, refused, quiet, progress)
    if not kept:
        raise UsageError(f"none of the {len(records)} records has {spec.target} "
                         f"that fits the task" + (f" and the classes {', '.join(labels.labels)}" if labels else ""))
    recs = [records[i] for i in kept]
    if ft:
        return _finetune(opts, cfg, settings, recs, targets, labels, label_prob,
                         {"records": len(records) + bad_lines, "bad_lines": bad_lines, "no_target": len(no_target),
                          "wrong_target": len(refused)}, say,
                         progress)
    with progress:
        feats, failed = collect_features(recs, groups, settings, opts["root"], verbose, quiet, opts["regions_k"],
                                         progress)
    try:
        X, good, wrong, dims = _matrix(feats, sorted(set(range(len(recs))) - set(failed)), groups)
    except UsageError as e:
        if not failed:
            raise
        # With -q no record's error was shown: the first says why (another --backbone, say).
        raise UsageError(f"{e}; {len(failed)} failed, the first: {next(iter(failed.values()))}") from None
    targets = targets.take(np.asarray(good))
    counts = {"records": len(records) + bad_lines, "bad_lines": bad_lines, "no_target": len(no_target),
              "wrong_target": len(refused), "failed_features": len(failed), "wrong_dims": len(wrong),
              "used": len(good)}
    say(f"{counted(len(good), 'record')} used; skipped: {counted(bad_lines, 'bad line')}, {len(no_target)} without a target, "
        f"{len(refused)} with a target of the wrong type, {len(failed)} whose features failed, "
        f"{len(wrong)} with other dims")

    uses_net = any(g in NETWORK_GROUPS for g in groups)
    backbone_sha = ""
    if uses_net:
        from emo.models.registry import get

        entry = get(settings.backbone)
        backbone_sha = entry.weights.sha256 if entry.weights else ""
    out_labels = labels.labels if labels is not None else ()

    def make():
        return new_head(groups, dims, task, out_labels, settings.backbone if uses_net else "", backbone_sha)

    strata = None if spec.regression else targets.y
    metrics: dict[str, Any] = {}
    k = opts["folds"] or 0
    steps = _TrainSteps(progress, cfg.epochs, cfg.members, k, verbose)
    with progress:
        if k:
            folds = kfold(len(good), k, opts["seed"], strata)
            res = cross_validate(X, targets, cfg, lambda: make().net, folds=folds, progress=steps,
                                 metric=lambda p, t: evaluate(p, t, task, labels))
            metrics = {"cv": {"folds": k, "seed": opts["seed"], **summarise(res.per_fold)},
                       "out_of_fold": evaluate(res.pred, targets, task, labels)}
            if res.logits is not None:  # classes: a temperature fitted on the held-out logits
                metrics["calibration"] = calibration_report(res.logits, targets.y, res.folds, 15, targets.dist)
        head = make()
        steps.final()
        if opts["val_split"]:
            is_val = split_val(len(good), opts["val_split"], opts["seed"], strata)
            tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
            fit_head(X[tr], targets.take(tr), cfg, head.net, val=(X[va], targets.take(va)), progress=steps)
            if not spec.regression and "calibration" not in metrics:
                head.set_temperature(fit_temperature(member_logits(head.net, X[va]), targets.y[va]))
            metrics["validation"] = {"share": opts["val_split"], "n": int(len(va)),
                                     **evaluate(head.predict(X[va]), targets.take(va), task, labels)}
        else:
            fit_head(X, targets, cfg, head.net, progress=steps)
        if "calibration" in metrics:
            head.set_temperature(metrics["calibration"]["temperature"])
    return _write(opts, head, cfg, labels, label_prob, groups, counts, metrics, say)


class _TrainSteps:
    """Training progress as one count that never goes back: fold k/K, then the final head, each
    ``per_run`` epochs; :mod:`emo.train` calls it with each run's own step count."""

    def __init__(self, progress: Progress, epochs: int, members: int, folds: int, verbose: bool) -> None:
        self.progress, self.folds, self.verbose = progress, folds, verbose
        self.epochs, self.members, self.per_run = epochs, members, epochs * members
        self.run, self.last = 0, 0
        progress.phase(self._what(), self.per_run * (folds + 1))

    def _what(self) -> str:
        return f"fold {self.run + 1}/{self.folds}" if self.run < self.folds else "final head"

    def final(self) -> None:
        """The cross-validation is over: the head trained on every record comes next."""
        if self.run < self.folds:
            self.run, self.last = self.folds, 0
        self.progress.done = self.per_run * self.run

    def __call__(self, step: int, total: int, row: dict) -> None:
        if step <= self.last:  # emo.train counts each fold's steps from 1
            self.run, self.last = self.run + 1, 0
        done = self.per_run * self.run + min(step, self.per_run)
        info = " ".join(f"{k}={v:.3f}" for k, v in row.items() if isinstance(v, float))
        self.progress.note(f"{self._what()}, epoch {row.get('epoch', step)}/{self.epochs}"
                           + (f", member {row.get('member', 0) + 1}/{self.members}" if self.members > 1 else ""))
        self.progress.advance(max(0, done - self.progress.done), info)
        self.last = step
        if self.verbose:
            self.progress.print("emo fit: " + " ".join(f"{k}={v:.4g}" for k, v in row.items()))


def _matrix(feats: list[dict[str, Any]], good: list[int], groups: tuple[str, ...]):
    """``X (N, D) float32`` of the records whose groups are finite numbers of one size each; the
    rows used, the rows left out (other sizes, not numbers, not finite), and each group's size.

    Where records disagree on a size (``scene`` from two segmentation networks, say) the sizes
    most records have are taken, the earliest seen on a tie: one odd record never sets them.
    """
    from collections import Counter

    import numpy as np

    from emo.errors import UsageError

    parts_of: dict[int, list[np.ndarray]] = {}
    wrong: list[int] = []
    for i in good:
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes inf, refused below
                parts = [np.asarray(feats[i][g], np.float32).reshape(-1) for g in groups]
        except (ValueError, TypeError, OverflowError):
            wrong.append(i)
            continue
        if not all(np.isfinite(p).all() for p in parts):
            wrong.append(i)
            continue
        parts_of[i] = parts
    sizes = {i: tuple(int(p.size) for p in parts) for i, parts in parts_of.items()}
    if not sizes:
        raise UsageError("no record has usable features")
    common = Counter(sizes.values()).most_common(1)[0][0]  # Counter keeps first-seen order on ties
    rows, used = [], []
    for i, parts in parts_of.items():
        if sizes[i] != common:
            wrong.append(i)
            continue
        rows.append(np.concatenate(parts))
        used.append(i)
    return np.stack(rows), used, sorted(wrong), dict(zip(groups, common))


def _write(opts, head, cfg, labels, label_prob, groups, counts, metrics, say) -> int:
    import datetime

    from emo import __version__
    from emo.models.head_file import save_head

    out: Path = opts["output"]
    root = opts["root"]
    from emo.train import describe_source

    srcs = [describe_source(s, root or Path.cwd()) if s != "-" else {"path": "stdin"}
            for s in (opts["records"] or ("-",))]
    from emo.io.records import printable

    # Text from the command line or a file name may hold bytes that are not UTF-8 (surrogate
    # escapes); a header holding them would be refused when the head is loaded.
    head.header.update({
        "name": printable(opts["name"] or out.name.split(".")[0]),
        "label_set": labels.name if labels is not None else cfg.task,
        "training": {
            "command": _command_line(root),
            "config": {**cfg.as_dict(), "label_prob": label_prob, "features": list(groups),
                       "finetune": bool(opts["finetune"])},
            "data": {"sources": srcs, "description": printable(opts["data_description"] or ""), "counts": counts},
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "emo_version": __version__,
        },
        "metrics": metrics,
    })
    mode = _old_mode(out)
    try:
        save_head(head, out)
    except OSError as e:
        from emo.errors import OutputError

        raise OutputError(f"-o {out}: cannot write the head: {e.strerror or e}") from None
    _keep_mode(out, mode)
    if not opts["quiet"]:
        _print_metrics(metrics)
        say(f"wrote {out} ({', '.join(groups)} -> {', '.join(head.labels)})")
    return 0


def _decode_all(recs: list[dict[str, Any]], root: Path | None, size: int, settings: Any,
                say: Callable[[str], None]) -> tuple[Any, list[int]]:
    """Every record's image as a ``size`` x ``size`` centre square (shorter side to ``size``);
    each record that has none is named to ``say`` as one line, as a bad input is named."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from emo.config import decode_workers
    from emo.errors import InputError
    from emo.io.decode import View, decode
    from emo.io.records import item_from_record

    view = View(size, size, "crop")

    def one(i: int):
        item = item_from_record(i, dict(recs[i]), root)
        if item.ok and item.path is None:
            item.fail("bad_record", "--finetune needs the picture, and this record names none")
        if not item.ok:
            return None, item
        try:
            return decode(item.path, (view,), settings.max_pixels, settings.max_bytes).views[view], item
        except InputError as e:
            item.fail(e.kind, e.message)
            return None, item

    with ThreadPoolExecutor(decode_workers(settings)) as pool:
        res = list(pool.map(one, range(len(recs))))
    bad = [i for i, (a, _) in enumerate(res) if a is None]
    for i in bad:
        # A name can hold a newline or a terminal's escapes: error_line writes them escaped.
        say(res[i][1].error_line(" (skipped)"))
    good = [a for a, _ in res if a is not None]
    return (np.stack(good) if good else np.zeros((0, size, size, 3), np.uint8)), bad


def _finetune(opts, cfg, settings, recs, targets, labels, label_prob, counts, say, progress: Progress) -> int:
    import time

    import numpy as np
    import torch

    from emo.errors import UsageError
    from emo.models import create, get
    from emo.models.head_file import new_head
    from emo.tasks import get_task
    from emo.train import evaluate, finetune, kfold, split_val, summarise

    entry = get(settings.backbone)
    pp = entry.preprocess
    images, bad = _decode_all(recs, opts["root"], pp.resize, settings,
                              lambda line: None if opts["quiet"] else progress.print(line))
    keep = np.asarray([i for i in range(len(recs)) if i not in set(bad)], dtype=np.int64)
    if len(keep) == 0:
        raise UsageError("--finetune needs images: no record's path could be decoded")
    targets = targets.take(keep)
    counts = {**counts, "failed_images": len(bad), "used": int(len(keep))}
    strata = None if get_task(cfg.task).regression else targets.y
    steps = _TrainSteps(progress, cfg.epochs, 1, opts["folds"] or 0, opts["verbose"])

    def train(idx: np.ndarray):
        """A fresh backbone and head fine-tuned on the images ``idx``."""
        model = create(entry.name, settings)
        head = new_head(("deep",), {"deep": entry.embed_dim}, cfg.task, labels.labels if labels else (),
                        entry.name, model.weights_sha256)
        finetune(images[idx], targets.take(idx), cfg, model, head.net, pp.crop, progress=steps)
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
    with progress:
        if opts["folds"]:
            # K backbones, each trained on K-1 folds and scored on the one it never saw.
            k = opts["folds"]
            folds = kfold(len(keep), k, opts["seed"], strata)
            per_fold = []
            for f in range(k):
                model, head = train(np.flatnonzero(folds != f))
                per_fold.append(score(model, head, np.flatnonzero(folds == f)))
                say(f"fold {f + 1}/{k}: " + ", ".join(f"{m} {v:.4f}" for m, v in per_fold[-1].items()
                                                      if isinstance(v, float)))
            metrics["cv"] = {"folds": k, "seed": opts["seed"], **summarise(per_fold)}
        va_idx = None
        if opts["val_split"]:
            is_val = split_val(len(keep), opts["val_split"], opts["seed"], strata)
            tr, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        t_final = time.perf_counter()
        steps.final()
        model, head = train(tr)
    secs = time.perf_counter() - t_final
    say(f"fine-tuned {entry.name} on {counted(len(tr), 'image')}, {counted(cfg.epochs, 'epoch')}, {secs:.0f} s")
    metrics["train_seconds"] = round(secs, 1)
    if va_idx is not None:
        metrics["validation"] = {"share": opts["val_split"], "n": int(len(va_idx)), **score(model, head, va_idx)}
    head.backbone_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return _write(opts, head, cfg, labels, label_prob, ("deep",), counts, metrics, say)


def _print_metrics(metrics: dict[str, Any]) -> None:
    cv = metrics.get("cv")
    if cv:
        _say(f"emo fit: {cv['folds']}-fold cross-validation (mean ± std over folds):")
        for k, v in cv.items():
            if isinstance(v, dict) and "mean" in v:
                some = f"  ({v['n']} of {cv['folds']} folds)" if "n" in v else ""
                _say(f"  {k:22s} {v['mean']:.4f} ± {v['std']:.4f}{some}")
    cal = metrics.get("calibration")
    if cal:
        _say(f"emo fit: calibration: temperature {cal['temperature']:.3f}; expected calibration error "
             f"{cal['ece_before']:.3f} before, {cal['ece_after']:.3f} after (held-out folds)")
    val = metrics.get("validation")
    if val:
        _say(f"emo fit: validation ({counted(val['n'], 'record')}):")
        for k, v in val.items():
            if isinstance(v, float):
                _say(f"  {k:22s} {v:.4f}")

