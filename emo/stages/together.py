"""Stages that need none of each other's results, run at the same time on each batch.

``emo features`` computes the hand-crafted groups on worker threads and runs the backbone on
the main thread; one after the other, each leaves cores idle while the other finishes its part
of the batch (the last pictures of a thread's share, the network's small serial steps). Run
side by side they fill those gaps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from emo.forks import drop_pool, renew_in_child
from emo.io.decode import View
from emo.io.records import Item


def _stand_in(item: Item) -> Item:
    """``item`` for one member: the same record, features and scratch, its own error and views,
    so a member that fails a picture does not clear the pixels another member is reading."""
    return dataclasses.replace(item, views=dict(item.views))


class Together:
    """Runs ``stages`` on each batch at the same time, the last on the calling thread.

    The members must write different keys (feature groups, record keys). A failure is kept per
    member and applied after all have finished, in the members' order, so an item failed by two
    members carries the first one's error, as when they run one after the other. Members that
    build themselves on first use (:class:`emo.stages.head_stages.LazyStage`) are built on the
    calling thread, one after the other, before any runs: imports stay on one thread.
    """

    def __init__(self, stages: Sequence[Any]) -> None:
        self.stages = list(stages)
        self.views: tuple[View, ...] = tuple(dict.fromkeys(v for s in self.stages for v in s.views))
        self._pool: ThreadPoolExecutor | None = None
        renew_in_child(self, drop_pool)  # a forked child makes its own

    def wants(self, item: Item) -> bool:
        return any(s.wants(item) for s in self.stages)

    def run(self, items: list[Item]) -> None:
        from emo.pipeline import run_stage

        jobs = [(s, [it for it in items if it.ok and s.wants(it)]) for s in self.stages]
        jobs = [(s, todo) for s, todo in jobs if todo]
        for s, _ in jobs:  # a member with nothing to do never loads its network
            if hasattr(s, "build"):
                s.build()
        if len(jobs) < 2:
            for s, todo in jobs:
                run_stage(s, todo)
            return
        parts = [(s, [_stand_in(it) for it in todo]) for s, todo in jobs]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(len(self.stages) - 1, "emo-together")
        futures = [self._pool.submit(run_stage, s, part) for s, part in parts[:-1]]
        last: Exception | None = None
        try:
            run_stage(*parts[-1])
        except Exception as e:  # noqa: BLE001 - raised below, once every member has finished
            last = e
        except BaseException:  # Ctrl-C, SIGTERM: the batch is dropped, the run ends now, not
            for f in futures:  # after the other members' share of it
                f.cancel()
            raise
        # every member finishes before a result is read or an error raised (the first member's first)
        errors = [e for e in (f.exception() for f in futures) if e is not None] + ([last] if last else [])
        if errors:
            raise errors[0]
        for (_, todo), (_, part) in zip(jobs, parts):
            for item, done in zip(todo, part):
                if done.error is not None and item.ok:
                    item.fail(done.error.kind, done.error.message)
