"""Random bytes as image files and random stdin lines: the contract holds whatever comes in."""

from __future__ import annotations

import itertools
import os

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emo.errors import ERROR_KINDS
from tests.conftest import make_image
from tests.robustness.conftest import TINY, assert_clean, emo

# CI replays the same examples (a green run stays green); a developer's run explores new ones.
FUZZ = settings(max_examples=30, deadline=None, derandomize=bool(os.environ.get("CI")), suppress_health_check=[HealthCheck.function_scoped_fixture])

# Random bytes, some starting like a real image so the decoder gets past its first check.
HEADS = [b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 "]
file_bytes = st.tuples(st.sampled_from(HEADS), st.binary(max_size=600)).map(lambda t: t[0] + t[1])


def _check(run, n: int) -> list[dict]:
    assert_clean(run)
    recs = run.records
    assert len(recs) == n, run.err
    for r in recs:
        if "error" in r:
            assert r["error"]["kind"] in ERROR_KINDS and r["error"]["message"]
        else:
            assert "object" in r["features"]
    assert run.code == (1 if any("error" in r for r in recs) else 0), run.err
    return recs


@FUZZ
@given(blobs=st.lists(file_bytes, min_size=1, max_size=6))
def test_random_bytes_as_image_files(tiny, tmp_path_factory, blobs):
    d = tmp_path_factory.mktemp("fuzz")
    good = str(make_image(d / "good.png"))
    paths = []
    for i, blob in enumerate(blobs):
        p = d / f"f{i}.jpg"
        p.write_bytes(blob)
        paths += [str(p), good]
    recs = _check(emo(TINY + paths), len(paths))
    assert [r["path"] for r in recs] == paths
    assert all("features" in r for r in recs[1::2])  # the good image between them is untouched


def _json_line(obj) -> bytes:
    return orjson.dumps(obj)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
line_parts = st.one_of(
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"")),
    st.text(max_size=40).map(lambda t: t.replace("\n", "").encode("utf-8", "surrogatepass")),
    st.dictionaries(st.sampled_from(["path", "features", "error", "x"]), json_values, max_size=3).map(_json_line),
    st.sampled_from([b"GOOD", b"{", b"[", b'"', b"{}", b"\xff", b"\r", b"   "]),
)


@FUZZ
@given(parts=st.lists(line_parts, min_size=1, max_size=8))
def test_random_lines_on_stdin(tiny, tmp_path_factory, parts):
    d = tmp_path_factory.mktemp("fuzz")
    good = str(make_image(d / "good.png")).encode()
    lines = [p.replace(b"GOOD", good) for p in parts]
    # Blank lines carry no input; every other line is one record, in order, good ones intact.
    is_good = list(itertools.chain.from_iterable(([False] if ln.rstrip(b"\r").strip() else []) + [True] for ln in lines))
    stdin = b"".join(itertools.chain.from_iterable((ln, b"\n", good, b"\n") for ln in lines))
    recs = _check(emo(TINY, stdin), len(is_good))
    assert all(r.get("path") == good.decode() and "features" in r for r, g in zip(recs, is_good) if g)


# Path pieces the system may refuse: too long, loops, NUL, bytes that are not UTF-8, folders.
PIECES = ["c" * 300, "x" * 255, "é" * 130, "..", ".", "", "loop", "good.png", "dir", "\udcff", "\0", "[", "{"]
paths = st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("/".join)


@FUZZ
@given(form=st.sampled_from(["arg", "line", "json", "null"]), names=st.lists(paths, min_size=1, max_size=5))
def test_hostile_paths_in_every_input_form(tiny, tmp_path_factory, form, names):
    d = tmp_path_factory.mktemp("fuzz")
    make_image(d / "good.png")
    (d / "dir").mkdir()
    os.symlink(d / "loop", d / "loop")
    good = str(d / "good.png")
    if form in ("arg", "null"):  # a NUL ends a name there: it cannot be inside one
        names = [p.replace("\0", "") or "." for p in names]

    def enc(p: str) -> bytes:
        if form == "json" and "\udcff" not in p:
            return orjson.dumps({"path": p})
        return p.encode("utf-8", "surrogateescape")

    if form == "arg":
        run = emo(TINY + ["--root", str(d)] + [x for p in names for x in (p, good)])
        hostile = len(names)
    elif form == "null":
        run = emo(TINY + ["-0", "--root", str(d)], b"".join(enc(p) + b"\0" + good.encode() + b"\0" for p in names))
        hostile = len(names)
    else:
        body = [enc(p) for p in names]
        run = emo(TINY + ["--root", str(d)], b"".join(b + b"\n" + good.encode() + b"\n" for b in body))
        hostile = sum(1 for b in body if b.strip())  # blank lines carry no input
    recs = _check(run, hostile + len(names))
    assert sum(1 for r in recs if r.get("path") == good and "features" in r) >= len(names)
