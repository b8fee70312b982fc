"""Worker threads that run torch on one core each (stages that share a batch out by picture)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from emo.forks import torch_threads


def one_core_pool(size: int, name: str) -> ThreadPoolExecutor:
    """A pool of ``size`` threads, each running torch's operations on itself alone.

    Threads started later, outside the pool, still take the count the calling thread has.
    """
    import torch

    return ThreadPoolExecutor(size, name, initializer=one_intra_op_thread, initargs=(torch.get_num_threads(),))


def one_intra_op_thread(others: int = 0) -> None:
    """Thread initializer: torch runs this thread's operations on this thread alone.

    torch keeps a thread's count once the thread has taken one, but ``set_num_threads`` also
    becomes the count every thread started later takes. ``others`` (> 1) is put back as that
    count, so that a caller's own thread (an ``emo.Predictor`` called from a thread pool, say)
    does not run its network on one core.
    """
    import torch

    torch.get_num_threads()  # settle this thread's own count first, so the set below sticks
    torch.set_num_threads(1)
    torch.ones(2).add_(1)
    if others > 1:
        # Only a set_num_threads call writes the count later threads take, and it sets the
        # calling thread too: a thread of its own makes that call and ends.
        t = threading.Thread(target=torch_threads, args=(others,), name="emo-threads", daemon=True)
        t.start()
        t.join()
