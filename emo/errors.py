"""Errors the library raises and the exit codes the command line maps them to.

The library never calls ``sys.exit``; :mod:`emo.cli` turns these into messages on stderr and
the exit codes below (ripgrep's convention: each code means one thing).
"""

from __future__ import annotations

import errno

EXIT_OK = 0  # every input done
EXIT_SOME_FAILED = 1  # some inputs became error records
EXIT_USAGE = 2  # usage, model or configuration error: nothing useful can run
EXIT_BROKEN_PIPE = 141  # downstream closed (``emo ... | head``): 128 + SIGPIPE
EXIT_SIGINT = 130  # 128 + SIGINT
EXIT_SIGTERM = 143  # 128 + SIGTERM
EXIT_SIGHUP = 129  # 128 + SIGHUP: the terminal went away


class EmoError(Exception):
    """Base of every error emo raises on purpose; ``exit_code`` is what the CLI returns."""

    exit_code = EXIT_USAGE


class UsageError(EmoError):
    """Options or arguments that cannot work together."""


class ConfigError(EmoError):
    """A bad configuration value (environment variable, option)."""


class ModelError(EmoError):
    """A network, head or engine that cannot be built, loaded or trusted."""


class WeightsNotFound(ModelError):
    """Weights that are not present here and cannot be fetched."""


class HashMismatch(ModelError):
    """A weights file whose sha256 differs from the registry's."""


class OutputError(EmoError):
    """The output cannot be written (disk full, read-only folder, a resume file emo cannot read)."""


class UnknownNetwork(ModelError, KeyError):
    """A network name the registry does not know; a KeyError too, for dict-like callers."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PipeClosed(Exception):
    """The reader of stdout went away (``emo ... | head``): exit 141 quietly."""


class InputError(Exception):
    """One bad input: becomes that record's ``error`` field, never stops the run.

    ``kind`` is one of :data:`ERROR_KINDS`.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


# The ``error.kind`` values a record can carry, defined once.
ERROR_KINDS = (
    "bad_line",  # stdin line that is not valid UTF-8 or not valid JSON
    "bad_record",  # JSON not an object, no string "path", a key repeated, nested too deep, a bad "path_bytes"
    "bad_path",  # a path the system refuses to look up: too long, a NUL byte, a symlink loop
    "not_found",  # no such file
    "is_directory",  # a directory given without -r
    "no_images",  # a folder given with -r that holds no image file
    "not_a_file",  # FIFO, socket, device
    "permission_denied",
    "empty_file",  # zero bytes
    "not_an_image",  # bytes Pillow does not recognise as an image
    "truncated",  # image data ends early or is corrupt
    "too_large",  # more pixels than --max-pixels (decompression bomb), or more bytes than --max-bytes
    "bad_features",  # precomputed features of the wrong shape or type
    "read_error",  # any other OS error reading the file
    "model_error",  # the network failed on this input
    "sidecar_error",  # the picture's XMP sidecar could not be merged (corrupt, a link) or written
)


def os_error_kind(e: OSError | ValueError) -> str:
    """The :data:`ERROR_KINDS` value for an error from a path operation (stat, open, listdir...).

    ``ValueError`` is what Python raises for a path with a NUL byte in it.
    """
    if isinstance(e, ValueError):
        return "bad_path"
    if isinstance(e, FileNotFoundError) or e.errno in (errno.ENOENT, errno.ENOTDIR):
        return "not_found"
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM):
        return "permission_denied"
    if e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
        return "bad_path"
    if isinstance(e, IsADirectoryError):
        return "is_directory"
    return "read_error"


def os_error_message(e: OSError | ValueError) -> str:
    """One line for an error from a path operation, without the (possibly huge) path itself."""
    if isinstance(e, ValueError):
        return "path contains a NUL byte"
    return (e.strerror or type(e).__name__).lower() if e.strerror else str(e)[:200]
