"""How many processes decode, and whether the main process decodes too, from what a run measures.

The core count alone cannot say it: a 400-pixel JPEG decodes in about 1 ms and a 12-megapixel
photo in about 30 ms (at a reduced DCT scale), and an engine on a GPU needs almost no CPU while
one on the CPU wants every core. So the decoder reports, per window of images the main process
takes, three figures, and :class:`Balancer` turns them into a :class:`Plan`:

- ``b``: the main process's wall time per image outside decoding (the engine, writing records);
- ``m``: its CPU time per image (the engine's threads included, its own decoding excluded);
- ``c``: the CPU time one image's decode took, in whichever process decoded it.

The run can go no faster than the engine (``1 / b``) nor than the cores can do both jobs
(``cores / (c + m)``); keeping up with that rate takes ``rate * c`` cores of decoding. The main
process decodes too when it spent part of the window waiting for pixels and the workers alone
fall short. Before the first valid window (the first batch loads torch and the engine, which may
take seconds) the plan is a fixed one, and so is every plan on a single core.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

# More decode processes than this never paid off; each holds a few MB and two pipes.
MAX_WORKERS = 64
# Decode faster than the engine consumes: its rate wobbles batch to batch, and a worker with no
# room in the ring idles at no cost, while one too few leaves the engine waiting.
HEADROOM = 1.3
WAIT_SHARE = 0.05  # the main process waited this share of a window for pixels: decoding is behind
STALL_SECONDS = 2.0  # a gap this long between two images (a compile, a paused input) spoils a window
UNLIMITED = 1 << 30


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, so a container's or taskset's limit counts)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, n)


@dataclass(frozen=True)
class Plan:
    """What the decoder does now: ``workers`` processes get tasks, each at most ``depth`` ahead,
    and the main process decodes queued images itself while it waits (``helps``)."""

    workers: int
    depth: int = UNLIMITED
    helps: bool = False
    measured: bool = False


class Balancer:
    """Turns timings of taken images into a :class:`Plan`.

    ``cores``: cores the run may use; ``batch_size``: images per engine call (sets how far each
    worker must be fed ahead); ``warmup``: images taken before measuring starts (the first batch
    carries start-up); ``window``: images per measurement.
    """

    def __init__(self, cores: int, batch_size: int = 32, warmup: int = 0, window: int = 0) -> None:
        self.cores = max(1, cores)
        self.cap = min(MAX_WORKERS, self.cores)  # processes forked: one per core, idle ones cost no CPU
        self.batch_size = max(1, batch_size)
        self.warmup = warmup or 8 + self.batch_size  # the pipeline's short first batch, then a full one
        self.window = window or max(32, 2 * self.batch_size)
        # One core: a worker beside the main process is all there is, nothing to measure.
        self.fixed = self.cores < 2
        # The first images are decoded while torch and the engine load: every core may decode them.
        self.plan = Plan(self.cap)
        # Without a measurement: the engine keeps a core, the rest decode.
        self.fallback = Plan(max(1, self.cores - 1))
        self.history: list[Plan] = []
        self._taken = 0
        self._reset(0.0, 0.0)

    def _reset(self, now: float, cpu: float) -> None:
        self._t0, self._cpu0, self._last = now, cpu, now
        self._n = self._known = 0
        self._wait = self._inline = self._inline_cpu = self._dec_cpu = self._gap = 0.0

    def taken(self, now: float, cpu: float, waited: float, inline: float = 0.0, inline_cpu: float = 0.0,
              decode_cpu: float | None = None) -> Plan:
        """Record one image taken by the main process; returns the plan to follow from now on.

        ``now``: a monotonic clock (s); ``cpu``: the main process's CPU clock (s); ``waited``: how
        long the main process blocked for this image; ``inline`` / ``inline_cpu``: wall and CPU
        time it spent decoding images itself since the last call; ``decode_cpu``: the CPU time
        this image's decode took (None when unknown).
        """
        self._taken += 1
        if self.fixed:
            return self.plan
        if self._taken <= self.warmup:
            if self._taken == self.warmup:
                self.plan = self.fallback
                self._reset(now, cpu)
            return self.plan
        self._n += 1
        self._gap = max(self._gap, now - self._last)
        self._last = now
        self._wait += waited
        self._inline += inline
        self._inline_cpu += inline_cpu
        if decode_cpu is not None:
            self._known += 1
            self._dec_cpu += decode_cpu
        if self._n >= self.window:
            plan = self._decide(now, cpu) if self._gap < STALL_SECONDS else None
            if plan is not None:
                self.plan = plan
                self.history.append(plan)
            self._reset(now, cpu)
        return self.plan

    def _decide(self, now: float, cpu: float) -> Plan | None:
        """The plan for the window just measured, or None when it cannot say (no decode timings)."""
        if not self._known or self._dec_cpu <= 0:
            return None
        n = self._n
        wall = max(now - self._t0, 1e-9)
        b = max(wall - self._wait - self._inline, 1e-6) / n
        m = max(cpu - self._cpu0 - self._inline_cpu, 0.0) / n
        c = self._dec_cpu / self._known
        rate = min(1.0 / b, self.cores / (c + m))
        need = rate * c * HEADROOM
        workers = min(self.cap, max(1, math.ceil(need)))
        behind = (self._wait + self._inline) / wall > WAIT_SHARE
        helps = behind and need > workers
        # Fed one engine call ahead (twice over), a worker never runs dry while the engine works.
        depth = max(2, math.ceil(2 * self.batch_size * b / c) + 2) if helps else UNLIMITED
        return Plan(workers, depth, helps, measured=True)

    def describe(self) -> str:
        """The plan in words, for ``-v``."""
        p = self.plan
        if p.measured:
            how = "measured"
        elif self.fixed:
            how = "one core"
        elif self._taken < self.warmup + self.window:
            # A short run ends before its first measurement: say so, and what a measurement takes.
            how = f"not measured: it takes {self.warmup + self.window} images, the start-up plan ran"
        else:
            how = "not measured: every window had a stall, the start-up plan ran"
        extra = ", the main process decoding while it waits" if p.helps else ""
        return f"{p.workers} of {self.cap} busy ({how}{extra})"
