"""The command line's edge: exceptions become messages and exit codes, signals end runs cleanly."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

import click

from emo.errors import (EXIT_BROKEN_PIPE, EXIT_SIGHUP, EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, EmoError,
                        PipeClosed)


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP, so the run unwinds like on Ctrl-C (the
    temporary file of ``-o`` removed, decode workers reaped) instead of dying where it stands."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame) -> None:
    raise Terminated(signum)


def _catch_ending_signals() -> None:
    """SIGTERM, and SIGHUP (the terminal closed) unless it is ignored (nohup), end the run cleanly."""
    signal.signal(signal.SIGTERM, _on_signal)
    hup = getattr(signal, "SIGHUP", None)
    if hup is not None and signal.getsignal(hup) is signal.SIG_DFL:
        signal.signal(hup, _on_signal)


class _PeopleStream:
    """stderr for people: when writing to it fails (closed, a reader that quit, a full disk), emo
    stops writing to it and goes on with its data on stdout."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self._dead = False

    def write(self, text: str) -> int:
        if not self._dead:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._dead = True
        return len(text)

    def flush(self) -> None:
        if not self._dead:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._dead = True

    def isatty(self) -> bool:
        try:
            return not self._dead and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class ClosedStdout:
    """Stands for a stdout emo was started without: writing data to it is an error (exit 2), not
    output silently lost; commands that write to ``-o FILE`` never touch it."""

    emo_closed = True
    encoding, errors = "utf-8", "strict"

    def write(self, text: str) -> int:
        raise OSError(9, "stdout is closed")

    def fileno(self) -> int:
        raise OSError(9, "stdout is closed")

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


def guard_stdout() -> None:
    """Give a closed stdout a stand-in that fails loudly when data is written to it."""
    if sys.stdout is None or _fd_closed(1):
        sys.stdout = ClosedStdout()  # type: ignore[assignment]


def guard_stderr() -> None:
    """Make every later write to stderr safe: a closed stderr swallows lines, a failing one too."""
    if sys.stderr is None or _fd_closed(2):
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    elif not isinstance(sys.stderr, _PeopleStream):
        sys.stderr = _PeopleStream(sys.stderr)


def _fd_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
        return False
    except OSError:
        return True


def _silence_stdout() -> None:
    # Further writes (interpreter shutdown flushes) must not raise again on the closed pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


def exit_now(code: int) -> None:
    """Flush stdout and stderr, clean up, then end the process with ``code`` at once.

    By then every record is written, ``-o`` files are committed, decode workers are reaped and
    threads are joined. What is skipped is the interpreter's teardown, which with torch loaded
    took 0.4 s after the last line (of a 10 s run), for nothing a user can see. The cleanups it
    would have done that leave traces are done here: atexit handlers (which remove the folders
    engines were unpacked into, see emo.engine.inductor).
    """
    try:
        if sys.stdout is not None:  # None when emo was started with stdout closed
            sys.stdout.flush()
    except BrokenPipeError:  # the reader left before the last bytes: as emo ... | head
        code = code if code in (EXIT_SIGINT, EXIT_SIGTERM, EXIT_SIGHUP) else EXIT_BROKEN_PIPE
    except (OSError, ValueError) as e:  # a full disk on the last flush: those records are lost
        code = max(code, EXIT_USAGE)
        _say(error_line(f"cannot write stdout: {getattr(e, 'strerror', None) or e}"))
    with contextlib.suppress(Exception):  # among them, removing the folders engines were unpacked into
        atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


def _say(line: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(line + "\n")


def error_line(message: object) -> str:
    """``emo: error: MESSAGE`` as one line a terminal shows as it is: a message may quote a file
    name or other user text holding a newline (which would forge a line of emo's own), a
    terminal's escapes, or bytes that are not UTF-8; all are written escaped."""
    from emo.io.records import one_line, shown

    return f"emo: error: {one_line(shown(str(message)))}"


def usage_line(e: click.ClickException) -> str:
    """A usage error as one line, as every other error of the run (click's own takes four)."""
    from emo.io.records import one_line, shown

    line = f"emo: error: {one_line(shown(' '.join(e.format_message().split())))}"
    ctx = getattr(e, "ctx", None)
    return f"{line} (see '{ctx.command_path} --help')" if ctx is not None else line


def no_command(ctx: click.Context | None) -> str:
    """What a group run without a command says on stderr: its usage, the commands, where the help is."""
    if ctx is None or not isinstance(ctx.command, click.Group):
        return "emo: error: no command given (see 'emo --help')"
    names = ", ".join(ctx.command.list_commands(ctx))
    return (f"{ctx.get_usage()}\nemo: error: no command given; one of {names} "
            f"(see '{ctx.command_path} --help' for what each does)")


def _click_saw_broken_pipe() -> bool:
    # click answers EPIPE from a command's own echo with sys.exit(1), after wrapping stdout in
    # its flush-pacifying wrapper: that wrapper is the only sign the exit was a closed pipe.
    return type(sys.stdout).__name__.lstrip("_") == "PacifyFlushWrapper"


def guarded(command: click.Command, args: Sequence[str] | None = None) -> int:
    """Run a click command in standalone-off mode and return the process exit code.

    ``args`` defaults to ``sys.argv[1:]``; tests pass their own to run in-process.
    """
    _catch_ending_signals()
    try:
        try:
            rv = command.main(args=args, prog_name="emo", standalone_mode=False)
        except SystemExit as e:
            if _click_saw_broken_pipe():
                raise PipeClosed() from None
            raise
        return rv if isinstance(rv, int) else 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.NoArgsIsHelpError as e:  # a bare `emo`: a usage error, said short, as rg does
        _say(no_command(e.ctx))
        return EXIT_USAGE
    except click.ClickException as e:
        _say(usage_line(e))
        return EXIT_USAGE
    except click.exceptions.Abort:  # click's own wrapping of KeyboardInterrupt
        click.echo("emo: interrupted", err=True)
        return EXIT_SIGINT
    except EmoError as e:
        _say(error_line(e))
        return e.exit_code
    except (BrokenPipeError, PipeClosed):
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as e:  # a full disk or a closed stream under stdout: the output is not whole
        _say(error_line(f"cannot write: {e.strerror or e}"))
        return EXIT_USAGE
    except KeyboardInterrupt:
        click.echo("emo: interrupted", err=True)
        return EXIT_SIGINT
    except Terminated as e:
        hup = e.signum == getattr(signal, "SIGHUP", None)
        _say("emo: hung up" if hup else "emo: terminated")
        return EXIT_SIGHUP if hup else EXIT_SIGTERM
    except Exception as e:  # noqa: BLE001 - the last guard: a user never sees a traceback
        if os.environ.get("EMO_DEBUG"):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        _say(error_line(f"{type(e).__name__}: {first} (this is emo's fault or its environment's; "
                        "EMO_DEBUG=1 shows where)"))
        return EXIT_USAGE
