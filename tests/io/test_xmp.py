"""emo.io.xmp: sidecars written and merged, read back by ExifTool; bad sidecars left alone."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from PIL import Image

from emo.io.xmp import SidecarError, read_keywords, sidecar_path, write_sidecar

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed")

# A sidecar as darktable leaves it: a rating, an edit history and a keyword of the user's own.
DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <!-- written by a photo editor -->
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
   xmp:Rating="4"
   darktable:xmp_version="5"
   darktable:history_end="2">
   <darktable:history>
    <rdf:Seq>
     <rdf:li darktable:num="0" darktable:operation="exposure" darktable:enabled="1" darktable:params="0000a0bf"/>
     <rdf:li darktable:num="1" darktable:operation="colorbalancergb" darktable:enabled="1" darktable:params="00ff"/>
    </rdf:Seq>
   </darktable:history>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
     <rdf:li>joy</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>places|holiday</rdf:li>
     <rdf:li>people|joy</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def _exif(path):
    """What ExifTool reads from a sidecar: ``{tag: value}`` with lists for list tags."""
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-struct", "-XMP:all", str(path)], capture_output=True, text=True,
                         check=True)
    rec = json.loads(out.stdout)[0]
    for tag in ("XMP-lr:HierarchicalSubject", "XMP-dc:Subject"):
        v = rec.get(tag, [])
        rec[tag] = v if isinstance(v, list) else [v]
    return rec


@pytest.fixture
def photo(tmp_path):
    p = tmp_path / "photo.jpg"
    Image.new("RGB", (16, 12), (200, 30, 30)).save(p)
    return p


def test_sidecar_name_is_beside_the_picture(tmp_path):
    assert sidecar_path(tmp_path / "a" / "photo.jpg") == tmp_path / "a" / "photo.jpg.xmp"


@needs_exiftool
def test_a_new_sidecar_is_read_back_by_exiftool_and_the_picture_is_untouched(photo):
    before, st = photo.read_bytes(), photo.stat()
    path = write_sidecar(photo, "joy", "positive")
    assert path == sidecar_path(photo)
    rec = _exif(path)
    assert rec["XMP-lr:HierarchicalSubject"] == ["emotion|joy", "sentiment|positive"]
    assert rec["XMP-dc:Subject"] == ["joy", "positive"]
    assert photo.read_bytes() == before and photo.stat().st_mtime_ns == st.st_mtime_ns
    assert sorted(p.name for p in photo.parent.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]  # no temp files left


@needs_exiftool
def test_merging_keeps_every_other_field_and_a_rerun_replaces_only_emos_keywords(photo):
    side = sidecar_path(photo)
    side.write_text(DARKTABLE)
    os.chmod(side, 0o640)
    write_sidecar(photo, "fear", "negative")
    rec = _exif(side)
    assert rec["XMP-xmp:Rating"] == 4 and rec["XMP-darktable:History_end"] == 2
    assert [h["Operation"] for h in rec["XMP-darktable:History"]] == ["exposure", "colorbalancergb"]
    assert rec["XMP-darktable:History"][0]["Params"] == "0000a0bf"
    assert rec["XMP-lr:HierarchicalSubject"] == ["places|holiday", "people|joy", "emotion|fear", "sentiment|negative"]
    assert rec["XMP-dc:Subject"] == ["holiday", "joy", "fear", "negative"]
    assert side.stat().st_mode & 0o777 == 0o640
    assert "written by a photo editor" in side.read_text()

    write_sidecar(photo, "joy", None)  # a re-run: new emotion, sentiment now uncertain
    rec = _exif(side)
    assert rec["XMP-lr:HierarchicalSubject"] == ["places|holiday", "people|joy", "emotion|joy"]
    assert rec["XMP-dc:Subject"] == ["holiday", "joy"]  # one "joy" leaf, shared with the user's people|joy
    assert rec["XMP-xmp:Rating"] == 4

    write_sidecar(photo, None, None)  # uncertain: no emotion keyword at all
    rec = _exif(side)
    assert rec["XMP-lr:HierarchicalSubject"] == ["places|holiday", "people|joy"]
    assert rec["XMP-dc:Subject"] == ["holiday", "joy"]  # the user's own leaf stays
    assert rec["XMP-darktable:Xmp_version"] == 5


def test_read_keywords_without_exiftool(photo):
    write_sidecar(photo, "sadness", "negative")
    assert read_keywords(sidecar_path(photo)) == (["emotion|sadness", "sentiment|negative"], ["sadness", "negative"])
    assert read_keywords(photo.with_name("none.jpg.xmp")) == ([], [])


@pytest.mark.parametrize("content,why", [
    (DARKTABLE[: len(DARKTABLE) // 2], "not well-formed"),
    ("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]><x:xmpmeta xmlns:x='adobe:ns:meta/'/>", "DTD"),
    ("<html><body>not xmp</body></html>", "not XMP"),
    ("", "not well-formed"),
])
def test_a_corrupt_sidecar_is_refused_and_left_as_it_was(photo, content, why):
    side = sidecar_path(photo)
    side.write_text(content)
    with pytest.raises(SidecarError, match=why):
        write_sidecar(photo, "joy", "positive")
    assert side.read_text() == content
    assert sorted(p.name for p in photo.parent.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]


_ENTITIES = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
             '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
             '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>&b;</dc:title>'
             '</rdf:Description></rdf:RDF></x:xmpmeta>')


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_dtd_in_a_utf16_sidecar_is_refused_too(photo, encoding):
    side = sidecar_path(photo)
    data = _ENTITIES.replace('"1.0"?>', '"1.0" encoding="UTF-16"?>').encode(encoding)
    side.write_bytes(data)
    with pytest.raises(SidecarError, match="DTD"):
        write_sidecar(photo, "joy", "positive")
    assert side.read_bytes() == data


def test_a_symlinked_sidecar_and_a_folder_are_left_alone(photo, tmp_path):
    elsewhere = tmp_path / "elsewhere.xmp"
    elsewhere.write_text(DARKTABLE)
    side = sidecar_path(photo)
    side.symlink_to(elsewhere)
    with pytest.raises(SidecarError, match="symbolic link"):
        write_sidecar(photo, "joy", "positive")
    assert side.is_symlink() and elsewhere.read_text() == DARKTABLE
    side.unlink()
    side.mkdir()
    with pytest.raises(SidecarError, match="not a regular file"):
        write_sidecar(photo, "joy", "positive")
    side.rmdir()
    os.mkfifo(side)  # opening a FIFO to read it would hang the run
    with pytest.raises(SidecarError, match="not a regular file"):
        write_sidecar(photo, "joy", "positive")


def test_a_folder_that_does_not_exist_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(SidecarError, match="cannot write"):
        write_sidecar(tmp_path / "gone" / "photo.jpg", "joy", "positive")


def test_a_rerun_keeps_the_users_own_flat_keywords_that_match_emos_leaves(tmp_path):
    from emo.io.xmp import read_keywords, sidecar_path, write_sidecar

    pic = tmp_path / "coffee.jpg"
    pic.write_bytes(b"not read")
    side = sidecar_path(pic)
    side.write_text(
        "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
        "<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'><dc:subject><rdf:Bag>"
        "<rdf:li>neutral</rdf:li><rdf:li>positive</rdf:li></rdf:Bag></dc:subject></rdf:Description>"
        "</rdf:RDF></x:xmpmeta>")
    write_sidecar(pic, "neutral", "positive")
    hier, subj = read_keywords(side)
    assert hier == ["emotion|neutral", "sentiment|positive"] and subj == ["neutral", "positive"]
    write_sidecar(pic, None, None)  # a re-run where nothing is certain any more
    hier, subj = read_keywords(side)
    assert hier == [] and subj == ["neutral", "positive"]  # the user's own keywords stay
    write_sidecar(pic, "joy", None)
    write_sidecar(pic, "fear", None)
    hier, subj = read_keywords(side)
    assert hier == ["emotion|fear"] and subj == ["neutral", "positive", "fear"]  # emo's joy is gone


def test_the_docs_example_sidecar_is_what_emo_writes(tmp_path):
    """docs/xmp.md shows a new sidecar byte for byte as write_sidecar makes it."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "xmp.md").read_text(encoding="utf-8")
    shown = re.search(r"as emo writes it:\n\n```xml\n(.*?)```", doc, re.S)
    assert shown, "docs/xmp.md lost its example sidecar"
    picture = tmp_path / "beach.jpg"
    Image.new("RGB", (8, 8)).save(picture)
    written = write_sidecar(picture, "joy", "positive").read_text(encoding="utf-8")
    assert shown.group(1) == written


@pytest.mark.parametrize("label, says", [("calm|joy", "'|', the separator"), ("joy\x01", "U+0001"),
                                         ("joy\ud800", "U+D800"), ("a\nb", "U+000A"), ("x\ufffe", "U+FFFE")])
def test_a_label_no_keyword_can_hold_writes_no_sidecar(photo, label, says):
    side = sidecar_path(photo)
    side.write_text(DARKTABLE)
    with pytest.raises(SidecarError, match=re.escape(says)) as e:
        write_sidecar(photo, label, "positive")
    assert side.read_text() == DARKTABLE  # left exactly as it was
    assert "\n" not in str(e.value) and "\x01" not in str(e.value)
    with pytest.raises(SidecarError):
        write_sidecar(photo, "joy", label)
    assert side.read_text() == DARKTABLE and sorted(p.name for p in photo.parent.iterdir()) == [photo.name, side.name]
