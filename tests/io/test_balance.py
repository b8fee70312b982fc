"""The balancer: plans from measured timings, and a fixed plan where nothing can be measured."""

from __future__ import annotations

import os

import pytest

from emo.io import balance
from emo.io.balance import UNLIMITED, Balancer, Plan, usable_cores


def _feed(bal: Balancer, n: int, per_image: float, wait: float, main_cpu: float, decode_cpu: float,
          start: tuple[float, float] = (0.0, 0.0), first_gap: float = 0.0) -> tuple[float, float]:
    """Take ``n`` images: each costs ``per_image`` s of main wall time plus ``wait`` s blocked on
    decoding, ``main_cpu`` s of the main process's CPU, and ``decode_cpu`` s of a worker's CPU."""
    now, cpu = start
    for i in range(n):
        now += per_image + wait + (first_gap if i == 0 else 0.0)
        cpu += main_cpu
        bal.taken(now, cpu, wait, decode_cpu=decode_cpu)
    return now, cpu


def test_usable_cores_follow_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3, 5})
    assert usable_cores() == 2
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert usable_cores() == 1


def test_a_single_core_keeps_one_fixed_worker(monkeypatch):
    """Nothing to balance: one worker however the run goes, never the main process decoding."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    bal = Balancer(usable_cores(), batch_size=8)
    assert bal.fixed and bal.cap == 1
    _feed(bal, 500, per_image=0.001, wait=0.05, main_cpu=0.001, decode_cpu=0.05)  # decoding far behind
    assert bal.plan == Plan(1) and not bal.history


def test_a_slow_first_batch_leaves_the_fixed_plan():
    """The first batch loads torch and compiles the engine: it is never measured. A window with
    a stall in it is thrown away too, and the plan stays the fixed one: all cores but one."""
    bal = Balancer(8, batch_size=8, window=32)
    assert bal.plan.workers == 8  # the first fill: every core decodes while the engine loads
    t = _feed(bal, bal.warmup, per_image=0.001, wait=0.0, main_cpu=0.001, decode_cpu=0.03, first_gap=30.0)
    assert bal.plan == Plan(7, UNLIMITED, False, measured=False)
    _feed(bal, 32, per_image=0.001, wait=0.0, main_cpu=0.001, decode_cpu=0.03, start=t, first_gap=5.0)
    assert bal.plan == Plan(7) and not bal.history
    assert "not measured: every window had a stall" in bal.describe()


def test_a_run_too_short_to_measure_says_how_many_images_it_takes():
    """-v's last line on a five-picture run said "not measured yet", as if more were coming."""
    bal = Balancer(4, batch_size=32)
    _feed(bal, 5, per_image=0.001, wait=0.0, main_cpu=0.001, decode_cpu=0.03)
    assert bal.describe() == "4 of 4 busy (not measured: it takes 104 images, the start-up plan ran)"


def test_decode_bound_on_a_gpu_feeds_every_core_and_the_main_process_helps():
    """12 MP photos (30 ms of decode each), an engine that needs 1 ms of the main process per
    image: decoding is the limit, so every core decodes and the main process joins in."""
    bal = Balancer(16, batch_size=32, window=64)
    t = _feed(bal, bal.warmup, 0.001, 0.0, 0.001, 0.03)
    _feed(bal, 64, per_image=0.001, wait=0.01, main_cpu=0.001, decode_cpu=0.03, start=t)
    plan = bal.plan
    # rate = min(1 / 1 ms, 16 / 31 ms) = 516 img/s; 516 * 30 ms * 1.3 = 20 cores of decoding
    assert plan.measured and plan.workers == 16 and plan.helps
    assert plan.depth == 2 + 3  # ceil(2 * 32 * 1 ms / 30 ms) + 2: one engine call ahead, twice over


def test_engine_bound_feeds_only_the_workers_it_needs():
    """400 px images (1.2 ms each) and a CPU engine at 10 ms per image on 2 cores: one worker
    keeps up, and with nobody waiting the main process does not decode."""
    bal = Balancer(2, batch_size=32, window=64)
    t = _feed(bal, bal.warmup, 0.01, 0.0, 0.02, 0.0012)
    _feed(bal, 64, per_image=0.01, wait=0.0, main_cpu=0.02, decode_cpu=0.0012, start=t)
    assert bal.plan == Plan(1, UNLIMITED, False, measured=True)


def test_photos_on_two_cores_with_a_cpu_engine_take_both_workers():
    """12 MP photos on 2 cores with a CPU engine (20 ms CPU per image): the cores allow 2 / 50 ms
    = 40 img/s, which takes 1.2 cores of decoding (1.6 with headroom): two workers; the engine's
    own CPU leaves no core for the main process to decode on."""
    bal = Balancer(2, batch_size=32, window=64)
    t = _feed(bal, bal.warmup, 0.01, 0.0, 0.02, 0.03)
    _feed(bal, 64, per_image=0.01, wait=0.015, main_cpu=0.02, decode_cpu=0.03, start=t)
    assert bal.plan == Plan(2, UNLIMITED, False, measured=True)


def test_photos_on_two_cores_with_a_gpu_engine_let_the_main_process_decode_while_it_waits():
    """A GPU engine needs 1 ms of the main process per image: 2 / 31 ms = 65 img/s would take 2.5
    cores of decoding. Both workers, and the main process decodes queued images while it waits,
    fed five tasks deep (ceil(2 * 32 * 1 ms / 30 ms) + 2)."""
    bal = Balancer(2, batch_size=32, window=64)
    t = _feed(bal, bal.warmup, 0.001, 0.0, 0.001, 0.03)
    t = _feed(bal, 64, per_image=0.001, wait=0.015, main_cpu=0.001, decode_cpu=0.03, start=t)
    assert bal.plan == Plan(2, 5, True, measured=True)
    # The next window: decoding caught up (nobody waits), so the main process stops decoding.
    _feed(bal, 64, per_image=0.02, wait=0.0, main_cpu=0.001, decode_cpu=0.03, start=t)
    assert bal.plan == Plan(2, UNLIMITED, False, measured=True) and len(bal.history) == 2


def test_a_window_without_decode_timings_changes_nothing():
    bal = Balancer(4, batch_size=8, window=16)
    t = _feed(bal, bal.warmup, 0.001, 0.0, 0.001, 0.03)
    now, cpu = t
    for _ in range(16):  # images decoded on fallback threads: no timing to go by
        now += 0.01
        bal.taken(now, cpu, 0.01, decode_cpu=None)
    assert bal.plan == Plan(3) and not bal.history


@pytest.mark.parametrize("cores", [2, 16])
def test_a_plan_never_exceeds_the_forked_workers(cores, monkeypatch):
    monkeypatch.setattr(balance, "MAX_WORKERS", cores)
    bal = Balancer(cores * 4, batch_size=8, window=16)
    t = _feed(bal, bal.warmup, 0.0001, 0.0, 0.0001, 0.5)
    _feed(bal, 16, per_image=0.0001, wait=0.1, main_cpu=0.0001, decode_cpu=0.5, start=t)
    assert bal.cap == cores and bal.plan.workers == cores
