"""The network inside a head file: standardisation, then an average of small MLPs (torch).

Kept apart from :mod:`emo.models.head_file` so reading and checking a head file never imports torch:
a command's decode workers start before torch loads (see :mod:`emo.io.procpool`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from emo.tasks import get_task

# Object probabilities span many decades; their log is what a linear layer can use.
LOG_EPS = 1e-4


class HeadNet(nn.Module):
    """Standardise, then average ``members`` MLPs: ``(B, D) float32`` raw features ->
    ``(B, C)`` class probabilities (classify) or ``(B, 2)`` valence, arousal on 1-9 (va).

    ``log_mask`` marks input columns that go through ``log(x + 1e-4)`` first (object groups).
    ``temperature`` divides each member's logits before its softmax (classify; 1.0 = as trained).
    """

    def __init__(self, in_dim: int, n_out: int, task: str, log_mask: np.ndarray | None = None) -> None:
        super().__init__()
        self.in_dim, self.n_out, self.task = in_dim, n_out, task
        mask = torch.zeros(in_dim, dtype=torch.bool) if log_mask is None else torch.as_tensor(log_mask, dtype=torch.bool)
        self.register_buffer("log_mask", mask)
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(n_out))
        self.register_buffer("out_std", torch.ones(n_out))
        self.members = nn.ModuleList()
        self.hidden: tuple[int, ...] = ()
        self.temperature = 1.0

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        if bool(self.log_mask.any()):
            x = torch.where(self.log_mask, torch.log(x.clamp_min(0) + LOG_EPS), x)
        return x

    def fit_input(self, X: np.ndarray) -> None:
        """Set the standardisation from training features ``X (N, D)``."""
        x = self._transform(torch.as_tensor(X, dtype=torch.float32))
        self.in_mean.copy_(x.mean(0))
        self.in_std.copy_(x.std(0, unbiased=False).clamp_min(1e-6))

    def fit_output(self, Y: np.ndarray) -> None:
        """Set the target standardisation (regression) from ``Y (N, n_out)``."""
        y = torch.as_tensor(Y, dtype=torch.float32)
        self.out_mean.copy_(y.mean(0))
        self.out_std.copy_(y.std(0, unbiased=False).clamp_min(1e-6))

    def out_mean_np(self) -> np.ndarray:
        return self.out_mean.numpy().copy()

    def out_std_np(self) -> np.ndarray:
        return self.out_std.numpy().copy()

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (self._transform(x) - self.in_mean) / self.in_std

    def denormalise(self, y: torch.Tensor) -> torch.Tensor:
        return y * self.out_std + self.out_mean

    def new_member(self, hidden: Sequence[int], dropout: float = 0.0, input_dropout: float = 0.0) -> nn.Sequential:
        """A fresh MLP: [Dropout(input)] (Linear, ReLU, Dropout) per hidden layer, then Linear."""
        self.hidden = tuple(hidden)
        layers: list[nn.Module] = [nn.Dropout(input_dropout)]
        prev = self.in_dim
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        layers.append(nn.Linear(prev, self.n_out))
        return nn.Sequential(*layers)

    def add_member(self, mlp: nn.Module) -> None:
        self.members.append(mlp.eval())

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, B, n_out)``: every member's logits (classify) or standardised outputs (va)."""
        z = self.normalise(x)
        return torch.stack([m(z) for m in self.members])

    def forward(self, x: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        out = self.raw(x)
        if not get_task(self.task).regression:
            t = self.temperature if temperature is None else temperature
            return torch.softmax(out / t, dim=2).mean(0)
        return self.denormalise(out.mean(0))

    def predict_array(self, X: np.ndarray, batch: int = 4096, temperature: float | None = None) -> np.ndarray:
        """``(N, D)`` raw features -> ``(N, n_out) float32``, in eval mode without gradients;
        ``temperature`` overrides the network's own (1.0: the probabilities as trained)."""
        self.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, len(X), batch):
                outs.append(self(torch.as_tensor(X[i:i + batch], dtype=torch.float32), temperature).numpy())
        return np.concatenate(outs) if outs else np.zeros((0, self.n_out), np.float32)
