"""Worker threads that run torch on one core each (stages that share a batch out by picture)."""

from __future__ import annotations


def one_intra_op_thread() -> None:
    """Thread initializer: torch runs this thread's operations on this thread alone."""
    import torch

    # torch keeps this per thread once the thread has run an op; the main thread keeps its own
    torch.set_num_threads(1)
    torch.ones(2).add_(1)
