"""One progress display for every command: a live line on stderr, only on a terminal.

It shows a phase ("compiling the engine for mobilenet_v2", "features", "fold 2/5"), the count
done out of the total when the total is known, the rate since the first unit finished (so start-up
and compiling do not drag it down), and the time left. It never goes backwards: a new phase with its
own count starts a new line of work rather than rewinding the old one.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal; False for a pipe, a file, or a stream that is closed or gone."""
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def stdout_is_terminal() -> bool:
    """Whether a person reads stdout (tables are then cut to the screen), False when it is closed."""
    return is_terminal(sys.stdout)


def stderr_is_terminal() -> bool:
    """Whether a person watches stderr (progress is for people, never for pipes or files)."""
    return is_terminal(sys.stderr)


class Progress:
    """A live progress line; every method is a no-op when ``enabled`` is false."""

    def __init__(self, enabled: bool, unit: str = "img") -> None:
        self.enabled = enabled
        self.unit = unit
        self._bar: Any = None
        self._task: Any = None
        self._first: tuple[float, int] | None = None  # (time, count) when the first unit finished
        self._phase_start = time.perf_counter()
        self.done = 0
        self.total: int | None = None
        self.description = "emo"

    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if not self.enabled or self._bar is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, SpinnerColumn, TextColumn
        from rich.progress import TimeElapsedColumn

        self._bar = Bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True,
                        console=Console(stderr=True))
        # A phase set before the bar started (the run's total, counted first) shows from the start.
        self._task = self._bar.add_task(self.description, total=self.total, completed=self.done, info="")
        self._bar.start()

    def stop(self) -> None:
        if self._bar is not None:
            try:
                self._bar.stop()
            except Exception:  # noqa: BLE001 - a closed terminal must not turn a finished run into an error
                pass
            self._bar = None

    def phase(self, description: str, total: int | None = None, done: int = 0) -> None:
        """Start a phase: its name, and its own count of ``total`` units (None: unknown)."""
        self.total, self.done, self._first, self.description = total, done, None, description
        self._phase_start = time.perf_counter()
        if self._bar is not None:
            self._bar.update(self._task, description=description, total=total, completed=done, info="")

    def note(self, description: str) -> None:
        """Change the phase's name alone (a pause inside it, such as compiling an engine)."""
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def advance(self, n: int = 1, info: str = "") -> None:
        """``n`` more units done; ``info`` replaces the rate (training metrics, say)."""
        self.done += n
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, self.done)
        if self._bar is None:
            return
        self._bar.update(self._task, completed=self.done, info=info or self._rate(now))

    def _rate(self, now: float) -> str:
        t0, n0 = self._first or (now, self.done)
        if now - t0 < 1e-3 or self.done <= n0:
            return ""
        rate = (self.done - n0) / (now - t0)
        text = f"{rate:.1f} {self.unit}/s"
        if self.total is not None and rate > 0 and self.total > self.done:
            left = (self.total - self.done) / rate
            text += f", {_clock(left)} left"
        return text

    def print(self, line: str) -> None:
        """A line on stderr above the live bar (or plainly, when there is none)."""
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            say(line)


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def say(line: str) -> None:
    """One line for people on stderr; a stderr that is closed or gone swallows it."""
    try:
        if sys.stderr is not None:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
    except (OSError, ValueError):
        pass
