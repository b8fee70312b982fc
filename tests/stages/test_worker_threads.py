"""One-core worker pools: their threads run torch alone, and threads started later are untouched."""

from __future__ import annotations

import threading

import pytest
import torch

from emo.stages.worker_threads import one_core_pool


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _fresh_thread_count() -> int:
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def test_pool_threads_run_torch_on_one_thread(two_threads):
    pool = one_core_pool(2, "emo-test")
    gate = threading.Barrier(2)  # both pool threads start, not one thread twice

    def count(_: int) -> int:
        gate.wait(timeout=10)
        return torch.get_num_threads()

    try:
        assert list(pool.map(count, range(2))) == [1, 1]
        # a later task on the same threads still sees one thread, after the count was put back
        assert list(pool.map(lambda _: torch.get_num_threads(), range(4))) == [1, 1, 1, 1]
    finally:
        pool.shutdown()


def test_threads_started_after_the_pool_take_the_callers_count(two_threads):
    assert _fresh_thread_count() == 2
    pool = one_core_pool(2, "emo-test")
    try:
        list(pool.map(lambda _: torch.ones(4).sum(), range(4)))
    finally:
        pool.shutdown()
    # a Predictor called from a thread the caller starts now runs its network on two threads
    assert _fresh_thread_count() == 2
    assert torch.get_num_threads() == 2
