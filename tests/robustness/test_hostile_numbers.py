"""Numbers that overflow and bytes that stall: precomputed features of 3e38 and non-finite values,
huge and sparse junk files, and output that must never hold NaN, null or a raw line break."""

from __future__ import annotations

import io
import random
import time

import numpy as np
import orjson
import pytest
from PIL import Image, ImageFile

import emo.io.decode as decode_mod
from emo.errors import InputError
from emo.io.decode import View, decode
from emo.io.writer import dumps
from tests.conftest import make_image
from tests.robustness.conftest import TINY, assert_clean, check_contract, emo

DIM = 1280  # the shipped heads take mobilenet_v2's deep features


def _feature_lines(*rows: list[float]) -> bytes:
    return b"".join(orjson.dumps({"id": i, "features": {"deep": r}}) + b"\n" for i, r in enumerate(rows))


def _good_row(seed: int = 0) -> list[float]:
    r = random.Random(seed)
    return [r.random() for _ in range(DIM)]


HOSTILE_ROWS = {
    "all_3e38": [3e38] * DIM,
    "one_3e38": [3e38] + _good_row()[1:],
    "minus_3e38": [-3e38] * DIM,
    "over_float32": [1e39] * DIM,
}


@pytest.mark.parametrize("sub", ["classify", "va"])
@pytest.mark.parametrize("attack", list(HOSTILE_ROWS))
def test_overflowing_features_are_bad_features_never_null(sub, attack):
    run = emo([sub], _feature_lines(_good_row(1), HOSTILE_ROWS[attack], _good_row(2)))
    assert_clean(run)
    recs = run.records
    assert [r["id"] for r in recs] == [0, 1, 2]
    assert [r.get("error", {}).get("kind") for r in recs] == [None, "bad_features", None], run.err
    assert run.code == 1
    assert b"null" not in run.out and b"NaN" not in run.out and b"Infinity" not in run.out
    key = "emotion" if sub == "classify" else "va"
    assert key not in recs[1] and key in recs[0] and key in recs[2]


def test_huge_integers_in_features_never_give_null():
    line = b'{"id": 1, "features": {"deep": [' + b",".join([b"1" + b"0" * 30] * DIM) + b"]}}\n"
    run = emo(["classify"], _feature_lines(_good_row(1)) + line)
    assert_clean(run)
    assert len(run.records) == 2 and b"null" not in run.out and b"NaN" not in run.out
    assert all("emotion" in r or r["error"]["kind"] == "bad_features" for r in run.records)


@pytest.mark.parametrize("value", [[1.0] * 5, ["x"] * DIM, [[1.0, 2.0], [1.0]] * (DIM // 2), [None] * DIM,
                                   [True] * DIM, [], [{"a": 1}] * DIM],
                         ids=["short", "strings", "ragged", "nulls", "bools", "empty", "objects"])
def test_features_of_the_wrong_type_are_bad_features(value):
    run = emo(["classify"], _feature_lines(_good_row(1), value, _good_row(2)))
    assert_clean(run)
    assert [r.get("error", {}).get("kind") for r in run.records] == [None, "bad_features", None], run.err


def test_the_writer_never_writes_nan_null_or_a_raw_separator():
    nan = dumps({"path": "a", "emotion": {"label": "joy", "probs": {"joy": float("nan")}}})
    inf = dumps({"path": "a", "features": {"deep": np.array([1.0, np.inf], np.float32)}})
    for line in (nan, inf):
        rec = orjson.loads(line)
        assert rec["error"]["kind"] == "bad_features" and "emotion" not in rec and "features" not in rec
    odd = dumps({"path": "x\u2028y\u2029z\x85", "note": "\u2028"})
    assert odd.decode().count("\n") == 1 and len(odd.decode().splitlines()) == 1
    assert orjson.loads(odd)["path"] == "x\u2028y\u2029z\x85"


def test_a_record_too_deep_to_write_becomes_an_error_record():
    deep: dict = {}
    for _ in range(300):
        deep = {"x": deep}
    rec = orjson.loads(dumps({"path": "a.png", "extra": deep}))
    assert rec == {"path": "a.png", "error": {"kind": "bad_record", "message": rec["error"]["message"]}}


# --- bytes: size limits and junk that Pillow would crawl through ----------------------------------

def _jpeg_head() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()[:20]  # SOI and the APP0 segment: then junk where markers belong


def _sparse(path, head: bytes, size: int):
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)  # a hole: no disk is used
    return str(path)


def test_a_1_gib_sparse_junk_jpeg_is_too_large_at_once(tiny, tmp_path):
    big = _sparse(tmp_path / "big.jpg", _jpeg_head(), 1 << 30)
    good = str(make_image(tmp_path / "good.png"))
    start = time.monotonic()
    run = emo(TINY + [good, big, good])
    check_contract(run, [(good, None), (big, "too_large"), (good, None)])
    assert time.monotonic() - start < 30


def test_junk_under_the_byte_limit_fails_fast_too(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("EMO_MAX_BYTES", "0")  # no byte limit: the header walk alone must bound it
    monkeypatch.setattr(decode_mod, "_MAX_BYTES", None)
    junk = _sparse(tmp_path / "junk.jpg", _jpeg_head(), 256 << 20)
    good = str(make_image(tmp_path / "good.png"))
    start = time.monotonic()
    run = emo(TINY + [good, junk, good])
    check_contract(run, [(good, None), (junk, "not_an_image"), (good, None)])
    assert time.monotonic() - start < 30


def test_max_bytes_from_the_environment(tmp_path, monkeypatch):
    img = make_image(tmp_path / "a.png", size=(64, 64))
    monkeypatch.setattr(decode_mod, "_MAX_BYTES", None)
    monkeypatch.setenv("EMO_MAX_BYTES", "10")
    with pytest.raises(InputError) as e:
        decode(img, (View(32),), 0)
    assert e.value.kind == "too_large" and "--max-bytes" in e.value.message
    assert decode(img, (View(32),), 0, max_bytes=0).size == (64, 64)  # 0: no limit
    monkeypatch.setattr(decode_mod, "_MAX_BYTES", None)


def test_max_bytes_setting_is_validated():
    from emo.config import from_env
    from emo.errors import ConfigError

    assert from_env({"EMO_MAX_BYTES": "1000"}).max_bytes == 1000
    assert from_env({}).max_bytes == 512 << 20
    for bad in ("-1", "lots"):
        with pytest.raises(ConfigError):
            from_env({"EMO_MAX_BYTES": bad})


def test_truncated_images_stay_errors_even_if_someone_turned_pillow_lenient(tmp_path):
    path = tmp_path / "cut.jpg"
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # what another library in the process might do
    try:
        with pytest.raises(InputError) as e:
            decode(path, (View(32),), 0)
        assert e.value.kind == "truncated"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


@pytest.mark.parametrize("make", ["many_segments", "junk_then_marker", "endless_fill"])
def test_jpeg_header_tricks_end_quickly(tmp_path, make):
    head = b"\xff\xd8"
    if make == "many_segments":
        blob = head + b"\xff\xfe\x00\x02" * 200_000  # empty comment segments, one after another
    elif make == "junk_then_marker":
        blob = head + b"\x00" * (1 << 20) + b"\xff\xd9"
    else:
        blob = head + b"\xff" * (1 << 20)
    path = tmp_path / f"{make}.jpg"
    path.write_bytes(blob)
    start = time.monotonic()
    with pytest.raises(InputError):
        decode(path, (View(32),), 0)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("env, value", [("EMO_BATCH_SIZE", "99999999999999999999"), ("EMO_BATCH_SIZE", "0"),
                                        ("EMO_WORKERS", "1000000000000"), ("EMO_WORKERS", "-1"),
                                        ("EMO_MAX_BYTES", "-5"), ("EMO_MAX_BYTES", "1e3"),
                                        ("EMO_MAX_PIXELS", "x"), ("EMO_BACKEND", "\udcff")])
def test_hostile_environment_values_are_one_line_exit_2(tiny, tmp_path, monkeypatch, env, value):
    monkeypatch.setenv(env, value)
    run = emo(TINY + [str(make_image(tmp_path / "a.png"))])
    assert_clean(run)
    assert run.code == 2 and run.out == b"", run.err
    assert any(w in run.err for w in (env, "must be", "not one of")), run.err
    assert len([ln for ln in run.err.splitlines() if ln.strip()]) == 1


def test_a_head_that_cannot_be_built_here_is_one_line_exit_2_not_a_model_error_per_record(monkeypatch):
    """Under a memory limit (ulimit -v) torch cannot even load: that is the run's error, not each input's."""
    import emo.models.head_file as head_file

    def no_torch(*a, **k):
        raise ImportError("libtorch_cpu.so: failed to map segment from shared object")

    monkeypatch.setattr(head_file, "_net_from_state", no_torch)
    run = emo(["classify"], _feature_lines(_good_row(1), _good_row(2)))
    assert_clean(run)
    assert run.code == 2 and b"model_error" not in run.out
    assert "cannot build head" in run.err and len(run.err.strip().splitlines()) == 1


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.mark.parametrize("make", ["png_empty_chunks_before_pixels", "png_empty_idat_chunks", "gif_comment_blocks"])
def test_files_of_tiny_blocks_are_refused_within_seconds(tmp_path, make):
    """Pillow parses PNG chunks and GIF blocks in Python: 6 MiB of empty ones would take seconds
    each and a 500 MiB file minutes, so what it may read is bounded by the picture's size."""
    import struct
    import zlib

    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
    pixels = zlib.compress(b"".join(b"\x00" + b"\x01\x02\x03" * 8 for _ in range(8)))
    many = (6 << 20) // 12
    if make == "png_empty_chunks_before_pixels":
        blob = b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"zzZz", b"") * many + _png_chunk(b"IDAT", pixels)
    elif make == "png_empty_idat_chunks":
        blob = (b"\x89PNG\r\n\x1a\n" + ihdr + _png_chunk(b"IDAT", pixels[:4]) + _png_chunk(b"IDAT", b"") * many
                + _png_chunk(b"IDAT", pixels[4:]))
    else:
        blob = (b"GIF89a" + struct.pack("<HHBBB", 8, 8, 0, 0, 0) + b"\x21\xfe\x01a\x00" * ((6 << 20) // 5)
                + b"\x2c" + struct.pack("<HHHHB", 0, 0, 8, 8, 0) + b"\x02\x02\x44\x01\x00\x3b")
    path = tmp_path / "spam.img"
    path.write_bytes(blob + _png_chunk(b"IEND", b"") if make.startswith("png") else blob)
    start = time.monotonic()
    with pytest.raises(InputError) as e:
        decode(path, (View(32),), 0)
    assert time.monotonic() - start < 10 and e.value.kind in ("not_an_image", "truncated")


def test_a_real_large_picture_is_well_inside_the_read_budget(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.png"
    Image.fromarray(rng.integers(0, 256, (1200, 1600, 3), np.uint8)).save(path)  # incompressible
    assert decode(path, (View(32),), 0).size == (1600, 1200)
