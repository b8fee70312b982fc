"""Loading model files emo did not make without running code from them.

``torch.load`` runs pickles, and pickles run code. emo asks for ``weights_only=True`` itself,
but some torch loaders ask for ``weights_only=False`` inside (``torch.export.load`` falls back to
it for an archive it cannot read otherwise). :func:`no_pickled_code` makes every ``torch.load``
in the block weights-only, whatever its caller asked, through torch's own switch, so a file
with code in it fails to load instead of running.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

_FORCE = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
_UNFORCE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextlib.contextmanager
def no_pickled_code() -> Iterator[None]:
    """Within the block, ``torch.load`` only ever unpickles tensors and plain containers."""
    saved = {k: os.environ.get(k) for k in (_FORCE, _UNFORCE)}
    os.environ[_FORCE] = "1"
    os.environ.pop(_UNFORCE, None)  # it could otherwise turn the default back to full pickles
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def is_file(path: str | Path) -> bool:
    """``Path.is_file()`` that answers False where the system refuses the lookup (name too long,
    a NUL byte, a loop) instead of raising."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False
