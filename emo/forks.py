"""What a process forked from one that ran emo must make afresh, so that no call there waits forever.

``os.fork`` (and multiprocessing's "fork" start method, Linux's default) copies a process's
memory but only the thread that called it. In the child every other thread is gone:

* a thread pool still counts its old workers, so a task given to it is never taken;
* a lock another thread held at the fork stays held;
* torch's intra-op threads (GNU OpenMP) are gone, but the forking thread's OpenMP runtime still
  counts on them: its next parallel region on more than one thread waits for them forever.
  Threads made in the child start an OpenMP team of their own and are not affected.

Owners of pools and locks register them with :func:`renew_in_child` (weakly: the owner can still
be collected) and they are made afresh in the child right after the fork; :func:`on_own_thread`
moves torch work off the forking thread onto a thread the child made.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# key -> (the owner, weakly; what makes its state afresh in a child)
_renewals: dict[int, tuple[weakref.ref[Any], Callable[[Any], None]]] = {}
_keys = itertools.count()

_forked_thread: int | None = None  # the thread that forked this process after torch loaded
_helper: ThreadPoolExecutor | None = None  # made in this process, for that thread's torch work


def renew_in_child(owner: T, renew: Callable[[T], None]) -> T:
    """Call ``renew(owner)`` in the child of every later fork, for as long as ``owner`` lives;
    returns ``owner``. ``renew`` must not refer to ``owner`` itself (it would never be collected)."""
    key = next(_keys)
    # the dict is bound as a default: the callback may run while the interpreter shuts down
    _renewals[key] = (weakref.ref(owner, lambda _, k=key, d=_renewals: d.pop(k, None)), renew)
    return owner


def drop_pool(owner: Any) -> None:
    """A renewal: forget ``owner._pool``, whose threads the child lacks; the owner makes a new one
    on first use."""
    owner._pool = None


def on_own_thread(fn: Callable[[], R]) -> R:
    """``fn()``, on a thread this process made when the caller is the thread that forked it after
    torch loaded (torch's parallel operations would wait forever there); else on the caller's."""
    global _helper
    if _forked_thread is None or threading.get_ident() != _forked_thread:
        return fn()
    if _helper is None:  # only the forking thread gets here: no other thread makes one meanwhile
        threads = sys.modules["torch"].get_num_threads()
        _helper = ThreadPoolExecutor(1, "emo-forked", initializer=torch_threads, initargs=(threads,))
    return _helper.submit(fn).result()


def torch_threads(n: int) -> None:
    """torch runs this thread's operations on ``n`` threads, and threads started later take ``n``."""
    import torch

    # A new thread takes torch's last set count on its first operation: take it now, so that
    # the set below is the last word for this thread.
    torch.get_num_threads()
    torch.set_num_threads(n)


def _after_fork_in_child() -> None:
    global _forked_thread, _helper
    _helper = None  # the parent's: its thread is not here
    _forked_thread = threading.get_ident() if "torch" in sys.modules else None
    for ref, renew in list(_renewals.values()):
        owner = ref()
        if owner is not None:
            renew(owner)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
