"""emo.errors: the hierarchy, exit codes and error-record kinds, each defined once."""

from __future__ import annotations

import os

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


def test_os_errors_of_path_operations_map_to_kinds():
    import errno

    from emo.errors import os_error_kind, os_error_message

    cases = {errno.ENOENT: "not_found", errno.ENOTDIR: "not_found", errno.EACCES: "permission_denied",
             errno.EPERM: "permission_denied", errno.ENAMETOOLONG: "bad_path", errno.ELOOP: "bad_path",
             errno.EIO: "read_error", errno.EISDIR: "is_directory"}
    for code, kind in cases.items():
        e = OSError(code, os.strerror(code))
        if code == errno.EISDIR:
            e = IsADirectoryError(code, os.strerror(code))
        assert os_error_kind(e) == kind, code
        assert "\n" not in os_error_message(e) and os_error_message(e)
    assert os_error_kind(ValueError("embedded null byte")) == "bad_path"


def test_every_kind_is_documented_in_the_robustness_contract():
    from tests.conftest import REPO

    text = (REPO / "docs" / "robustness.md").read_text()
    assert all(f"`{k}`" in text for k in ERROR_KINDS), [k for k in ERROR_KINDS if f"`{k}`" not in text]
