"""The one streaming batch loop every subcommand runs: read -> decode -> batch -> stages -> write.

A subcommand is a choice of :class:`Stage` objects. The loop reads inputs lazily, decodes the
images of the next batches while the current batch runs through the stages (bounded look-ahead,
so memory does not grow with the number of inputs), and hands each finished batch, in input
order, to the sink.

Decoding runs in worker processes when the run starts before torch is loaded (the command line:
stages build their networks on first use), else on threads (see :mod:`emo.io.procpool`). Unless
``--workers`` fixes their number, how many of them decode follows what the run measures
(:mod:`emo.io.balance`). With
processes the loop first fills the workers' ring with as many images as it holds, so they decode
while the first batch imports torch and loads the engine; then it looks ``lookahead`` batches ahead.
"""

from __future__ import annotations

import itertools
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from emo.config import Settings, decode_workers
from emo.engine.host import tune_process
from emo.errors import EmoError, InputError
from emo.io.decode import Decoded, View
from emo.io.procpool import (ProcessDecoder, _decode_one, balancer_for, can_fork_before_torch, process_workers,
                             ring_slots)
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
    # How images were decoded, for -v: "1 worker process", "2 threads" ("" when none were).
    decoder: str = field(default="", compare=False)


# The first batch is at most this big, so the first lines reach a reader soon after start-up.
FIRST_BATCH = 8


def _batched(items: Iterable[Item], n: int, first: int = 0) -> Iterator[list[Item]]:
    """Lists of ``n`` items (the first of ``first`` items when given), in order."""
    it = iter(items)
    size = first or n
    while batch := list(itertools.islice(it, size)):
        yield batch
        size = n


def _until_error(items: Iterable[Item], failed: list[BaseException]) -> Iterator[Item]:
    """``items`` until one raises; the exception is kept in ``failed`` for the caller to raise
    once the records read before it are written."""
    try:
        yield from items
    except Exception as e:
        failed.append(e)


def _views_for(item: Item, stages: Sequence[Stage]) -> tuple[View, ...]:
    wanted: dict[View, None] = {}
    # stages run side by side (emo.stages.together) each ask for their own views
    for s in (m for stage in stages for m in getattr(stage, "stages", (stage,))):
        if s.views and s.wants(item):
            wanted.update(dict.fromkeys(s.views))
    return tuple(wanted)


# The first fill of a process decoder's ring stops after this long, so a slow producer of paths
# (or one that pauses) still sees its first lines soon.
FILL_SECONDS = 1.0


class _Reader:
    """Reads inputs on a thread into a bounded queue, so the first fill can wait for input with a
    deadline."""

    def __init__(self, items: Iterable[Item], maxsize: int) -> None:
        self.q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize)
        self.stop = threading.Event()
        self.ended = False
        self.thread = threading.Thread(target=self._read, args=(iter(items),), name="emo-read", daemon=True)
        self.thread.start()

    def _put(self, msg: tuple[str, Any]) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(msg, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, it: Iterator[Item]) -> None:
        try:
            for item in it:
                if not self._put(("item", item)):
                    return
            self._put(("end", None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._put(("error", e))  # (an Exception is kept by _until_error before it gets here)

    def take(self, n: int, deadline: float | None = None) -> list[Item]:
        """Up to ``n`` items: fewer at the end of input, or when ``deadline`` passes first."""
        out: list[Item] = []
        while len(out) < n and not self.ended:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                kind, value = self.q.get(timeout=wait)
            except queue.Empty:
                break
            if kind == "error":
                self.ended = True
                raise value
            if kind == "end":
                self.ended = True
                break
            out.append(value)
        return out

    def __iter__(self) -> Iterator[Item]:
        while batch := self.take(1):
            yield batch[0]

    def close(self) -> None:
        self.stop.set()


class _ThreadDecoder:
    """Decode on a thread pool: ``submit(path, views)`` returns a future of the result."""

    slots = 0

    def __init__(self, workers: int, max_pixels: int, max_bytes: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emo-decode")
        self.workers = workers
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes

    def submit(self, path, views: tuple[View, ...]) -> Future:
        return self.pool.submit(_decode_one, path, views, self.max_pixels, self.max_bytes)

    def describe(self) -> str:
        return f"{self.workers} thread{'s' if self.workers != 1 else ''}"

    def close(self, abort: bool = False) -> None:
        self.pool.shutdown(wait=True, cancel_futures=abort)


def open_decoder(settings: Settings, views: Sequence[View]) -> _ThreadDecoder | ProcessDecoder:
    """Worker processes when ``settings.decoder`` allows and torch is not loaded yet, else threads."""
    mode = settings.decoder
    if views and (mode == "process" or (mode == "auto" and can_fork_before_torch())):
        try:
            balancer = balancer_for(settings.workers, settings.batch_size)  # None: --workers fixes it
            # Asked for by name, processes mean isolation: the main process never decodes.
            return ProcessDecoder(views, settings.max_pixels, process_workers(settings.workers), balancer=balancer,
                                  max_bytes=settings.max_bytes, isolate=mode == "process")
        except OSError as e:  # no fork, no shared memory: threads still work
            sys.stderr.write(f"emo: decode processes unavailable ({e}); decoding on threads\n")
    return _ThreadDecoder(decode_workers(settings), settings.max_pixels, settings.max_bytes)


def planned_slots(settings: Settings, views: Sequence[View]) -> int:
    """The ring slots :func:`open_decoder` would give, known without forking (0: threads)."""
    if views and (settings.decoder == "process" or (settings.decoder == "auto" and can_fork_before_torch())):
        return ring_slots(views)
    return 0


class _OnFirstImage:
    """The decoder :func:`open_decoder` gives, opened at the first image to decode: a run with
    nothing to decode (empty input, every input failing before its file is read, features carried
    in the records) forks no worker and starts no thread."""

    def __init__(self, settings: Settings, views: Sequence[View]) -> None:
        self.settings, self.views = settings, tuple(views)
        self.slots = planned_slots(settings, views)
        self.inner: _ThreadDecoder | ProcessDecoder | None = None

    def submit(self, path, views: tuple[View, ...]) -> Any:
        if self.inner is None:
            self.inner = open_decoder(self.settings, self.views)
            self.slots = self.inner.slots
        return self.inner.submit(path, views)

    def describe(self) -> str:
        """What decoded, for ``-v``; empty when nothing was."""
        return self.inner.describe() if self.inner is not None else ""

    def close(self, abort: bool = False) -> None:
        if self.inner is not None:
            self.inner.close(abort=abort)


def _ready(reader: _Reader, size: int) -> bool:
    """A full batch of input is already read: taking it costs no wait."""
    return reader.q.qsize() >= size


def _as_it_comes(reader: _Reader, size: int) -> Iterator[list[Item]]:
    """Batches of ``size`` items as the input comes; a shorter one (even empty) when the input
    pauses for :data:`FILL_SECONDS`, so the caller can write what it holds before waiting on."""
    while not reader.ended:
        yield reader.take(size, time.monotonic() + FILL_SECONDS)


def run_stage(stage: Stage, items: list[Item]) -> None:
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
    """Runs ``stages`` over inputs with ``settings.batch_size`` and decode workers."""

    def __init__(self, stages: Sequence[Stage], settings: Settings, lookahead: int = 2) -> None:
        self.stages = list(stages)
        self.settings = settings
        self.lookahead = lookahead
        self.decoded_by = ""  # set by run(): what decoded the images, empty when none was
        self.decoded = 0  # images decoded (files that failed to are not counted)

    def _submit(self, decoder: _OnFirstImage, batch: list[Item]) -> list[Any]:
        futures: list[Any] = []
        for item in batch:
            # An item that comes with its views (pictures in memory, emo.Predictor) is not decoded.
            views = _views_for(item, self.stages) if item.ok and not item.views else ()
            if views and item.path is None:
                item.fail("bad_record", "record has no path and lacks the features this command needs")
                views = ()
            futures.append(decoder.submit(item.path, views) if views else None)
        return futures

    def process(self, batch: list[Item], futures: list[Any]) -> list[Item]:
        """Attach decoded pixels to ``batch``, run every stage, and drop the pixels."""
        for item, fut in zip(batch, futures):
            if fut is None:
                continue
            res = fut.result()
            if isinstance(res, InputError):
                item.fail(res.kind, res.message)
            else:
                item.size, item.views = res.size, res.views
                self.decoded += 1
        for stage in self.stages:
            todo = [it for it in batch if it.ok and stage.wants(it)]
            if todo:
                run_stage(stage, todo)
        for item in batch:
            item.views = {}
        return batch

    def run(self, items: Iterable[Item]) -> Iterator[list[Item]]:
        """Yield finished batches in input order; decoding runs ahead by ``lookahead`` batches
        (decode processes: as many as their ring holds, while the input keeps up)."""
        views = tuple(dict.fromkeys(v for s in self.stages for v in s.views))
        decoder = _OnFirstImage(self.settings, views)
        size = self.settings.batch_size
        first = min(size, FIRST_BATCH)
        # A process decoder's first fill: as many images as its ring holds (less the batch
        # being read), read for at most FILL_SECONDS.
        fill = max(self.lookahead, (decoder.slots - first) // size - 1) if decoder.slots else self.lookahead
        pending: deque[tuple[list[Item], list[Any]]] = deque()
        failed: list[BaseException] = []  # an exception from the inputs, raised after their records
        inputs = _until_error(items, failed)
        reader = _Reader(inputs, max(64, decoder.slots))
        aborted = True
        try:
            # Input that pauses must not hold up what was read: wait for it until a deadline.
            deadline, want = time.monotonic() + FILL_SECONDS, first
            while len(pending) <= fill and (batch := reader.take(want, deadline)):
                pending.append((batch, self._submit(decoder, batch)))
                if len(batch) < want:  # the end of the input, or the deadline
                    break
                want = size
            while len(pending) > self.lookahead and (len(pending) > fill or not _ready(reader, size)):
                yield self.process(*pending.popleft())
            for batch in _as_it_comes(reader, size):
                if batch:
                    pending.append((batch, self._submit(decoder, batch)))
                # Input that pauses (tail -f | emo) gets every record read so far written now;
                # otherwise workers stay fed as far ahead as the ring holds while input keeps coming,
                # and input that trickles has only ``lookahead`` batches held back.
                paused = len(batch) < size and not reader.ended
                while pending and (paused or (len(pending) > self.lookahead
                                              and (len(pending) > fill or not _ready(reader, size)))):
                    yield self.process(*pending.popleft())
            while pending:
                yield self.process(*pending.popleft())
            if failed:
                raise failed[0]
            aborted = False
        finally:
            reader.close()
            self.decoded_by = decoder.describe() if self.decoded else ""  # as it ended: a balanced plan moves
            decoder.close(abort=aborted)


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
    pipe = Pipeline(stages, settings)
    for batch in pipe.run(items):
        for item in batch:
            summary.total += 1
            if not item.ok:
                summary.failed += 1
                report(item)
        sink(batch)
    summary.decoder = pipe.decoded_by
    return summary


def _stderr_error(item: Item) -> None:
    assert item.error is not None
    sys.stderr.write(item.error_line() + "\n")
