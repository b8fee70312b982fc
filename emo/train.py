"""Fit loops and losses for emotion heads (Rao et al. eq. 6-11; Kim et al. section V).

Everything here works on arrays already in memory: ``X`` is ``(N, D) float32`` (feature groups
concatenated in the head's order), targets come from :func:`targets_from_records`. Reading
records and computing features is :mod:`emo.assembly.fit_recipe`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emo.emotions import POLARITY, LabelSet, distribution_vector, sentiment_of_valence, wheel_distribution
from emo.errors import UsageError
from emo.models.headnet import HeadNet
from emo.tasks import HEAD_TASKS, TASKS as _ALL_TASKS, get_task

TASKS = HEAD_TASKS  # what a head file can be trained for
LOSSES = tuple(dict.fromkeys(loss for t in HEAD_TASKS for loss in _ALL_TASKS[t].losses))
DEFAULT_LAMBDA = 0.4  # Rao et al. section 5.4.4: best on FI's validation set
DEFAULT_LABEL_PROB = 0.7  # p* of eq. 4 and 10-11 for a record with a bare label (no votes given)


# ---- losses ---------------------------------------------------------------------------------


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 7, ``L_cls = -sum_i y_i log p_i``, averaged over the batch. ``logits (B, C)``, ``y (B,)``."""
    return -torch.log_softmax(logits, dim=1).gather(1, y[:, None]).mean()


def ed_loss(logits: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Eq. 8, ``L_ed = -sum_i f(i) log p_i`` (KL to ``dist`` up to its entropy), batch mean."""
    return -(dist * torch.log_softmax(logits, dim=1)).sum(1).mean()


def multi_loss(logits: torch.Tensor, y: torch.Tensor, dist: torch.Tensor, lam: float) -> torch.Tensor:
    """Eq. 6, ``(1 - lambda) L_cls + lambda L_ed``. ``dist (B, C)`` rows sum to 1."""
    return (1.0 - lam) * ce_loss(logits, y) + lam * ed_loss(logits, dist)


def prob_loss(logits: torch.Tensor, y: torch.Tensor, p_star: torch.Tensor) -> torch.Tensor:
    """Eq. 11, ``-p*^2 log p_y + log(1 / p*^2)``: a label voted with probability ``p* (B,)``
    weighs ``p*^2`` of a sure one. Batch mean."""
    w = p_star.clamp_min(1e-6) ** 2
    logp = torch.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0]
    return (-w * logp - torch.log(w)).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Kim et al.'s squared error, ``mean (f - T)^2`` over batch and outputs."""
    return ((pred - target) ** 2).mean()


# ---- targets --------------------------------------------------------------------------------


@dataclass
class Targets:
    """Training targets for ``N`` records.

    ``y (N,) int64`` class index; ``dist (N, C) float32`` the record's distribution or eq. 4's;
    ``p_star (N,)`` the label's probability; ``va (N, 2) float32`` valence, arousal (1-9).
    """

    y: np.ndarray | None = None
    dist: np.ndarray | None = None
    p_star: np.ndarray | None = None
    va: np.ndarray | None = None

    def take(self, idx: np.ndarray) -> Targets:
        return Targets(*(None if a is None else a[idx] for a in (self.y, self.dist, self.p_star, self.va)))


def _record_target(rec: Mapping[str, Any], labels: LabelSet, label_prob: float,
                   dmat: np.ndarray) -> tuple[int, np.ndarray, float]:
    """(class, distribution, p*) of one record for a classification head."""
    dist = rec.get("distribution")
    label = rec.get("label")
    if labels.name == "sentiment":
        # Sentiment truth is valence above or below 5 where given (docs/heads.md), else the label's polarity.
        v = rec.get("valence")
        s = sentiment_of_valence(float(v)) if _is_number(v) else (
            POLARITY.get(label) if isinstance(label, str) else None)
        if s is None:
            raise ValueError("no sentiment: valence exactly 5, or a label without polarity")
        y = labels.index(s)
        return y, wheel_distribution(y, label_prob, dmat), label_prob
    if isinstance(dist, Mapping):
        v = distribution_vector(dist, labels)
        y = labels.index(label) if isinstance(label, str) else int(np.argmax(v))
        return y, v, float(v[y])
    if isinstance(label, str):
        y = labels.index(label)
        return y, wheel_distribution(y, label_prob, dmat), label_prob
    raise ValueError('no "label" or "distribution"')


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _json_type(value: Any) -> str:
    """How JSON names the type of ``value``, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    return "an object" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def target_problem(rec: Mapping[str, Any], task: str, labels: LabelSet | None = None) -> str:
    """What is wrong with the type of a target field ``rec`` gives for ``task`` ("" when nothing).

    A target of the wrong JSON type (``"valence": "5"``, ``"label": true``, a probability that is
    a string) is refused by name rather than read as something else: Python would take ``True``
    for 1 and ``"0.5"`` for 0.5. A field that is absent or null is no target, not a wrong one.
    """
    if get_task(task).regression:
        numbers: tuple[str, ...] = ("valence", "arousal")
        texts: tuple[str, ...] = ()
        dist_key = None
    else:
        numbers = ("valence",) if labels is not None and labels.name == "sentiment" else ()
        texts, dist_key = ("label",), "distribution"
    for key in numbers:
        v = rec.get(key)
        if v is not None and not _is_number(v):
            return f'"{key}" is {_json_type(v)}, not a number'
    for key in texts:
        v = rec.get(key)
        if v is not None and not isinstance(v, str):
            return f'"{key}" is {_json_type(v)}, not a class name'
    if dist_key is not None and rec.get(dist_key) is not None:
        d = rec[dist_key]
        if not isinstance(d, Mapping):
            return f'"{dist_key}" is {_json_type(d)}, not an object of class probabilities'
        for k, p in d.items():
            if not _is_number(p):
                return f'"{dist_key}" gives {str(k)[:40]!r} {_json_type(p)}, not a number'
    return ""


def targets_from_records(records: Sequence[Mapping[str, Any]], task: str, labels: LabelSet | None = None,
                         label_prob: float = DEFAULT_LABEL_PROB,
                         refused: dict[int, str] | None = None) -> tuple[Targets, list[int], list[int]]:
    """Targets for ``records``, the indices kept, and the indices of records with no usable target.

    ``classify``: ``label`` and/or ``distribution`` (for the ``sentiment`` set, ``valence`` above
    or below 5 also serves). ``va``: numeric ``valence`` and ``arousal``. A record whose target
    field has the wrong JSON type (:func:`target_problem`) is never used; when ``refused`` is
    given it gets that record's index and what is wrong, else it counts among the skipped.
    """
    regression = get_task(task).regression
    keep, skipped = [], []
    ys, dists, ps, vas = [], [], [], []
    dmat = labels.distances() if labels is not None else None
    for i, rec in enumerate(records):
        problem = target_problem(rec, task, labels)
        if problem:
            if refused is not None:
                refused[i] = problem
            else:
                skipped.append(i)
            continue
        try:
            if regression:
                v, a = rec.get("valence"), rec.get("arousal")
                if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                           and abs(x) <= _FLOAT32_MAX for x in (v, a)):  # past float32 a target is inf
                    raise ValueError("no numeric valence and arousal")
                vas.append((float(v), float(a)))
            else:
                assert labels is not None
                y, d, p = _record_target(rec, labels, label_prob, dmat)
                ys.append(y), dists.append(d), ps.append(p)
            keep.append(i)
        except (ValueError, KeyError, TypeError, IndexError):  # a null or non-numeric target: no target
            skipped.append(i)
    if regression:
        t = Targets(va=np.asarray(vas, dtype=np.float32).reshape(-1, 2))
    else:
        t = Targets(y=np.asarray(ys, dtype=np.int64), dist=np.asarray(dists, dtype=np.float32).reshape(len(ys), len(labels)),
                    p_star=np.asarray(ps, dtype=np.float32))
    return t, keep, skipped


# ---- configuration --------------------------------------------------------------------------


@dataclass(frozen=True)
class FitConfig:
    """How a head is trained. ``hidden=()`` is a linear head; ``members`` > 1 trains an ensemble
    (seeds ``seed``, ``seed+1``, ...) whose outputs are averaged."""

    task: str = "classify"
    loss: str = "multi"
    lam: float = DEFAULT_LAMBDA
    label_smoothing: float = 0.0
    hidden: tuple[int, ...] = (512,)
    dropout: float = 0.5
    input_dropout: float = 0.0
    epochs: int = 60
    lr: float = 5e-4
    weight_decay: float = 0.05
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | sgd (Kim et al.: lr 1e-4, momentum 0.9, batch 1000)
    momentum: float = 0.9
    schedule: str = "onecycle"  # onecycle | constant
    patience: int = 0  # epochs without validation improvement before stopping; 0 = never
    members: int = 1
    seed: int = 0
    threads: int = 0  # torch threads while fitting; 0 = leave as is

    def check(self) -> FitConfig:
        if self.task not in TASKS:
            raise UsageError(f"--task must be one of {', '.join(TASKS)}")
        losses = get_task(self.task).losses
        if self.loss not in losses:
            raise UsageError(f"--task {self.task} takes --loss {' or '.join(losses)}")
        if not 0.0 <= self.lam <= 1.0:
            raise UsageError("--lambda must be in [0, 1]")
        if self.optimizer not in ("adamw", "sgd"):
            raise UsageError("--optimizer must be adamw or sgd")
        if self.epochs < 1 or self.batch_size < 1 or self.members < 1:
            raise UsageError("--epochs, --batch-size and --members must be at least 1")
        return self

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


# ---- training -------------------------------------------------------------------------------


def _loss(cfg: FitConfig, out: torch.Tensor, t: dict[str, torch.Tensor], n_out: int) -> torch.Tensor:
    if get_task(cfg.task).regression:
        return mse_loss(out, t["va"])
    y = t["y"]
    if cfg.loss == "prob":
        return prob_loss(out, y, t["p_star"])
    if cfg.label_smoothing:
        onehot = nn.functional.one_hot(y, n_out).float()
        soft = onehot * (1 - cfg.label_smoothing) + cfg.label_smoothing / n_out
        cls = -(soft * torch.log_softmax(out, 1)).sum(1).mean()
    else:
        cls = ce_loss(out, y)
    if cfg.loss == "ce":
        return cls
    return (1.0 - cfg.lam) * cls + cfg.lam * ed_loss(out, t["dist"])


def _tensors(task: str, t: Targets, va_mean: np.ndarray, va_std: np.ndarray) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if not get_task(task).regression:
        out["y"] = torch.as_tensor(t.y)
        out["dist"] = torch.as_tensor(t.dist)
        out["p_star"] = torch.as_tensor(t.p_star)
    else:
        # Regression runs on standardised targets; the head maps back to 1-9.
        out["va"] = torch.as_tensor((t.va - va_mean) / va_std)
    return out


def _step(cfg: FitConfig, out: torch.Tensor, t: dict[str, torch.Tensor], b: torch.Tensor, n_out: int,
          opt: torch.optim.Optimizer, sched: Any) -> float:
    """One optimiser step on batch ``b``; the batch's summed loss."""
    loss = _loss(cfg, out, {k: v[b] for k, v in t.items()}, n_out)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    return float(loss.detach()) * len(b)


ProgressFn = Callable[[int, int, dict[str, float]], None]  # (step, total, latest metrics)


def _train_member(cfg: FitConfig, X: torch.Tensor, t: dict[str, torch.Tensor], n_out: int, seed: int,
                  Xval: torch.Tensor | None, tval: Targets | None, net: HeadNet, member: int,
                  progress: ProgressFn | None, step0: int, total: int) -> tuple[nn.Module, int, list[dict]]:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mlp = net.new_member(cfg.hidden, cfg.dropout, cfg.input_dropout)
    params = list(mlp.parameters())
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = X.shape[0]
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch)
             if cfg.schedule == "onecycle" else None)
    best, best_state, since, history = math.inf, None, 0, []
    step = step0
    for epoch in range(cfg.epochs):
        mlp.train()
        perm = torch.randperm(n, generator=gen)
        total_loss = 0.0
        for i in range(0, n, cfg.batch_size):
            b = perm[i:i + cfg.batch_size]
            total_loss += _step(cfg, mlp(X[b]), t, b, n_out, opt, sched)
        row = {"epoch": epoch + 1, "member": member, "loss": total_loss / n}
        if Xval is not None and tval is not None:
            mlp.eval()
            with torch.no_grad():
                raw = mlp(Xval)
            row.update(_val_metrics(cfg, net, raw, tval))
            key = row["val_loss"]
            if key < best - 1e-6:
                best, since = key, 0
                best_state = {k: v.detach().clone() for k, v in mlp.state_dict().items()}
            else:
                since += 1
        history.append(row)
        step += 1
        if progress is not None:
            progress(step, total, row)
        if cfg.patience and since >= cfg.patience:
            break
    if best_state is not None and cfg.patience:
        mlp.load_state_dict(best_state)
    mlp.eval()
    return mlp, step, history


def _val_metrics(cfg: FitConfig, net: HeadNet, raw: torch.Tensor, tval: Targets) -> dict[str, float]:
    if get_task(cfg.task).regression:
        pred = net.denormalise(raw).numpy()
        mse = ((pred - tval.va) ** 2).mean(0)
        return {"val_loss": float(mse.mean()), "val_valence_mse": float(mse[0]), "val_arousal_mse": float(mse[1])}
    logp = torch.log_softmax(raw, 1)
    y = torch.as_tensor(tval.y)
    d = torch.as_tensor(tval.dist)
    loss = float((1 - cfg.lam) * -logp.gather(1, y[:, None]).mean() + cfg.lam * -(d * logp).sum(1).mean()) \
        if cfg.loss != "ce" else float(-logp.gather(1, y[:, None]).mean())
    return {"val_loss": loss, "val_top1": float((logp.argmax(1) == y).float().mean())}


def fit_head(X: np.ndarray, targets: Targets, cfg: FitConfig, net: HeadNet,
             val: tuple[np.ndarray, Targets] | None = None, progress: ProgressFn | None = None) -> list[dict]:
    """Train ``cfg.members`` networks into ``net`` (standardisation fitted on ``X``); the history.

    ``X``: ``(N, D) float32`` raw features in the head's group order. With ``val`` and
    ``cfg.patience`` each member stops early and keeps its best-validation weights. Same ``X``,
    targets, config and seed give the same head, bit for bit, on the same machine.
    """
    cfg = cfg.check()
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        net.fit_input(X)
        if get_task(cfg.task).regression:
            net.fit_output(targets.va)
        Xt = net.normalise(torch.as_tensor(X, dtype=torch.float32))
        t = _tensors(cfg.task, targets, net.out_mean_np(), net.out_std_np())
        Xv = net.normalise(torch.as_tensor(val[0], dtype=torch.float32)) if val is not None else None
        tv = val[1] if val is not None else None
        total = cfg.epochs * cfg.members
        step, history = 0, []
        for m in range(cfg.members):
            mlp, step, h = _train_member(cfg, Xt, t, net.n_out, cfg.seed + m, Xv, tv, net, m, progress, step, total)
            net.add_member(mlp)
            history += h
        return history
    finally:
        torch.set_num_threads(old_threads)


def finetune(images: np.ndarray, targets: Targets, cfg: FitConfig, model: nn.Module, net: HeadNet, crop: int,
             head_lr_mult: float = 10.0, progress: ProgressFn | None = None) -> list[dict]:
    """Train ``model`` (a :class:`emo.models.backbones.Backbone`) end to end with a new linear layer.

    ``images``: ``(N, S, S, 3) uint8`` squares (S >= ``crop``); each step takes a random
    ``crop x crop`` window and mirrors half of them (You et al.; the five-category study).
    BatchNorm statistics stay frozen (batches of a few dozen images would only add noise). The
    body learns at ``cfg.lr``, the new layer at ``head_lr_mult`` times that (the five-category
    study's higher rate for later layers). The trained layer goes into ``net`` as its one member,
    with identity standardisation. Returns the per-epoch history.
    """
    cfg = cfg.check()
    old_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        n, size = images.shape[0], images.shape[1]
        if size < crop:
            raise UsageError(f"images of {size} px cannot give {crop} px crops")
        if get_task(cfg.task).regression:
            net.fit_output(targets.va)
        t = _tensors(cfg.task, targets, net.out_mean_np(), net.out_std_np())
        layer = net.new_member((), 0.0, cfg.input_dropout)
        body = model.body
        params = [{"params": [p for p in body.parameters() if p.requires_grad], "lr": cfg.lr},
                  {"params": list(layer.parameters()), "lr": cfg.lr * head_lr_mult}]
        opt = (torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
               if cfg.optimizer == "sgd" else torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay))
        steps = cfg.epochs * max(1, math.ceil(n / cfg.batch_size))
        sched = (torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[cfg.lr, cfg.lr * head_lr_mult], total_steps=steps)
                 if cfg.schedule == "onecycle" else None)
        pixels = torch.from_numpy(images)
        history, step = [], 0
        for epoch in range(cfg.epochs):
            model.train()
            for mod in model.modules():
                if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                    mod.eval()
            layer.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for i in range(0, n, cfg.batch_size):
                b = perm[i:i + cfg.batch_size]
                ox = torch.randint(0, size - crop + 1, (len(b),), generator=gen)
                oy = torch.randint(0, size - crop + 1, (len(b),), generator=gen)
                flip = torch.rand(len(b), generator=gen) < 0.5
                batch = torch.stack([pixels[j, y:y + crop, x:x + crop] for j, x, y in zip(b.tolist(), ox.tolist(), oy.tolist())])
                batch[flip] = batch[flip].flip(2)
                x = batch.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
                total += _step(cfg, layer(body(model.normalize(x))), t, b, net.n_out, opt, sched)
            row = {"epoch": epoch + 1, "loss": total / n}
            history.append(row)
            step += 1
            if progress is not None:
                progress(step, cfg.epochs, row)
        model.eval()
        net.add_member(layer)
        return history
    finally:
        torch.set_num_threads(old_threads)


def evaluate(pred: np.ndarray, targets: Targets, task: str, labels: LabelSet | None = None
             ) -> dict[str, float | None]:
    """Flat metrics of predictions against targets, for fold summaries and head headers.

    classify: ``pred (N, C)`` probabilities -> top1 (against the label), macro_f1, kl (to the
    target distribution), and sentiment_acc where the label set has a polarity for both sides.
    va: ``pred (N, 2)`` -> valence/arousal mse and pearson_r; None where one is undefined (r of
    ratings that are all alike), which :func:`summarise` leaves out and a header holds as null.
    """
    from emo.metrics import classification_metrics, distribution_metrics, regression_metrics

    if get_task(task).regression:
        out: dict[str, float | None] = {}
        for j, name in enumerate(("valence", "arousal")):
            m = regression_metrics(targets.va[:, j], pred[:, j])
            out[f"{name}_mse"] = m["mse"]
            out[f"{name}_r"] = m["pearson_r"]  # NaN here made the header unwritable
        return out
    assert labels is not None
    yp = pred.argmax(1)
    c = classification_metrics(targets.y.tolist(), yp.tolist(), labels.labels)
    out = {"top1": c["accuracy"], "macro_f1": c["macro_f1"], "kl": distribution_metrics(targets.dist, pred)["kl"]}
    pol = np.array([labels.polarity(x) or "" for x in labels.labels])
    t_pol, p_pol = pol[targets.y], pol[yp]
    both = (t_pol != "") & (p_pol != "")
    if both.any():
        out["sentiment_acc"] = float((t_pol[both] == p_pol[both]).mean())
    return out


# ---- cross-validation -----------------------------------------------------------------------


def kfold(n: int, k: int, seed: int = 0, strata: np.ndarray | None = None) -> np.ndarray:
    """``(n,) int`` fold of each record, 0..k-1: shuffled with ``seed``, stratified by ``strata``
    (class index) when given, so every fold has each class in proportion."""
    if k < 2 or k > n:
        raise UsageError(f"--folds must be between 2 and the number of records ({n})")
    rng = np.random.default_rng(seed)
    folds = np.empty(n, dtype=np.int64)
    groups = [np.arange(n)] if strata is None else [np.flatnonzero(strata == c) for c in np.unique(strata)]
    offset = 0
    for idx in groups:
        idx = idx[rng.permutation(len(idx))]
        folds[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)  # continue the round-robin so small classes do not all land in fold 0
    return folds


def split_val(n: int, fraction: float, seed: int = 0, strata: np.ndarray | None = None) -> np.ndarray:
    """``(n,) bool``: True for the validation records (about ``fraction`` of them, stratified)."""
    if not 0.0 < fraction < 1.0:
        raise UsageError("--val-split must be between 0 and 1")
    k = max(2, round(1.0 / fraction))
    if n < k:  # kfold would name --folds, which was not given
        raise UsageError(f"--val-split {fraction:g} holds out one record in {k}: it needs at least {k} records, not {n}")
    return kfold(n, k, seed, strata) == 0


def summarise(rows: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over folds: ``{name: {mean, std}}``.

    A metric some folds lack (``sentiment_acc`` where no prediction has a polarity) is summarised
    over the folds that have it, and ``n`` says how many; the others have no ``n``.
    """
    keys = dict.fromkeys(k for r in rows for k, v in r.items() if isinstance(v, (int, float)))
    out: dict[str, dict[str, float]] = {}
    for k in keys:
        vals = [r[k] for r in rows if isinstance(r.get(k), (int, float))]  # a fold's None is no number
        out[k] = {"mean": float(np.mean(vals)), "std": float(np.std(vals))}
        if len(vals) < len(rows):
            out[k]["n"] = len(vals)
    return out


@dataclass
class FoldResult:
    """Out-of-fold predictions of a cross-validation: ``pred (N, C)`` probabilities or ``(N, 2)`` VA.

    ``logits (M, N, C)``: each ensemble member's out-of-fold logits (classify; None for va), the
    input of :func:`fit_temperature`.
    """

    pred: np.ndarray
    folds: np.ndarray
    per_fold: list[dict[str, float]] = field(default_factory=list)
    logits: np.ndarray | None = None


def cross_validate(X: np.ndarray, targets: Targets, cfg: FitConfig, make_net: Callable[[], HeadNet],
                   k: int = 5, seed: int = 0, folds: np.ndarray | None = None,
                   metric: Callable[[np.ndarray, Targets], dict[str, float]] | None = None,
                   progress: ProgressFn | None = None) -> FoldResult:
    """Train on k-1 folds and predict the held-out one, k times; nothing is tuned on the held-out fold."""
    n = X.shape[0]
    if folds is None:
        folds = kfold(n, k, seed, targets.y)
    k = int(folds.max()) + 1
    pred: np.ndarray | None = None
    logits: np.ndarray | None = None
    per_fold = []
    for f in range(k):
        tr, te = folds != f, folds == f
        net = make_net()
        fit_head(X[tr], targets.take(np.flatnonzero(tr)), replace(cfg, patience=0), net, progress=progress)
        p = net.predict_array(X[te])
        if pred is None:
            pred = np.zeros((n, p.shape[1]), dtype=np.float32)
        pred[te] = p
        if not get_task(cfg.task).regression:
            z = member_logits(net, X[te])
            if logits is None:
                logits = np.zeros((z.shape[0], n, z.shape[2]), dtype=np.float32)
            logits[:, te] = z
        if metric is not None:
            per_fold.append(metric(p, targets.take(np.flatnonzero(te))))
    assert pred is not None
    return FoldResult(pred, folds, per_fold, logits)


# ---- calibration ----------------------------------------------------------------------------

TEMPERATURE_BOUNDS = (0.05, 20.0)


def member_logits(net: HeadNet, X: np.ndarray, batch: int = 4096) -> np.ndarray:
    """``(N, D)`` raw features -> ``(M, N, C) float32``: each member's logits, before temperature."""
    net.eval()
    outs = []
    with torch.inference_mode():
        for i in range(0, len(X), batch):
            outs.append(net.raw(torch.as_tensor(X[i:i + batch], dtype=torch.float32)).numpy())
    return np.concatenate(outs, axis=1) if outs else np.zeros((len(net.members), 0, net.n_out), np.float32)


def probs_at_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """``(M, N, C)`` or ``(N, C)`` logits -> ``(N, C) float64`` probabilities, as the head gives them:
    the mean over members of ``softmax(logits / T)``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z[None] if z.ndim == 2 else z
    z = z / temperature
    z = z - z.max(2, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(2, keepdims=True)).mean(0)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes ``y (N,)`` under ``probs (N, C)``."""
    return float(-np.log(np.maximum(probs[np.arange(len(y)), y], 1e-12)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature ``T`` that minimises the NLL of held-out ``logits`` for true classes ``y``.

    ``logits``: ``(N, C)`` or ``(M, N, C)`` (ensemble members, averaged after softmax as the head
    does) from data the head was NOT trained on (out-of-fold or a validation split); ``y (N,) int``.
    T > 1 softens an over-confident head, T < 1 sharpens an under-confident one. A grid over
    log T, then a golden-section search around its best point; the result lies within ``bounds``.
    """
    y = np.asarray(y, dtype=np.int64)
    if np.asarray(logits).shape[-2] != len(y) or len(y) == 0:
        raise ValueError("fit_temperature needs logits and classes for the same, non-empty records")
    f = lambda lt: nll(probs_at_temperature(logits, math.exp(lt)), y)  # noqa: E731
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    grid = np.linspace(lo, hi, 41)
    vals = [f(g) for g in grid]
    i = int(np.argmin(vals))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(40):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return float(math.exp((a + b) / 2))


def calibration_report(logits: np.ndarray, y: np.ndarray, folds: np.ndarray, bins: int = 15,
                       dist: np.ndarray | None = None) -> dict[str, Any]:
    """How calibrated out-of-fold ``logits (M, N, C)`` are, before and after temperature scaling.

    ``temperature`` is fitted on all records (what a head stores). The "after" figures are honest:
    each fold's records are scaled by a temperature fitted on the other folds only. ECE uses
    ``bins`` equal-width bins; NLL is in nats. With truth distributions ``dist (N, C)``, also the
    mean KL(truth || prediction) before and after, since scaling moves the whole distribution.
    """
    from emo.metrics import distribution_metrics, expected_calibration_error

    y = np.asarray(y, dtype=np.int64)
    before = probs_at_temperature(logits, 1.0)
    after = np.zeros_like(before)
    for f in np.unique(folds):
        te = folds == f
        t_f = fit_temperature(np.asarray(logits)[..., ~te, :], y[~te])
        after[te] = probs_at_temperature(np.asarray(logits)[..., te, :], t_f)
    out = {"bins": bins, "temperature": fit_temperature(logits, y),
           "ece_before": expected_calibration_error(before, y, bins),
           "ece_after": expected_calibration_error(after, y, bins),
           "nll_before": nll(before, y), "nll_after": nll(after, y)}
    if dist is not None:
        out["kl_before"] = distribution_metrics(dist, before)["kl"]
        out["kl_after"] = distribution_metrics(dist, after)["kl"]
    return out


def describe_source(path: str | Path, root: str | Path) -> dict[str, str]:
    """A training data file as a head header names it: ``{"path", "sha256"}``, the path relative
    to ``root`` (the file's own name when it lies outside), so no folder of the training machine leaks."""
    import hashlib

    from emo.io.records import printable

    p, r = Path(path).resolve(), Path(root).resolve()
    try:
        name = p.relative_to(r).as_posix()
    except ValueError:
        name = p.name
    name = printable(name)  # a header is UTF-8 JSON: bytes of a name that are not UTF-8 read as U+FFFD
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return {"path": name, "sha256": h.hexdigest()}
