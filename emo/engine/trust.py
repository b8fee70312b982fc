"""Which cached engines emo may load: the rule ssh applies to ``~/.ssh``.

A compiled engine is native code (an AOTInductor package is a shared library), so loading one
runs it. An engine file, its sidecar and their folder are trusted only when they belong to this
user, to root, or to a user named in ``EMO_TRUSTED_USERS`` (a shared cache's service user), and
when neither group nor others may write them. Anything else is refused with one line, never
loaded, rebuilt or deleted (it is not ours to remove).
"""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

from emo.config import ENV_TRUSTED_USERS
from emo.errors import ConfigError, ModelError


def trusted_uids() -> set[int]:
    """This user, root, and the users ``EMO_TRUSTED_USERS`` names (comma-separated names or uids)."""
    uids = {os.geteuid(), 0}
    for name in os.environ.get(ENV_TRUSTED_USERS, "").split(","):
        name = name.strip()
        if not name:
            continue
        if name.isascii() and name.isdigit():  # "²" is a digit to str.isdigit, not to int()
            uid = int(name)
            if uid > MAX_UID:  # no account has it: a typo, which would otherwise trust nobody unsaid
                raise ConfigError(f"{ENV_TRUSTED_USERS}: {name[:40]} is not a uid (0 to {MAX_UID})")
            uids.add(uid)
            continue
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except (KeyError, ValueError, UnicodeError):  # no such user, or a name no account can have
            raise ConfigError(f"{ENV_TRUSTED_USERS}: no user named {name[:80]!r}") from None
    return uids


# The largest uid: uid_t is 32 bits and (uid_t)-1 means "no change" to chown, never an owner.
MAX_UID = 2**32 - 2


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def untrusted_reason(path: Path, uids: set[int] | None = None) -> str | None:
    """Why ``path`` may not be trusted to hold code, or None when it may (or does not exist)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot be checked ({e.strerror or e})"
    uids = trusted_uids() if uids is None else uids
    if st.st_uid not in uids:
        return f"is owned by {_owner_name(st.st_uid)}, not by you (set {ENV_TRUSTED_USERS} to trust that user)"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "others" if st.st_mode & stat.S_IWOTH else "its group"
        return f"can be written by {who} (mode {stat.S_IMODE(st.st_mode):04o}; chmod go-w it)"
    return None


def check_trusted(*paths: Path, what: str = "engine") -> None:
    """Raise :class:`ModelError` (one line) unless every existing path in ``paths`` is trusted."""
    uids = trusted_uids()
    for p in paths:
        reason = untrusted_reason(p, uids)
        if reason is not None:
            raise ModelError(f"refusing to load the cached {what}: {p} {reason}; "
                             "a compiled engine runs as code")
