"""The process decoder: same pixels and errors as decoding in place, in order, nothing lost."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from emo.errors import InputError
from emo.io import decode as decode_mod
from emo.io.decode import View, decode
from emo.io.procpool import ProcessDecoder, balancer_for, can_fork_before_torch, process_workers
from tests.robustness.files import good_and_bad, noise

CROP = View(32, 40, "crop")
SQUASH = View(24, 0, "squash")
FIT = View(48, 0, "fit")
VIEWS = (CROP, SQUASH, FIT)


def _images(d: Path, n: int) -> list[Path]:
    from PIL import Image

    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"{i}.png"
        Image.fromarray(noise(30 + 7 * i, 50 + 3 * i, seed=i)).save(p)
        out.append(p)
    return out


def _expected(path: Path, views: tuple[View, ...]):
    try:
        return decode(path, views, 0)
    except InputError as e:
        return e


def _same(got, want) -> None:
    if isinstance(want, InputError):
        assert isinstance(got, InputError) and (got.kind, got.message) == (want.kind, want.message)
        return
    assert not isinstance(got, InputError), got
    assert got.size == want.size and got.views.keys() == want.views.keys()
    for v in want.views:
        assert got.views[v].dtype == np.uint8 and np.array_equal(got.views[v], want.views[v])


def test_pixels_sizes_and_errors_equal_decoding_in_place(tmp_path):
    """Good and bad files interleaved, each asking for another subset of the views."""
    mix = tmp_path / "mix"
    cases = [mix / name for name, _ in good_and_bad(mix)]
    paths = [p for pair in zip(_images(tmp_path / "ok", len(cases)), cases) for p in pair]
    asks = [VIEWS[: 1 + i % 3] if i % 4 else (FIT,) for i in range(len(paths))]
    with ProcessDecoder(VIEWS, 0, workers=2) as dec:
        handles = [dec.submit(p, v) for p, v in zip(paths, asks)]
        got = [h.result() for h in handles]
    assert any(isinstance(g, InputError) for g in got) and any(not isinstance(g, InputError) for g in got)
    for p, v, g in zip(paths, asks, got):
        _same(g, _expected(p, v))


def test_more_images_than_slots_reuse_the_ring_and_overflow_to_threads(tmp_path):
    paths = _images(tmp_path, 12)
    with ProcessDecoder((CROP,), 0, workers=1, slots=3) as dec:
        # The first 3 fill the ring; 3 more overflow to threads since none were taken yet.
        first = [dec.submit(p, (CROP,)) for p in paths[:6]]
        got = [h.result() for h in first]
        # Taken: the ring is free again, and serves the rest, slot by slot.
        for p in paths[6:]:
            got.append(dec.submit(p, (CROP,)).result())
    for p, g in zip(paths, got):
        _same(g, _expected(p, (CROP,)))


def test_results_are_taken_in_order(tmp_path):
    paths = _images(tmp_path, 2)
    with ProcessDecoder((CROP,), 0) as dec:
        a, b = dec.submit(paths[0], (CROP,)), dec.submit(paths[1], (CROP,))
        with pytest.raises(RuntimeError, match="in order"):
            b.result()
        a.result(), b.result()


def _crash_on(monkeypatch, deadly: Path, signum: int) -> list[Path]:
    """Make the (forked) worker kill itself with ``signum`` on ``deadly``; returns the list of
    times ``deadly`` was decoded in this process instead, which must stay empty."""
    main, real, redecoded = os.getpid(), decode_mod.decode, []

    def crashing(path, views, max_pixels, max_bytes=None):
        if Path(path) == deadly:
            if os.getpid() != main:
                os.kill(os.getpid(), signum)
            redecoded.append(Path(path))
        return real(path, views, max_pixels, max_bytes)

    monkeypatch.setattr(decode_mod, "decode", crashing)  # the forked worker inherits it
    return redecoded


@pytest.mark.parametrize("signum, name", [(signal.SIGKILL, "SIGKILL"), (signal.SIGRTMIN + 6, str(signal.SIGRTMIN + 6))])
def test_a_worker_that_dies_costs_only_the_image_it_was_on(tmp_path, monkeypatch, capfd, signum, name):
    """A decoder crash (a segfault, the OOM killer): that record's error, every other record decoded."""
    paths = _images(tmp_path, 8)
    deadly = paths[3]
    redecoded = _crash_on(monkeypatch, deadly, signum)

    with ProcessDecoder((CROP,), 0, workers=1) as dec:
        handles = [dec.submit(p, (CROP,)) for p in paths]
        got = [h.result() for h in handles]
        assert dec.alive == 0
        after = dec.submit(paths[0], (CROP,)).result()  # later images go to threads
    for p, g in zip(paths, got):
        if p == deadly:
            assert isinstance(g, InputError) and g.kind == "read_error"
            assert f"decoder process died (signal {name})" in g.message
        else:
            _same(g, _expected(p, (CROP,)))
    _same(after, _expected(paths[0], (CROP,)))
    assert redecoded == []  # the image that killed a worker is never retried in emo itself
    assert "a decode worker died" in capfd.readouterr().err


def _wait_dead(pid: int, timeout: float = 10) -> None:
    """Until ``pid`` has exited (a zombie: dead, not yet reaped)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} is still running")


def test_a_death_noticed_while_submitting_blames_the_right_image(tmp_path, monkeypatch):
    """The main process usually learns of a death when it queues the next batch, with notices of
    finished images still unread: those come from the ring, and only the image the worker was on
    fails."""
    paths = _images(tmp_path, 7)
    redecoded = _crash_on(monkeypatch, paths[2], signal.SIGKILL)
    with ProcessDecoder((CROP,), 0, workers=1) as dec:
        early = [dec.submit(p, (CROP,)) for p in paths[:3]]
        _wait_dead(dec.pids[0])
        late = [dec.submit(p, (CROP,)) for p in paths[3:]]  # the task pipe has no reader: noticed here
        assert dec.alive == 0
        got = [h.result() for h in early + late]
    assert redecoded == []
    for i, (p, g) in enumerate(zip(paths, got)):
        if i == 2:
            assert isinstance(g, InputError) and "died (signal SIGKILL)" in g.message
        else:
            _same(g, _expected(p, (CROP,)))


def test_two_pools_at_once_each_close_promptly(tmp_path, monkeypatch):
    """A worker keeps no copy of another pool's pipes: closing the first pool's task pipes ends
    its workers at once (else they would wait for an end of input that never comes)."""
    import time

    from emo.io import procpool

    monkeypatch.setattr(procpool, "CLOSE_SECONDS", 30)  # the kill that would hide a stuck worker
    paths = _images(tmp_path, 3)
    first = ProcessDecoder((CROP,), 0, workers=1)
    second = ProcessDecoder((CROP,), 0, workers=1)  # forked while the first pool's pipes are open
    try:
        for dec in (first, second):
            _same(dec.submit(paths[0], (CROP,)).result(), _expected(paths[0], (CROP,)))
        start = time.monotonic()
        first.close()
        assert time.monotonic() - start < 10  # not the 30 s wait before a kill
    finally:
        second.close()


def test_close_reaps_every_worker_even_mid_run(tmp_path):
    paths = _images(tmp_path, 6)
    dec = ProcessDecoder((CROP,), 0, workers=2)
    for p in paths:
        dec.submit(p, (CROP,))
    pids = list(dec.pids)
    dec.close(abort=True)
    for pid in pids:
        with pytest.raises(ChildProcessError):  # reaped: no zombie left behind
            os.waitpid(pid, os.WNOHANG)


def test_long_and_odd_paths_reach_the_worker_whole(tmp_path):
    """A path longer than a pipe's atomic write, and one that is not UTF-8, come back as themselves."""
    long = tmp_path / ("d" * 200) / ("e" * 200) / ("f" * 200)
    long.mkdir(parents=True)
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png"))
    src = _images(tmp_path / "src", 1)[0]
    os.link(src, odd)
    deep = long
    for i in range(12):  # past 4096 bytes of path in all
        deep = deep / ("g" * 250)
        try:
            deep.mkdir()
        except OSError:  # the file system's own limit: a missing file still tests the transfer
            break
    missing = deep / "nothere.png"
    with ProcessDecoder((CROP,), 0) as dec:
        got = [dec.submit(p, (CROP,)).result() for p in (odd, missing)]
    _same(got[0], _expected(src, (CROP,)))
    assert isinstance(got[1], InputError) and got[1].kind in ("not_found", "read_error")


def test_fork_policy_and_worker_count(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", sys.modules.get("torch", object()))
    assert not can_fork_before_torch()  # torch loaded: threads, never a fork of its OpenMP pool
    assert process_workers(3) == 3 and balancer_for(3, 32) is None  # --workers 3: three, fed always
    for cores, forked in ((1, 1), (2, 2), (16, 16), (200, 64)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert process_workers(0) == forked  # one per usable core: the balancer feeds what the run needs
        assert balancer_for(0, 32).cap == forked


def test_workers_die_with_a_killed_main_process(tmp_path):
    """kill -9 of emo: its decode workers go too (their next notice meets a pipe without a
    reader), instead of decoding a queue of a thousand images for nobody."""
    import subprocess
    import sys
    import time

    from PIL import Image

    big = tmp_path / "big.png"  # ~20 ms to decode: the queue below lasts far longer than the deadline
    Image.fromarray(noise(1200, 1200, seed=1)).save(big)
    code = f"""
import sys, time
from pathlib import Path
from emo.io.decode import View
from emo.io.procpool import ProcessDecoder
dec = ProcessDecoder((View(32, 40, "crop"),), 0, workers=2)
for i in range(1000):
    dec.submit(Path({str(big)!r}), (View(32, 40, "crop"),))
print(*dec.pids, flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pids = [int(x) for x in proc.stdout.readline().split()]
    assert len(pids) == 2
    proc.kill()
    proc.wait()

    def running(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False

    deadline = time.monotonic() + 5
    while any(running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(running(p) for p in pids)


def test_notice_capacity_leaves_a_page_for_the_partly_read_one():
    from emo.io.procpool import notice_capacity

    page = 4096
    assert notice_capacity(page) == 1
    assert notice_capacity(2 * page) == 513
    assert notice_capacity(16 * page) == 15 * 512 + 1  # the default 64 KiB pipe: far above the ring


def test_a_one_page_done_pipe_never_deadlocks(tmp_path):
    """A user over the pipe quota gets one-page pipes: the worker may then owe only as many
    notices as fit, the rest go to threads, and a long run finishes."""
    import fcntl
    import threading

    from emo.io.procpool import notice_capacity

    paths = _images(tmp_path, 4)
    with ProcessDecoder((CROP,), 0, workers=1) as dec:
        fcntl.fcntl(dec._task_w[0], fcntl.F_SETPIPE_SZ, 4096)  # the main can block writing tasks
        fcntl.fcntl(dec._done_r[0], fcntl.F_SETPIPE_SZ, 4096)
        dec._cap[0] = notice_capacity(fcntl.fcntl(dec._done_r[0], fcntl.F_GETPIPE_SZ))
        got: list = []

        def run() -> None:
            pending = [dec.submit(paths[i % 4], (CROP,)) for i in range(dec.slots)]
            for i in range(600):  # take one, submit one: the pipeline's steady state
                got.append(pending.pop(0).result())
                pending.append(dec.submit(paths[i % 4], (CROP,)))
            got.extend(h.result() for h in pending)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(120)
        assert not t.is_alive(), "deadlocked: the main waits on a task pipe, the worker on its notices"
    assert len(got) == dec.slots + 600
    _same(got[5], _expected(paths[5 % 4], (CROP,)))


class _Steady:
    """A balancer stand-in with one plan, to drive the pool's feeding without timing a run."""

    fixed = False

    def __init__(self, plan) -> None:
        self.plan = plan
        self.seen: list[float | None] = []

    def taken(self, now, cpu, waited, inline=0.0, inline_cpu=0.0, decode_cpu=None):
        self.seen.append(decode_cpu)
        return self.plan

    def describe(self) -> str:
        return "steady"


def test_a_plan_feeds_only_its_workers_and_the_main_process_decodes_the_rest(tmp_path):
    """One of three workers fed, two tasks deep: the rest wait in this process, which decodes the
    next of them while it waits. Same pixels and order; every image's decode time comes back."""
    from emo.io.balance import Plan

    paths = _images(tmp_path, 24)
    steady = _Steady(Plan(workers=1, depth=2, helps=True, measured=True))
    with ProcessDecoder((CROP,), 0, workers=3, balancer=steady) as dec:
        handles = [dec.submit(p, (CROP,)) for p in paths]
        assert [len(q) for q in dec._queue] == [2, 0, 0] and len(dec._backlog) == 22
        got = [h.result() for h in handles]
        here = dec.decoded_here
        assert "decoded in the main process" in dec.describe()
    for p, g in zip(paths, got):
        _same(g, _expected(p, (CROP,)))
    assert 0 < here < 24  # the fed worker did its share, the main process the rest
    assert len(steady.seen) == 24 and all(c is not None and c >= 0 for c in steady.seen)


def test_isolated_the_main_process_never_decodes_and_waits_for_a_worker(tmp_path):
    """The same plan as above, isolated (``--decoder process``): every image goes to a worker,
    so a decoder crash can cost one record only; same pixels, same order."""
    from emo.io.balance import Plan

    paths = _images(tmp_path, 24)
    steady = _Steady(Plan(workers=1, depth=2, helps=True, measured=True))
    with ProcessDecoder((CROP,), 0, workers=3, balancer=steady, isolate=True) as dec:
        handles = [dec.submit(p, (CROP,)) for p in paths]
        got = [h.result() for h in handles]
        assert dec.decoded_here == 0 and not dec._fallback
    for p, g in zip(paths, got):
        _same(g, _expected(p, (CROP,)))


def test_isolated_with_every_worker_gone_threads_finish_the_run(tmp_path):
    paths = _images(tmp_path, 6)
    with ProcessDecoder((CROP,), 0, workers=1, isolate=True) as dec:
        for pid in dec.pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        got = [dec.submit(p, (CROP,)).result() for p in paths]
    failed = [g for g in got if isinstance(g, InputError)]
    assert len(got) == 6 and len(failed) <= 1  # at most the image a worker held when it died
    for p, g in zip(paths, got):
        if not isinstance(g, InputError):
            _same(g, _expected(p, (CROP,)))


def test_a_bigger_plan_spreads_the_tasks(tmp_path):
    from emo.io.balance import Plan

    paths = _images(tmp_path, 9)
    steady = _Steady(Plan(workers=3))
    with ProcessDecoder((CROP,), 0, workers=3, balancer=steady) as dec:
        handles = [dec.submit(p, (CROP,)) for p in paths]
        assert [len(q) for q in dec._queue] == [3, 3, 3] and not dec._backlog
        steady.plan = Plan(workers=1)  # shrunk: new tasks go to the first worker only
        handles += [dec.submit(p, (CROP,)) for p in paths[:2]]
        assert [len(q) for q in dec._queue] == [5, 3, 3]  # notices are read only when results are taken
        got = [h.result() for h in handles]
    for p, g in zip(paths + paths[:2], got):
        _same(g, _expected(p, (CROP,)))
