"""Decode images in forked worker processes, into a ring of shared-memory slots.

Why processes: ``import torch`` takes a second or more and holds the GIL, and an AOTInductor
engine call holds it too (pytorch/pytorch#197516), so decode *threads* stall exactly when there
is a core free for them. A worker forked before torch loads decodes the first few hundred images
while the main process is still importing, and later runs beside the engine without the GIL.

How: the pool is forked before torch is imported (forking later would copy a process with
OpenMP threads). Each worker has its own task pipe (main -> worker: sequence number, slot,
views, path) and its own done pipe (worker -> main: the sequence number, 8 bytes). A worker
writes its pixels, or its error, into the slot ``seq % slots`` of an anonymous shared mapping,
so nothing large goes through a pipe, and a worker never waits for the main process: at most
``slots`` tasks are outstanding and their 8-byte notices fit in a pipe's buffer.

A worker whose main process is gone (kill -9) ends at its next notice: the done pipe has no
reader left, so the write fails (EPIPE) and the worker exits.

How many: with a :class:`emo.io.balance.Balancer` the pool forks one worker per core and feeds
as many as the balancer's plan says, from what the run measures (each slot's header carries the
CPU time its decode took); tasks beyond what the fed workers hold wait in this process, and the
main process decodes the next of them itself when it would otherwise wait. Without one, it feeds
every worker it forked.

Losing nothing: a worker that dies (a decoder crash, the OOM killer) shows as end-of-file on its
done pipe. The image it was decoding becomes that record's error; its other tasks are decoded
on threads in this process, and so is everything submitted after.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import os
import select
import signal
import struct
import sys
import time
import warnings
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from emo.errors import InputError

try:
    import fcntl
except ImportError:  # not on Windows, where no worker is forked either
    fcntl = None  # type: ignore[assignment]
from emo.io import decode as _decode_mod
from emo.io.balance import MAX_WORKERS, UNLIMITED, Balancer, usable_cores
from emo.io.decode import Decoded, View

# Bytes of pixels the ring may hold: about 1,100 images at 224 px, what one worker decodes while
# torch imports and the engine loads on a small machine; a fixed bound, so memory stops growing
# once the ring is full, however long the input.
RING_BYTES = 160 * 2**20
MAX_SLOTS = 1024
# Slot header: status, width, height, the lengths of the error's kind and message, the decode's
# CPU time (microseconds), then the kind and message (UTF-8, cut to fit).
_HEAD = struct.Struct("<BxxxiiHHI")
HEADER_BYTES = 1024
_TASK = struct.Struct("<qiII")  # seq, slot, view mask, path length
TASK_PIPE_BYTES = 256 * 1024  # ~2,500 queued paths; pipe buffers count against a per-user quota
CLOSE_SECONDS = 2.0  # how long close() lets workers finish before killing them
_SEQ = struct.Struct("<q")
_OK, _ERR = 1, 2


def _decode_one(path: Path, views: tuple[View, ...], max_pixels: int, max_bytes: int | None = None) -> Decoded | InputError:
    """:func:`emo.io.decode.decode`, every failure turned into an :class:`InputError`."""
    try:
        return _decode_mod.decode(path, views, max_pixels, max_bytes)
    except InputError as e:
        return e
    except Exception as e:  # a decoder bug must cost one record, not the run
        return InputError("read_error", f"{type(e).__name__}: {e}")


def notice_capacity(pipe_bytes: int) -> int:
    """Done notices a pipe of ``pipe_bytes`` always has room for. Linux appends only to a pipe's
    last page, and a page the reader has partly read still fills a whole one: a pipe of P pages
    can refuse a write with (P - 1) pages and one notice in it."""
    per_page = mmap.PAGESIZE // _SEQ.size
    return max(1, (pipe_bytes // mmap.PAGESIZE - 1) * per_page + 1)


def _max_fd() -> int:
    try:
        return min(int(os.sysconf("SC_OPEN_MAX")), 1 << 20)
    except (ValueError, OSError):
        return 4096


def _read_exact(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd``, or fewer only at end of file."""
    parts, got = [], 0
    while got < n:
        b = os.read(fd, n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


class _Layout:
    """Where each view lives in a slot: the header first, then every view's ``size x size x 3``."""

    def __init__(self, views: Sequence[View]) -> None:
        self.views = tuple(views)
        self.offset: dict[View, int] = {}  # from the slot's start
        off = HEADER_BYTES
        for v in self.views:
            self.offset[v] = off
            off += v.size * v.size * 3
        self.slot_bytes = -(-off // mmap.PAGESIZE) * mmap.PAGESIZE  # page-aligned slots

    def mask(self, views: Sequence[View]) -> int:
        return sum(1 << self.views.index(v) for v in views)

    def unmask(self, mask: int) -> tuple[View, ...]:
        return tuple(v for i, v in enumerate(self.views) if mask >> i & 1)


def _write_slot(mem: mmap.mmap, base: int, layout: _Layout, res: Decoded | InputError, cpu_us: int = 0) -> None:
    cpu_us = min(max(0, cpu_us), 2**32 - 1)
    if isinstance(res, InputError):
        kind = res.kind.encode()[:64]
        msg = res.message.encode("utf-8", "replace")[: HEADER_BYTES - _HEAD.size - len(kind)]
        mem[base:base + _HEAD.size] = _HEAD.pack(_ERR, 0, 0, len(kind), len(msg), cpu_us)
        start = base + _HEAD.size
        mem[start:start + len(kind) + len(msg)] = kind + msg
        return
    for v, arr in res.views.items():
        n = v.size * v.size * 3
        if arr.shape != (v.size, v.size, 3):
            raise ValueError(f"view {v} came out {arr.shape}")
        np.frombuffer(mem, np.uint8, n, base + layout.offset[v])[:] = arr.reshape(-1)
    mem[base:base + _HEAD.size] = _HEAD.pack(_OK, res.size[0], res.size[1], 0, 0, cpu_us)


def _slot_cpu(mem: mmap.mmap, base: int) -> float | None:
    """CPU seconds the decode in this slot took (None when the worker left no result)."""
    status, *_, cpu_us = _HEAD.unpack_from(mem, base)
    return cpu_us / 1e6 if status in (_OK, _ERR) else None


def _read_slot(mem: mmap.mmap, base: int, layout: _Layout, mask: int) -> Decoded | InputError:
    status, w, h, nk, nm, _ = _HEAD.unpack_from(mem, base)
    if status == _ERR:
        start = base + _HEAD.size
        kind = bytes(mem[start:start + nk]).decode()
        return InputError(kind, bytes(mem[start + nk:start + nk + nm]).decode("utf-8", "replace"))
    if status != _OK:
        return InputError("read_error", "the decoder process left no result for this file")
    out = {}
    for v in layout.unmask(mask):
        n = v.size * v.size * 3
        out[v] = np.frombuffer(mem, np.uint8, n, base + layout.offset[v]).reshape(v.size, v.size, 3).copy()
    return Decoded((w, h), out)


def _unmap_slot(mem: mmap.mmap, base: int, size: int) -> None:
    """Drop a read slot's pages from this process's page tables: the worker still holds them, so
    the ring is resident once (in the worker), not once more here."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        mem.madvise(mmap.MADV_DONTNEED, base, size)


def _worker(task_fd: int, done_fd: int, mem: mmap.mmap, layout: _Layout, max_pixels: int,
            max_bytes: int | None = None) -> None:
    """A worker's whole life: read a task, decode, fill the slot, say done; stop at end of file."""
    while True:
        head = _read_exact(task_fd, _TASK.size)
        if len(head) < _TASK.size:
            return
        seq, slot, mask, plen = _TASK.unpack(head)
        path = Path(os.fsdecode(_read_exact(task_fd, plen)))
        base = slot * layout.slot_bytes
        mem[base] = 0  # not done yet: a crash mid-write must not leave the last image's status
        cpu = time.process_time()
        res = _decode_one(path, layout.unmask(mask), max_pixels, max_bytes)
        cpu_us = round((time.process_time() - cpu) * 1e6)
        try:
            _write_slot(mem, base, layout, res, cpu_us)
        except Exception as e:  # a view that does not fit: that record's error, not the worker's end
            _write_slot(mem, base, layout, InputError("read_error", f"{type(e).__name__}: {e}"), cpu_us)
        os.write(done_fd, _SEQ.pack(seq))


class _Pending:
    """A handle for one submitted image; ``result()`` waits for its decoding."""

    __slots__ = ("pool", "seq")

    def __init__(self, pool: ProcessDecoder, seq: int) -> None:
        self.pool, self.seq = pool, seq

    def result(self) -> Decoded | InputError:
        return self.pool._result(self.seq)


class ProcessDecoder:
    """Decode in ``workers`` forked processes, at most ``slots`` images ahead of the consumer.

    ``submit(path, views)`` returns an object with ``result()`` (a :class:`Decoded` or the
    :class:`InputError` for a bad file). Results must be taken in submission order. With a
    ``balancer``, ``workers`` are forked but only as many as its plan says are fed. ``isolate``:
    this process never decodes an image a worker could take (it waits for one instead), so a
    decoder crash costs one record however the plan is set.
    """

    def __init__(self, views: Sequence[View], max_pixels: int, workers: int = 1, slots: int = 0,
                 balancer: Balancer | None = None, max_bytes: int | None = None, isolate: bool = False) -> None:
        self.layout = _Layout(views)
        self.isolate = isolate
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes  # None: decode's default (EMO_MAX_BYTES or 512 MiB)
        self.slots = slots or ring_slots(views)
        self.mem = mmap.mmap(-1, self.slots * self.layout.slot_bytes)
        self.balancer = balancer
        self._next = 0  # next sequence number
        self._taken = 0  # results handed out; a slot is free again once its result is taken
        self._owner: dict[int, int] = {}  # outstanding seq -> worker
        self._queue: list[deque[int]] = []  # per worker, its outstanding seqs in order
        self._done: set[int] = set()
        self._fallback: dict[int, Future] = {}  # seqs decoded on threads instead
        self._here: dict[int, tuple[Decoded | InputError, float]] = {}  # decoded in this process, and its CPU s
        self._backlog: deque[int] = deque()  # submitted, not yet given to a worker
        self._args: dict[int, tuple[Path, tuple[View, ...]]] = {}
        self._crashed: dict[int, str] = {}
        self._threads: ThreadPoolExecutor | None = None
        self._cap: list[int] = []  # per worker: outstanding tasks its done pipe can hold notices for
        self.pids: list[int] = []
        self._task_w: list[int | None] = []
        self._done_r: list[int | None] = []
        self._start(max(1, workers))
        self._poller = select.poll()
        self._fd_worker: dict[int, int] = {}
        for k, fd in enumerate(self._done_r):
            self._poller.register(fd, select.POLLIN)  # type: ignore[arg-type]
            self._fd_worker[fd] = k  # type: ignore[index]
        self.decoded_here = 0  # images the main process decoded while it would have waited
        self._inline = self._inline_cpu = 0.0  # its decoding since the last result taken

    @property
    def _fed(self) -> int:
        """Workers that get tasks now."""
        return self.balancer.plan.workers if self.balancer else len(self.pids)

    @property
    def _depth(self) -> int:
        return self.balancer.plan.depth if self.balancer else UNLIMITED

    def _start(self, workers: int) -> None:
        pipes: list[tuple[tuple[int, int], tuple[int, int]]] = []
        try:
            for _ in range(workers):
                pipes.append((os.pipe(), os.pipe()))
                (tr, tw), (dr, dw) = pipes[-1]
                if fcntl is not None:
                    with contextlib.suppress(OSError):  # room for the outstanding tasks: the main rarely waits
                        fcntl.fcntl(tw, getattr(fcntl, "F_SETPIPE_SZ", 1031), TASK_PIPE_BYTES)
                    with contextlib.suppress(OSError):
                        self._cap.append(notice_capacity(fcntl.fcntl(dr, getattr(fcntl, "F_GETPIPE_SZ", 1032))))
                if len(self._cap) < len(pipes):
                    self._cap.append(1)  # the pipe's size unknown: one outstanding task, never a wait
            sys.stdout.flush()
            sys.stderr.flush()
            for k, ((tr, tw), (dr, dw)) in enumerate(pipes):
                pid = os.fork()
                if pid == 0:
                    self._child(tr, dw)
                self.pids.append(pid)
        except BaseException:
            for pid in self.pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
            for fds in pipes:
                for fd in (*fds[0], *fds[1]):
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self.mem.close()
            raise
        for (tr, tw), (dr, dw) in pipes:
            os.close(tr)
            os.close(dw)
            self._task_w.append(tw)
            self._done_r.append(dr)
            self._queue.append(deque())

    def _child(self, task_fd: int, done_fd: int) -> None:
        """The forked worker: keep only its two pipe ends, decode until end of input, exit."""
        code = 0
        try:
            if fcntl is not None:  # a parent started with stdio closed may have pipe ends at 0-2
                task_fd, done_fd = (fcntl.fcntl(fd, fcntl.F_DUPFD, 3) if fd < 3 else fd for fd in (task_fd, done_fd))
            gc.freeze()  # the parent's objects stay shared, not copied by the collector
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
                signal.signal(signal.SIGHUP, signal.SIG_DFL)  # the parent's handler unwinds the parent's run
            # Every other descriptor goes: a copy of another pool's task pipe held here would keep
            # that pool's workers from ever seeing end of input. Nothing may reach stdout (the
            # records) or take a stream lock some other thread of the parent held at the fork.
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            keep = sorted({0, 1, 2, task_fd, done_fd})
            for lo, hi in zip(keep, [*keep[1:], _max_fd()]):
                os.closerange(lo + 1, hi)
            sys.stdout = sys.stderr = open(os.devnull, "w")  # fresh objects, fresh locks
            warnings.simplefilter("ignore")
            _worker(task_fd, done_fd, self.mem, self.layout, self.max_pixels, self.max_bytes)
        except BaseException:
            code = 1
        finally:
            os._exit(code)

    def describe(self) -> str:
        """What decoded, for ``-v``: ``"1 worker process"``."""
        n = len(self.pids)
        dead = n - self.alive
        tail = f" ({dead} died; the rest on threads)" if dead else ""
        if self.balancer is not None and not self.balancer.fixed:
            tail += f", {self.balancer.describe()}"
        if self.decoded_here:
            tail += f"; {self.decoded_here} decoded in the main process"
        return f"{n} worker process{'es' if n != 1 else ''}{tail}"

    @property
    def alive(self) -> int:
        """Workers still running."""
        return sum(fd is not None for fd in self._task_w)

    def submit(self, path: Path, views: tuple[View, ...]) -> Any:
        """Queue one image; returns a handle whose ``result()`` is its :class:`Decoded` or error."""
        seq = self._next
        self._next += 1
        self._args[seq] = (path, views)
        live = [k for k, fd in enumerate(self._task_w) if fd is not None][: self._fed]
        # No fed worker's done pipe has room for one more notice (a user over the pipe quota):
        # a thread, as when the ring is full, so nothing waits on a worker that cannot take it.
        full = all(len(self._queue[k]) >= self._cap[k] for k in live)
        if full or seq - self._taken >= self.slots or any(v not in self.layout.offset for v in views):
            self._to_thread(seq)
            return _Pending(self, seq)
        self._backlog.append(seq)
        self._pump()
        return _Pending(self, seq)

    def _pick(self) -> int | None:
        """The fed worker with the fewest tasks that can take one more, or None."""
        # A worker takes a task only while its done pipe has room for every notice it owes: it
        # then never blocks writing one, so it never waits on the main process.
        live = [k for k, fd in enumerate(self._task_w) if fd is not None][: self._fed]
        room = [k for k in live if len(self._queue[k]) < min(self._cap[k], self._depth)]
        return min(room, key=lambda k: len(self._queue[k])) if room else None

    def _pump(self) -> None:
        """Give queued tasks to fed workers with room, oldest first."""
        while self._backlog:
            if not self.alive:  # every worker is gone: what is left goes to threads
                while self._backlog:
                    self._to_thread(self._backlog.popleft())
                return
            k = self._pick()
            if k is None:
                return
            seq = self._backlog.popleft()
            path, views = self._args[seq]
            raw = os.fsencode(path)
            msg = _TASK.pack(seq, seq % self.slots, self.layout.mask(views), len(raw)) + raw
            try:
                os.write(self._task_w[k], msg) if len(msg) <= 4096 else self._write_all(self._task_w[k], msg)
            except OSError:  # the worker is gone: this task goes to a thread
                self._lost(k)
                self._to_thread(seq)
                continue
            self._owner[seq] = k
            self._queue[k].append(seq)

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    def _to_thread(self, seq: int) -> None:
        """Decode ``seq`` on a thread of this process instead (no worker can take it)."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="emo-decode")
        path, views = self._args[seq]
        self._fallback[seq] = self._threads.submit(_decode_one, path, views, self.max_pixels, self.max_bytes)

    def _decode_here(self, seq: int) -> None:
        """Decode ``seq`` in this process, now (it would otherwise wait for a worker)."""
        path, views = self._args[seq]
        t0, c0 = time.perf_counter(), time.thread_time()
        res = _decode_one(path, views, self.max_pixels, self.max_bytes)
        cpu = time.thread_time() - c0
        self._here[seq] = (res, cpu)
        self._inline += time.perf_counter() - t0
        self._inline_cpu += cpu
        self.decoded_here += 1

    def _until_taken(self, seq: int) -> float:
        """Wait until a worker takes ``seq``, the oldest queued image (or, with every worker
        gone, a thread does); returns the seconds waited."""
        t0 = time.perf_counter()
        while self._backlog and self._backlog[0] == seq:
            if not self.alive:
                self._pump()  # no worker left: the queue goes to threads
                break
            self._poller.poll(100)  # a worker's notice (or its end) makes room
            self._poll()
            self._pump()
        return time.perf_counter() - t0

    def _notice(self, k: int, raw: bytes) -> None:
        for (done,) in _SEQ.iter_unpack(raw):
            self._done.add(done)
            self._queue[k].popleft()
            self._owner.pop(done, None)

    def _poll(self) -> None:
        """Take every notice already written, without waiting; a worker found dead is handled."""
        for fd, _ in self._poller.poll(0):
            k = self._fd_worker[fd]
            if self._done_r[k] is None:
                continue
            raw = os.read(fd, 4096 - 4096 % _SEQ.size)  # whole notices: each is one atomic write
            if not raw:
                self._lost(k)
            else:
                self._notice(k, raw)

    def _result(self, seq: int) -> Decoded | InputError:
        if seq != self._taken:
            raise RuntimeError(f"decode results are taken in order: asked for {seq}, next is {self._taken}")
        _, views = self._args[seq]
        waited, cpu_s = 0.0, None
        try:
            if self._backlog and self._backlog[0] == seq:  # no worker has it: decoding it here is quickest
                if self.isolate:
                    waited += self._until_taken(seq)
                else:
                    self._decode_here(self._backlog.popleft())
            if seq not in self._done and seq in self._owner:
                self._poll()
                self._pump()
                helps = not self.isolate and self.balancer is not None and self.balancer.plan.helps
                while seq not in self._done and seq in self._owner:
                    if helps and self._backlog:  # the engine waits anyway: decode the next queued image
                        self._decode_here(self._backlog.popleft())
                        self._poll()
                        self._pump()
                        continue
                    k = self._owner[seq]
                    t0 = time.perf_counter()
                    raw = _read_exact(self._done_r[k], _SEQ.size)  # type: ignore[arg-type]
                    waited += time.perf_counter() - t0
                    if len(raw) < _SEQ.size:  # the worker died: fail its image, re-route the rest
                        self._lost(k)
                        break
                    self._notice(k, raw)
            if seq in self._crashed:
                return InputError("read_error", self._crashed.pop(seq))
            if seq in self._here:
                res, cpu_s = self._here.pop(seq)
                return res
            if seq in self._fallback:
                return self._fallback.pop(seq).result()
            self._done.discard(seq)
            base = (seq % self.slots) * self.layout.slot_bytes
            cpu_s = _slot_cpu(self.mem, base)
            res = _read_slot(self.mem, base, self.layout, self.layout.mask(views))
            _unmap_slot(self.mem, base, self.layout.slot_bytes)
            return res
        finally:
            del self._args[seq]
            self._taken += 1
            if self.balancer is not None:
                self.balancer.taken(time.monotonic(), time.process_time(), waited, self._inline,
                                    self._inline_cpu, cpu_s)
            self._inline = self._inline_cpu = 0.0
            self._pump()

    def _lost(self, k: int) -> None:
        """Worker ``k`` is gone: the image it was on is that record's error, the rest go to threads."""
        if self._task_w[k] is None:
            return
        with contextlib.suppress(OSError):
            os.close(self._task_w[k])  # type: ignore[arg-type]
        status = self._reap(self.pids[k], block=True)
        # Notices it wrote before dying are still in its done pipe (end of file comes after them):
        # those images are in the ring. The first one without a notice is the one it died on.
        queue = self._queue[k]
        fd = self._done_r[k]
        while len(raw := _read_exact(fd, _SEQ.size)) == _SEQ.size:  # type: ignore[arg-type]
            done = _SEQ.unpack(raw)[0]
            self._done.add(done)
            self._owner.pop(done, None)
            with contextlib.suppress(ValueError):
                queue.remove(done)
        with contextlib.suppress(KeyError, ValueError):
            self._poller.unregister(fd)  # type: ignore[arg-type]
        with contextlib.suppress(OSError):
            os.close(fd)  # type: ignore[arg-type]
        self._task_w[k] = self._done_r[k] = None
        if queue:
            first = queue.popleft()
            self._owner.pop(first, None)
            self._crashed[first] = f"the decoder process died ({status}) while reading this file"
        while queue:
            seq = queue.popleft()
            self._owner.pop(seq, None)
            self._to_thread(seq)
        sys.stderr.write(f"emo: a decode worker died ({status}); decoding goes on in this process\n")

    @staticmethod
    def _reap(pid: int, block: bool) -> str:
        try:
            got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return "already reaped"
        if got == 0:
            return "still running"
        if os.WIFSIGNALED(status):
            n = os.WTERMSIG(status)
            try:
                return f"signal {signal.Signals(n).name}"
            except ValueError:  # a real-time signal has no name
                return f"signal {n}"
        return f"exit status {os.WEXITSTATUS(status)}" if os.WIFEXITED(status) else f"wait status {status}"

    def close(self, abort: bool = False) -> None:
        """Stop the workers (at once when ``abort``), reap them, and free the ring."""
        live = [(k, pid) for k, pid in enumerate(self.pids) if self._task_w[k] is not None]
        for k, pid in live:
            if abort:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(self._done_r[k])  # type: ignore[arg-type]
            for fd in (self._task_w[k], self._done_r[k]):
                with contextlib.suppress(OSError):
                    os.close(fd)  # type: ignore[arg-type]
            self._task_w[k] = self._done_r[k] = None
        deadline = time.monotonic() + CLOSE_SECONDS
        for _, pid in live:  # end of input stops a worker; one that does not stop in time is killed
            while self._reap(pid, block=False) == "still running" and time.monotonic() < deadline:
                time.sleep(0.005)
            if self._reap(pid, block=False) == "still running":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._reap(pid, block=True)
        if self._threads is not None:
            self._threads.shutdown(wait=not abort, cancel_futures=abort)
        with contextlib.suppress(BufferError):  # a caller still holding a view keeps it mapped
            self.mem.close()

    def __enter__(self) -> ProcessDecoder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)


def ring_slots(views: Sequence[View]) -> int:
    """How many images the shared ring holds for ``views``: as many as fit in RING_BYTES."""
    return max(2, min(MAX_SLOTS, RING_BYTES // _Layout(views).slot_bytes))


def can_fork_before_torch() -> bool:
    """True where a process decoder is safe and useful: fork exists and torch is not loaded yet."""
    return hasattr(os, "fork") and sys.platform.startswith("linux") and "torch" not in sys.modules


def balancer_for(requested: int, batch_size: int) -> Balancer | None:
    """The balancer that picks how many workers decode, or None when ``requested`` (> 0) fixes it."""
    return None if requested > 0 else Balancer(usable_cores(), batch_size)


def process_workers(requested: int) -> int:
    """Decode processes to fork: the setting, else one per usable core (a balancer feeds as many
    of them as the run needs)."""
    return requested or min(MAX_WORKERS, usable_cores())

