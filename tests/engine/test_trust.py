"""emo.engine.trust: which cached engines may be loaded (owner and write bits, as ssh checks)."""

from __future__ import annotations

import os

import pytest

from emo.engine.trust import check_trusted, trusted_uids, untrusted_reason
from emo.errors import ConfigError, ModelError


def test_own_files_without_group_or_other_write_are_trusted(tmp_path):
    f = tmp_path / "e.pt2"
    f.write_bytes(b"x")
    for mode in (0o600, 0o644, 0o755, 0o700):
        f.chmod(mode)
        assert untrusted_reason(f) is None, oct(mode)
    assert untrusted_reason(tmp_path / "absent") is None  # nothing there: nothing loaded


@pytest.mark.parametrize("mode, who", [(0o664, "its group"), (0o666, "others"), (0o646, "others"), (0o1777, "others")])
def test_write_bits_for_others_are_refused(tmp_path, mode, who):
    f = tmp_path / "e.pt2"
    f.write_bytes(b"x")
    f.chmod(mode)
    reason = untrusted_reason(f)
    assert reason is not None and who in reason and f"{mode & 0o7777:04o}" in reason
    with pytest.raises(ModelError, match="a compiled engine runs as code"):
        check_trusted(f)


def test_another_owner_is_refused(tmp_path, monkeypatch):
    f = tmp_path / "e.pt2"
    f.write_bytes(b"x")
    f.chmod(0o644)
    owner = f.stat().st_uid
    assert untrusted_reason(f, {owner}) is None
    assert "not by you" in untrusted_reason(f, {owner + 12345})


def test_trusted_users_by_name_and_uid(monkeypatch):
    import pwd

    monkeypatch.setenv("EMO_TRUSTED_USERS", f" {pwd.getpwuid(0).pw_name} , 4242,")
    assert {os.geteuid(), 0, 4242} <= trusted_uids()
    monkeypatch.setenv("EMO_TRUSTED_USERS", "nobody-by-that-name")
    with pytest.raises(ConfigError):
        trusted_uids()


@pytest.mark.parametrize("value, says", [("99999999999999999999999", "is not a uid"), ("4294967295", "is not a uid"),
                                         ("\u00b2", "no user named"), ("\u0661\u0662", "no user named")])
def test_a_trusted_user_that_no_account_can_be_is_a_config_error(monkeypatch, value, says):
    # "²" passed str.isdigit() and then int() raised; a uid past 32 bits trusted nobody without a word.
    monkeypatch.setenv("EMO_TRUSTED_USERS", f"{value}")
    with pytest.raises(ConfigError, match=says):
        trusted_uids()
    monkeypatch.setenv("EMO_TRUSTED_USERS", "4294967294")
    assert 4294967294 in trusted_uids()
