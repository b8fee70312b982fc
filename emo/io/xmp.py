"""XMP sidecars: write or merge ``photo.jpg.xmp`` beside a picture with emo's keywords.

Keywords go where darktable, digiKam and Lightroom read them back: the hierarchy in
``lr:hierarchicalSubject`` (``emotion|joy``, ``sentiment|positive``) and the leaf in
``dc:subject`` (``joy``, ``positive``), both ``rdf:Bag`` lists. Merge rules (docs/xmp.md):
every other element, attribute, comment and processing instruction of an existing sidecar is
kept; emo's own keywords (``emotion|*``, ``sentiment|*`` and their leaves) are replaced. A sidecar
that cannot be parsed, is a symlink or is not a regular file is left alone and reported. Writes
are atomic (temporary file in the same folder, then rename) and keep the sidecar's mode. The
picture itself is never opened.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

NS_X = "adobe:ns:meta/"
NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_LR = "http://ns.adobe.com/lightroom/1.0/"
# emo's own property: the dc:subject leaves emo added (not those the user had), so a re-run removes
# only its own; photo libraries ignore namespaces they do not know.
NS_EMO = "https://emo.invalid/xmp/1.0/"
PREFIXES = {"x": NS_X, "rdf": NS_RDF, "dc": NS_DC, "lr": NS_LR, "emo": NS_EMO}
ROOTS = ("emotion", "sentiment")  # the keyword trees emo owns
SEP = "|"  # Lightroom's hierarchy separator, also read by darktable and digiKam
MAX_SIDECAR_BYTES = 16 << 20  # a sidecar larger than this is not one a photo library wrote
XPACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
XPACKET_END = '<?xpacket end="w"?>'


class SidecarError(Exception):
    """A sidecar emo will not read or replace; the message says why, in one line."""


def sidecar_path(image: str | Path) -> Path:
    """``photo.jpg`` -> ``photo.jpg.xmp`` (the name darktable, digiKam and ExifTool use)."""
    p = Path(image)
    return p.with_name(p.name + ".xmp")


# Characters a keyword cannot hold: those XML 1.0 cannot write at all (C0 controls but tab, newline
# and carriage return; lone surrogates; U+FFFE, U+FFFF), the controls a parser would rewrite or a
# library show as junk (tab, newline, carriage return, DEL, C1), and the hierarchy separator.
_NOT_KEYWORD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff" + re.escape(SEP) + "]")


def label_problem(label: str) -> str:
    """Why ``label`` cannot be a keyword leaf ("" when it can): a ``|`` would make ``emotion|a|b``
    a deeper keyword than emo wrote, and a character XML cannot hold would break the sidecar."""
    bad = _NOT_KEYWORD.search(label)
    if bad is None:
        return ""
    c = bad.group()
    if c == SEP:
        return f"the label holds {SEP!r}, the separator of hierarchical keywords"
    return f"the label holds U+{ord(c):04X}, which a keyword in XML cannot hold"


def keywords(emotion: str | None, sentiment: str | None) -> list[str]:
    """emo's hierarchical keywords for a picture; an uncertain (None) label gives none.

    Raises :class:`SidecarError` for a label no keyword can hold (:func:`label_problem`).
    """
    out = []
    for root, label in (("emotion", emotion), ("sentiment", sentiment)):
        if label:
            problem = label_problem(label)
            if problem:
                raise SidecarError(f'{root} label "{_shown(label)}": {problem}')
            out.append(f"{root}{SEP}{label}")
    return out


def _shown(label: str) -> str:
    """A label for a one-line message: at most 40 characters, controls and surrogates escaped."""
    from emo.io.records import one_line

    return one_line(label[:40].encode("utf-8", "backslashreplace").decode("utf-8"))


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _is_ours(keyword: str) -> bool:
    return keyword.split(SEP, 1)[0] in ROOTS and SEP in keyword


def _read(path: Path) -> tuple[bytes, int] | None:
    """The sidecar's bytes and permission bits, None when there is none; SidecarError when it
    must be left alone. Opened without following links, so a link swapped in is never read."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SidecarError(f"{path}: cannot inspect the sidecar ({e.strerror})") from None
    if stat.S_ISLNK(st.st_mode):
        # Writing through a link could change a file elsewhere; replacing it would break the link.
        raise SidecarError(f"{path}: the sidecar is a symbolic link; left alone")
    if not stat.S_ISREG(st.st_mode):
        raise SidecarError(f"{path}: the sidecar is not a regular file; left alone")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise SidecarError(f"{path}: cannot read the sidecar ({e.strerror}); left alone") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SidecarError(f"{path}: the sidecar is not a regular file; left alone")
        if st.st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"{path}: the sidecar is {st.st_size} bytes, too large to be one; left alone")
        try:
            return f.read(MAX_SIDECAR_BYTES + 1), stat.S_IMODE(st.st_mode)
        except OSError as e:
            raise SidecarError(f"{path}: cannot read the sidecar ({e.strerror}); left alone") from None


class _Declared(Exception):
    """Raised from the parser's DTD handlers to stop at the first declaration."""


def _declares_dtd(data: bytes) -> bool:
    """Whether ``data`` declares a DTD or an entity, asked of the XML parser itself: a search of
    the bytes misses a sidecar in UTF-16, where ``<!DOCTYPE`` is spelt with NUL bytes between."""
    from xml.parsers import expat

    def stop(*_: object) -> None:
        raise _Declared

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = stop
    parser.EntityDeclHandler = stop
    try:
        parser.Parse(data, True)
    except _Declared:
        return True
    except expat.ExpatError:
        return False  # not well-formed: the parse that follows says where
    return False


def _parse(data: bytes, path: Path) -> tuple[ET.ElementTree, list[tuple[str, str]], str]:
    """The sidecar's tree, its namespace prefixes in document order, and its wrapper: ``xpacket``,
    ``declaration`` (an ``<?xml?>`` line) or ``""``."""
    if _declares_dtd(data):
        # XMP has no DTD; entities are how a hostile file makes a parser blow up.
        raise SidecarError(f"{path}: the sidecar declares a DTD or entities; left alone")
    prefixes: list[tuple[str, str]] = []
    try:
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
        events = ET.iterparse(io.BytesIO(data), events=("start-ns",), parser=parser)
        for _, ns in events:
            prefixes.append(ns)
        root = events.root  # type: ignore[attr-defined]
    except ET.ParseError as e:
        raise SidecarError(f"{path}: the sidecar is not well-formed XML ({e}); left alone") from None
    rdf = root if root.tag == _q(NS_RDF, "RDF") else root.find(_q(NS_RDF, "RDF"))
    if root.tag not in (_q(NS_X, "xmpmeta"), _q(NS_RDF, "RDF")) or rdf is None:
        raise SidecarError(f"{path}: the sidecar is XML but not XMP (no x:xmpmeta / rdf:RDF); left alone")
    wrapper = "xpacket" if b"<?xpacket" in data else "declaration" if data.lstrip().startswith(b"<?xml") else ""
    return ET.ElementTree(root), prefixes, wrapper


def _new_tree() -> ET.ElementTree:
    root = ET.Element(_q(NS_X, "xmpmeta"), {_q(NS_X, "xmptk"): "emo"})
    rdf = ET.SubElement(root, _q(NS_RDF, "RDF"))
    ET.SubElement(rdf, _q(NS_RDF, "Description"), {_q(NS_RDF, "about"): ""})
    return ET.ElementTree(root)


def _bag(rdf: ET.Element, ns: str, tag: str) -> ET.Element:
    """The ``rdf:Bag`` of property ``ns:tag`` in any ``rdf:Description``, made in the first if absent."""
    for desc in rdf.iter(_q(NS_RDF, "Description")):
        prop = desc.find(_q(ns, tag))
        if prop is not None:
            bag = prop.find(_q(NS_RDF, "Bag"))
            if bag is None:  # a Seq or a bare value where a Bag belongs: rebuild it as a Bag, keeping its items
                items = [li.text or "" for li in prop.iter(_q(NS_RDF, "li"))] or ([prop.text] if prop.text else [])
                prop.clear()
                bag = ET.SubElement(prop, _q(NS_RDF, "Bag"))
                for t in items:
                    ET.SubElement(bag, _q(NS_RDF, "li")).text = t
            return bag
    desc = rdf.find(_q(NS_RDF, "Description"))
    if desc is None:
        desc = ET.SubElement(rdf, _q(NS_RDF, "Description"), {_q(NS_RDF, "about"): ""})
    return ET.SubElement(ET.SubElement(desc, _q(ns, tag)), _q(NS_RDF, "Bag"))


def _items(bag: ET.Element) -> list[str]:
    return [li.text or "" for li in bag.findall(_q(NS_RDF, "li"))]


def _set_items(bag: ET.Element, values: Iterable[str]) -> None:
    for li in bag.findall(_q(NS_RDF, "li")):
        bag.remove(li)
    for v in values:
        ET.SubElement(bag, _q(NS_RDF, "li")).text = v


def merge_keywords(tree: ET.ElementTree, new: Sequence[str]) -> None:
    """Replace emo's keywords in ``tree`` by ``new`` (hierarchical, ``emotion|joy``); keep the rest.

    A leaf in ``dc:subject`` is dropped with its emo hierarchy only if emo added it (``emo:subjects``
    lists those) and no kept hierarchical keyword ends in the same leaf: a flat keyword the user
    had before emo, such as ``positive``, stays.
    """
    root = tree.getroot()
    rdf = root if root.tag == _q(NS_RDF, "RDF") else root.find(_q(NS_RDF, "RDF"))
    assert rdf is not None
    subj = _bag(rdf, NS_DC, "subject")
    hier = _bag(rdf, NS_LR, "hierarchicalSubject")
    own = _bag(rdf, NS_EMO, "subjects")
    added_before = set(_items(own))
    old_h = _items(hier)
    kept_h = [k for k in old_h if not _is_ours(k)]
    kept_leaves = {k.split(SEP)[-1] for k in kept_h}
    dropped_leaves = ({k.split(SEP)[-1] for k in old_h if _is_ours(k)} - kept_leaves) & added_before
    kept_s = [s for s in _items(subj) if s not in dropped_leaves]
    added = [leaf for leaf in dict.fromkeys(k.split(SEP)[-1] for k in new) if leaf not in kept_s]
    _set_items(hier, kept_h + [k for k in new if k not in kept_h])
    _set_items(subj, kept_s + added)
    _set_items(own, sorted((added_before - dropped_leaves) | set(added)))


def _serialise(tree: ET.ElementTree, prefixes: Sequence[tuple[str, str]], wrapper: str) -> bytes:
    names = dict(PREFIXES)
    for prefix, uri in prefixes:
        names.setdefault(prefix, uri)
    for prefix, uri in names.items():
        if prefix and not re.fullmatch(r"ns\d+", prefix):
            ET.register_namespace(prefix, uri)
    ET.indent(tree, space=" ")
    body = ET.tostring(tree.getroot(), encoding="unicode")
    if wrapper == "xpacket":
        text = f"{XPACKET_BEGIN}\n{body}\n{XPACKET_END}\n"
    else:
        text = ('<?xml version="1.0" encoding="UTF-8"?>\n' if wrapper == "declaration" else "") + body + "\n"
    return text.encode("utf-8")


def _write_atomic(path: Path, data: bytes, mode: int | None) -> None:
    """Write ``path`` through a temporary file in its folder and a rename; ``mode`` kept (else 0666 - umask)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_sidecar(image: str | Path, emotion: str | None, sentiment: str | None) -> Path:
    """Write or merge ``image``'s sidecar with emo's keywords; the sidecar's path.

    ``emotion`` / ``sentiment``: labels, or None for none (an uncertain label): any keyword emo
    wrote before in that tree is removed. Raises :class:`SidecarError` (nothing written) for a
    sidecar that is corrupt, a symlink, not a regular file, or cannot be written, and for a label
    no keyword can hold (:func:`label_problem`).
    """
    path = sidecar_path(image)
    try:
        new = keywords(emotion, sentiment)  # before the sidecar is read: a bad label touches nothing
    except SidecarError as e:
        raise SidecarError(f"{path}: {e}; no sidecar written") from None
    found = _read(path)
    if found is None:
        tree, prefixes, wrapper, mode = _new_tree(), [], "xpacket", None
    else:
        tree, prefixes, wrapper = _parse(found[0], path)
        mode = found[1]
    merge_keywords(tree, new)
    try:
        _write_atomic(path, _serialise(tree, prefixes, wrapper), mode)
    except OSError as e:
        raise SidecarError(f"{path}: cannot write the sidecar ({e.strerror or e})") from None
    return path


def read_keywords(path: str | Path) -> tuple[list[str], list[str]]:
    """``(hierarchical, leaf)`` keywords of a sidecar, as emo reads them back (tests, docs)."""
    found = _read(Path(path))
    if found is None:
        return [], []
    tree, _, _ = _parse(found[0], Path(path))
    root = tree.getroot()
    hier = [li.text or "" for p in root.iter(_q(NS_LR, "hierarchicalSubject")) for li in p.iter(_q(NS_RDF, "li"))]
    subj = [li.text or "" for p in root.iter(_q(NS_DC, "subject")) for li in p.iter(_q(NS_RDF, "li"))]
    return hier, subj
