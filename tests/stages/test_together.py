"""emo.stages.together: members run side by side, and the batch ends as if they ran in turn."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from emo.errors import ModelError
from emo.io.decode import View
from emo.io.records import Item
from emo.stages.head_stages import LazyStage
from emo.stages.together import Together
from tests.conftest import in_fork

VIEW = View(8, mode="squash")


def _items(n: int) -> list[Item]:
    items = []
    for i in range(n):
        it = Item(i, {"path": f"{i}.jpg"})
        it.views[VIEW] = np.full((8, 8, 3), i, np.uint8)
        items.append(it)
    return items


class _Member:
    """Writes group ``name``: the mean of each item's pixels; fails the items in ``bad``."""

    def __init__(self, name: str, bad: tuple[int, ...] = (), before=None) -> None:
        self.name, self.bad, self.before = name, bad, before
        self.views = (VIEW,)
        self.threads: set[str] = set()

    def wants(self, item: Item) -> bool:
        return self.name not in item.features

    def run(self, items: list[Item]) -> None:
        self.threads.add(threading.current_thread().name)
        if self.before:
            self.before()
        for it in items:
            if it.index in self.bad:
                raise ValueError(f"{self.name} cannot read {it.index}")
        for it in items:
            it.features[self.name] = float(it.views[VIEW].mean())


def test_members_run_at_the_same_time():
    met = threading.Event()
    waited = []
    first = _Member("a", before=lambda: waited.append(met.wait(10)))
    second = _Member("b", before=met.set)  # one after the other, the first would wait in vain
    items = _items(4)
    Together([first, second]).run(items)
    assert waited == [True]
    assert threading.current_thread().name in second.threads
    assert threading.current_thread().name not in first.threads
    assert [(it.features["a"], it.features["b"]) for it in items] == [(i, i) for i in range(4)]


def test_a_failed_item_keeps_the_first_members_error_and_the_others_pixels():
    # "a" fails item 1, and "b" fails items 1 and 2: retried one by one, the rest go through
    a, b = _Member("a", bad=(1,)), _Member("b", bad=(1, 2))
    items = _items(4)
    Together([a, b]).run(items)
    assert [it.ok for it in items] == [True, False, False, True]
    assert "a cannot read 1" in items[1].error.message
    assert "b cannot read 2" in items[2].error.message
    assert items[2].features["a"] == 2.0  # "a" read item 2's pixels although "b" failed it
    assert items[0].features == {"a": 0.0, "b": 0.0} and items[3].features == {"a": 3.0, "b": 3.0}


def test_a_run_stopping_error_waits_for_the_other_member():
    done = []

    def stop() -> None:
        raise ModelError("cannot build the network")

    slow = _Member("a", before=lambda: threading.Event().wait(0.3) or done.append(1))
    broken = LazyStage(stop, (VIEW,), ("b",))
    with pytest.raises(ModelError):
        Together([slow, broken]).run(_items(2))
    assert done == []  # the build fails before any member runs

    failing = _Member("b", before=stop)
    with pytest.raises(ModelError):
        Together([slow, failing]).run(_items(2))
    assert done == [1]  # raised only once the other member had finished


def test_lazy_members_are_built_on_the_calling_thread_once():
    built = []

    def make():
        built.append(threading.current_thread().name)
        return _Member("b")

    together = Together([_Member("a"), LazyStage(make, (VIEW,), ("b",))])
    for _ in range(2):
        together.run(_items(3))
    assert built == [threading.current_thread().name]


def test_a_lazy_member_with_nothing_to_do_is_not_built():
    built = []
    together = Together([_Member("a"), LazyStage(lambda: built.append(1) or _Member("b"), (VIEW,), ("b",))])
    items = _items(2)
    for it in items:
        it.features["b"] = -1.0  # the records carry the network's group: no network loads
    together.run(items)
    assert built == [] and [it.features["a"] for it in items] == [0.0, 1.0]


def test_members_with_nothing_to_do_are_skipped():
    a, b = _Member("a"), _Member("b")
    items = _items(2)
    for it in items:
        it.features["b"] = -1.0
    together = Together([a, b])
    assert together.views == (VIEW,) and together.wants(items[0])
    together.run(items)
    assert [it.features for it in items] == [{"b": -1.0, "a": 0.0}, {"b": -1.0, "a": 1.0}]
    assert b.threads == set() and a.threads == {threading.current_thread().name}


def test_an_interrupt_ends_the_batch_without_waiting_for_the_other_member():
    # Ctrl-C (or SIGTERM, raised as another BaseException) lands while the calling thread runs
    # its member: the run ends now, not once the other member has finished its share
    release, finished = threading.Event(), []
    slow = _Member("a", before=lambda: finished.append(release.wait(5)))

    def interrupt() -> None:
        raise KeyboardInterrupt

    together = Together([slow, _Member("b", before=interrupt)])
    try:
        with pytest.raises(KeyboardInterrupt):
            together.run(_items(2))
        assert finished == []  # raised while the other member still ran
    finally:
        release.set()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")
def test_a_forked_child_runs_the_members_on_threads_of_its_own():
    """The parent's pool threads are not in a forked child: a member given to them never ran."""
    together = Together([_Member("a"), _Member("b")])
    together.run(_items(2))  # the pool is made, and its thread waits for more

    def child() -> bytes:
        items = _items(3)
        together.run(items)
        return repr([(it.features["a"], it.features["b"]) for it in items]).encode()

    assert in_fork(child) == repr([(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)]).encode()
