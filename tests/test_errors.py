"""emo.errors: the hierarchy, exit codes and error-record kinds, each defined once."""

from __future__ import annotations

import pytest

from emo import errors
from emo.errors import (
    ERROR_KINDS,
    ConfigError,
    EmoError,
    HashMismatch,
    InputError,
    ModelError,
    UsageError,
    WeightsNotFound,
)


def test_exit_codes_mean_one_thing_each():
    codes = {
        errors.EXIT_OK: 0,
        errors.EXIT_SOME_FAILED: 1,
        errors.EXIT_USAGE: 2,
        errors.EXIT_SIGINT: 130,
        errors.EXIT_BROKEN_PIPE: 141,
        errors.EXIT_SIGTERM: 143,
    }
    assert all(k == v for k, v in codes.items())
    assert len(codes) == 6  # no two names share a code


@pytest.mark.parametrize("cls", [UsageError, ConfigError, ModelError, WeightsNotFound, HashMismatch])
def test_every_emo_error_exits_2(cls):
    e = cls("boom")
    assert isinstance(e, EmoError)
    assert e.exit_code == 2
    assert str(e) == "boom"


def test_weight_errors_are_model_errors():
    # The CLI and create() catch ModelError; a missing or altered file must be caught with it.
    assert issubclass(WeightsNotFound, ModelError)
    assert issubclass(HashMismatch, ModelError)


def test_input_error_is_not_an_emo_error():
    # A bad input becomes a record and never stops the run: it must not look like a fatal error.
    assert not issubclass(InputError, EmoError)


def test_input_error_record():
    e = InputError("truncated", "image data ends early")
    assert (e.kind, e.message, str(e)) == ("truncated", "image data ends early", "image data ends early")
    assert e.as_dict() == {"kind": "truncated", "message": "image data ends early"}


def test_error_kinds_are_unique_and_cover_the_design():
    assert len(ERROR_KINDS) == len(set(ERROR_KINDS))
    needed = {"not_found", "is_directory", "permission_denied", "empty_file", "not_an_image", "truncated",
              "too_large", "bad_line", "bad_record", "model_error"}
    assert needed <= set(ERROR_KINDS)


def test_every_kind_the_code_uses_is_declared():
    # A kind used in the source but missing from ERROR_KINDS would be undocumented output.
    import re
    from pathlib import Path

    root = Path(errors.__file__).parent
    used = set()
    for py in root.rglob("*.py"):
        used |= set(re.findall(r'(?:InputError|\.fail)\(\s*"([a-z_]+)"', py.read_text()))
    assert used, "the scan found no kinds at all"
    assert used <= set(ERROR_KINDS), used - set(ERROR_KINDS)
