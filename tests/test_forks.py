"""emo.forks: what a forked child makes afresh (pools, locks, a thread of its own for torch)."""

from __future__ import annotations

import gc
import os
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from emo import forks
from tests.conftest import in_fork

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")


class _Owner:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1)


def test_a_pool_the_parent_used_is_made_afresh_in_the_child():
    owner = forks.renew_in_child(_Owner(), forks.drop_pool)
    assert owner._pool.submit(lambda: 1).result() == 1  # its thread is up and idle in the parent

    def child() -> bytes:
        assert owner._pool is None  # the parent's would take the task and never run it
        return b"dropped"

    assert in_fork(child) == b"dropped"
    assert owner._pool is not None  # the parent keeps its own
    owner._pool.shutdown()


def test_renewals_hold_their_owners_weakly():
    before = set(forks._renewals)
    owner = forks.renew_in_child(_Owner(), forks.drop_pool)
    (key,) = set(forks._renewals) - before
    owner._pool.shutdown()
    del owner
    gc.collect()
    assert key not in forks._renewals


def test_torch_work_of_the_forking_thread_runs_on_a_thread_of_the_child():
    """The parent's OpenMP threads are gone in the child, yet the forking thread's runtime still
    counts on them: a parallel operation there waited forever. One on a new thread does not."""
    import torch

    x = torch.randn(8, 16, 64, 64)
    conv = torch.nn.Conv2d(16, 16, 3)
    with torch.no_grad():
        want = conv(x)  # a parallel region on this thread, when torch has more than one

    def child() -> bytes:
        with torch.no_grad():
            got = forks.on_own_thread(lambda: (threading.get_ident(), torch.get_num_threads(), conv(x)))
        assert got[0] != threading.get_ident() and got[1] == torch.get_num_threads()
        return pickle.dumps(got[2])

    assert torch.equal(pickle.loads(in_fork(child)), want)
    assert forks.on_own_thread(threading.get_ident) == threading.get_ident()  # not forked: the caller's


def test_a_module_lock_another_thread_held_at_the_fork_is_free_in_the_child():
    from emo.features import texture

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with texture._cache_lock:
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(30)
    try:
        assert in_fork(lambda: str(texture._cached(("fork-test",), lambda: 7)).encode()) == b"7"
    finally:
        release.set()
        t.join()
    assert ("fork-test",) not in texture._cache  # the child's table was its own
