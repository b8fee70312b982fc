"""The one streaming batch loop every subcommand runs: read -> decode -> batch -> stages -> write.

A subcommand is a choice of :class:`Stage` objects. The loop reads inputs lazily, decodes the
images of the next batches on a thread pool while the current batch runs through the stages
(bounded look-ahead, so memory does not grow with the number of inputs), and hands each
finished batch, in input order, to the sink.
"""

from __future__ import annotations

import itertools
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from emo.config import Settings, decode_workers
from emo.engine.host import tune_process
from emo.errors import EmoError, InputError
from emo.io.decode import Decoded, View, decode
from emo.io.records import Item

# Before torch loads: passive OpenMP waits and a heap that keeps the engine's buffers (see host.py).
tune_process()


class Stage(Protocol):
    """One step of work on a batch of items.

    ``views`` names the pixels the stage needs (empty: it works on features or records alone).
    ``wants(item)`` is false when the item already carries the stage's result, so ``a | b``
    never recomputes. ``run(items)`` fills ``item.features`` / ``item.record`` for a batch of
    items that are all ``ok`` and wanted; a bad item is marked with ``item.fail``.
    """

    views: tuple[View, ...]

    def wants(self, item: Item) -> bool: ...

    def run(self, items: list[Item]) -> None: ...


@dataclass
class Summary:
    """What a run did: inputs seen and inputs that ended as error records."""

    total: int = 0
    failed: int = 0


# The first batch is at most this big, so the first lines reach a reader soon after start-up.
FIRST_BATCH = 8


def _batched(items: Iterable[Item], n: int, first: int = 0) -> Iterator[list[Item]]:
    """Lists of ``n`` items (the first of ``first`` items when given), in order."""
    it = iter(items)
    size = first or n
    while batch := list(itertools.islice(it, size)):
        yield batch
        size = n


def _views_for(item: Item, stages: Sequence[Stage]) -> tuple[View, ...]:
    wanted: dict[View, None] = {}
    for s in stages:
        if s.views and s.wants(item):
            wanted.update(dict.fromkeys(s.views))
    return tuple(wanted)


def _decode(item: Item, views: tuple[View, ...], max_pixels: int) -> Decoded | InputError:
    try:
        return decode(item.path, views, max_pixels)  # type: ignore[arg-type]
    except InputError as e:
        return e
    except Exception as e:  # a decoder bug must cost one record, not the run
        return InputError("read_error", f"{type(e).__name__}: {e}")


def _run_stage(stage: Stage, items: list[Item]) -> None:
    """Run a stage on a batch; if the batch fails, retry item by item so one bad input is isolated."""
    try:
        stage.run(items)
        return
    except EmoError:
        raise
    except Exception as e:
        if len(items) == 1:  # nothing to retry: this item is the bad one
            items[0].fail("model_error", f"{type(e).__name__}: {e}")
            return
    for item in items:
        try:
            stage.run([item])
        except EmoError:
            raise
        except Exception as e:
            item.fail("model_error", f"{type(e).__name__}: {e}")


class Pipeline:
    """Runs ``stages`` over inputs with ``settings.batch_size`` and decode threads."""

    def __init__(self, stages: Sequence[Stage], settings: Settings, lookahead: int = 2) -> None:
        self.stages = list(stages)
        self.settings = settings
        self.lookahead = lookahead

    def _submit(self, pool: ThreadPoolExecutor, batch: list[Item]) -> list[Future | None]:
        futures: list[Future | None] = []
        for item in batch:
            views = _views_for(item, self.stages) if item.ok else ()
            if views and item.path is None:
                item.fail("bad_record", "record has no path and lacks the features this command needs")
                views = ()
            futures.append(pool.submit(_decode, item, views, self.settings.max_pixels) if views else None)
        return futures

    def process(self, batch: list[Item], futures: list[Future | None]) -> list[Item]:
        """Attach decoded pixels to ``batch``, run every stage, and drop the pixels."""
        for item, fut in zip(batch, futures):
            if fut is None:
                continue
            res = fut.result()
            if isinstance(res, InputError):
                item.fail(res.kind, res.message)
            else:
                item.size, item.views = res.size, res.views
        for stage in self.stages:
            todo = [it for it in batch if it.ok and stage.wants(it)]
            if todo:
                _run_stage(stage, todo)
        for item in batch:
            item.views = {}
        return batch

    def run(self, items: Iterable[Item]) -> Iterator[list[Item]]:
        """Yield finished batches in input order; decoding runs ahead by ``lookahead`` batches."""
        workers = decode_workers(self.settings)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emo-decode") as pool:
            pending: deque[tuple[list[Item], list[Future | None]]] = deque()
            batches = _batched(items, self.settings.batch_size, min(self.settings.batch_size, FIRST_BATCH))
            try:
                for batch in batches:
                    pending.append((batch, self._submit(pool, batch)))
                    if len(pending) > self.lookahead:
                        yield self.process(*pending.popleft())
                while pending:
                    yield self.process(*pending.popleft())
            finally:
                for _, futs in pending:
                    for f in futs:
                        if f is not None:
                            f.cancel()


def run(
    items: Iterable[Item],
    stages: Sequence[Stage],
    settings: Settings,
    sink: Callable[[list[Item]], None],
    on_error: Callable[[Item], None] | None = None,
) -> Summary:
    """Run the pipeline to the end, handing each finished batch to ``sink``; count failures."""
    summary = Summary()
    report = on_error or _stderr_error
    for batch in Pipeline(stages, settings).run(items):
        for item in batch:
            summary.total += 1
            if not item.ok:
                summary.failed += 1
                report(item)
        sink(batch)
    return summary


def _stderr_error(item: Item) -> None:
    assert item.error is not None
    sys.stderr.write(f"emo: {item.label}: {item.error.kind}: {item.error.message}\n")
