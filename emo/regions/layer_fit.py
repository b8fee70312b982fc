"""Fitting the regions' linear layers: the CAM layer (emotions) and the region head (p_emo).

Both are full-batch L-BFGS on standardised features, folded back into one linear layer on the
raw features, so CAM_c = W_c . F still holds on the unpooled map. The CAM layer uses Rao et al.'s
multi-task loss (eq. 6): (1 - lambda) cross-entropy on the label + lambda cross-entropy on the
emotion distribution, lambda = 0.4 (section 5.4.4).
"""

from __future__ import annotations

import numpy as np
import torch

LAMBDA = 0.4


def _standardise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mu = x.mean(0)
    sd = x.std(0).clamp(min=1e-6)
    return (x - mu) / sd, mu, sd


def _fold(w: torch.Tensor, b: torch.Tensor, mu: torch.Tensor, sd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer on standardised features -> the same layer on raw features."""
    w_raw = w / sd[None, :]
    return w_raw, b - w_raw @ mu


def _lbfgs(params: list[torch.Tensor], loss_fn, steps: int) -> None:
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def fit_softmax(x: np.ndarray, label: np.ndarray, dist: np.ndarray | None = None, lam: float = LAMBDA,
                l2: float = 1e-2, steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic layer: ``x (N, C)``, ``label (N,)`` class ids, ``dist (N, E)`` or None.

    Returns ``(weight (E, C), bias (E,))`` on the raw features; ``l2`` is the penalty per
    standardised weight, scaled by 1/N.
    """
    xs, mu, sd = _standardise(torch.as_tensor(x, dtype=torch.float32))
    y = torch.as_tensor(label, dtype=torch.long)
    e = int(dist.shape[1]) if dist is not None else int(y.max()) + 1
    target = torch.as_tensor(dist, dtype=torch.float32) if dist is not None else None
    w = torch.zeros(e, xs.shape[1], requires_grad=True)
    b = torch.zeros(e, requires_grad=True)

    def loss_fn():
        logp = torch.log_softmax(xs @ w.T + b, dim=1)
        loss = torch.nn.functional.nll_loss(logp, y)
        if target is not None:
            loss = (1 - lam) * loss + lam * -(target * logp).sum(1).mean()
        return loss + l2 * (w**2).sum() / xs.shape[0]

    _lbfgs([w, b], loss_fn, steps)
    return _fold(w.detach(), b.detach(), mu, sd)


def fit_binary(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 200) -> tuple[torch.Tensor, torch.Tensor]:
    """Logistic layer ``x (N, C)`` -> P(y = 1), classes weighted to balance; ``(weight (1, C), bias (1,))``."""
    xs, mu, sd = _standardise(torch.as_tensor(x, dtype=torch.float32))
    t = torch.as_tensor(y, dtype=torch.float32)
    pos = t.sum().clamp(min=1.0)
    neg = (len(t) - t.sum()).clamp(min=1.0)
    weight = torch.where(t > 0, len(t) / (2 * pos), len(t) / (2 * neg))
    w = torch.zeros(1, xs.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)

    def loss_fn():
        z = (xs @ w.T + b).squeeze(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, t, weight=weight)
        return loss + l2 * (w**2).sum() / xs.shape[0]

    _lbfgs([w, b], loss_fn, steps)
    return _fold(w.detach(), b.detach(), mu, sd)
