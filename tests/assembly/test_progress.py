"""emo.assembly.progress: the rate counts from the first finished unit, the time left from the total."""

from __future__ import annotations

import io

import emo.assembly.progress as P


def test_rate_starts_at_the_first_batch_and_eta_needs_a_total(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(P.time, "perf_counter", lambda: now[0])
    p = P.Progress(False)
    p.phase("emo classify", total=100)
    now[0] = 133.0  # 33 s of start-up and compiling: not part of the rate
    p.advance(8)
    assert p._rate(now[0]) == ""
    now[0] = 134.0
    p.advance(32)
    assert p._rate(now[0]) == "32.0 img/s, 0:02 left"  # 60 left at 32/s
    p.phase("next", total=None)
    now[0] = 135.0
    p.advance(10)
    now[0] = 137.0
    p.advance(10)
    assert p._rate(now[0]) == "5.0 img/s"  # no total, no time left


def test_a_disabled_progress_prints_plain_lines_and_survives_a_dead_stderr(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(P.sys, "stderr", buf)
    p = P.Progress(False)
    with p:
        p.print("emo: a.jpg: not_found: no such file")
    assert buf.getvalue() == "emo: a.jpg: not_found: no such file\n"

    class Dead:
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

        flush = write

    monkeypatch.setattr(P.sys, "stderr", Dead())
    P.say("nobody reads this")  # no exception
    monkeypatch.setattr(P.sys, "stderr", None)
    P.say("nor this")
    assert not P.stderr_is_terminal()


def test_a_phase_set_before_the_bar_starts_shows_its_total(monkeypatch):
    p = P.Progress(True)
    p.phase("emo classify", total=1568)
    with p:
        task = p._bar.tasks[0]
        assert task.total == 1568 and task.description == "emo classify"


def test_stdout_is_a_terminal_only_when_it_says_so(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(P.sys, "stdout", Tty())
    assert P.stdout_is_terminal()
    monkeypatch.setattr(P.sys, "stdout", io.StringIO())  # a pipe or a file
    assert not P.stdout_is_terminal()
    closed = io.StringIO()
    closed.close()  # isatty() on a closed stream raises ValueError
    monkeypatch.setattr(P.sys, "stdout", closed)
    assert not P.stdout_is_terminal()
    monkeypatch.setattr(P.sys, "stdout", None)  # emo started with stdout closed
    assert not P.stdout_is_terminal()
