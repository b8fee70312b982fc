"""XMP stage: after the classify stage, write each picture's keywords into its XMP sidecar.

Runs on items whose record carries ``emotion`` (or ``sentiment``); needs no pixels. Adds
``xmp`` (the sidecar's path, as the record names the picture, readably) to the record. The
sidecar goes beside the file the record names exactly (``path_bytes`` where the name is not
UTF-8), so two pictures whose names read alike never share one. A sidecar that
cannot be merged marks only its own record with a ``sidecar_error``; the batch goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emo.config import KEY_EMOTION, KEY_SENTIMENT, KEY_XMP
from emo.io.decode import View
from emo.io.records import IMAGE_EXTENSIONS, Item, printable, record_name
from emo.io.xmp import SidecarError, write_sidecar



def _not_a_picture(path: Path | None) -> str:
    """Why no sidecar may go beside ``path`` ("" when one may): a sidecar is written only beside
    an existing picture file, so a record naming any other file cannot make emo write there."""
    if path is None:
        return "no picture path to put a sidecar beside"
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        return f"{path.suffix or 'no extension'} is not a picture's extension"
    try:
        if not path.is_file():
            return "no such picture file"
    except (OSError, ValueError):
        return "no such picture file"
    return ""


def _label(value: Any) -> str | None:
    """A certain label of an ``emotion`` / ``sentiment`` key, None when absent or uncertain."""
    if isinstance(value, dict) and isinstance(value.get("label"), str) and not value.get("uncertain"):
        return value["label"]
    return None


class XmpStage:
    """Writes or merges ``<picture>.xmp`` with ``emotion|<label>`` and ``sentiment|<label>``."""

    views: tuple[View, ...] = ()

    def wants(self, item: Item) -> bool:
        return KEY_EMOTION in item.record or KEY_SENTIMENT in item.record

    def run(self, items: list[Item]) -> None:
        for item in items:
            why = _not_a_picture(item.path)
            if why:
                item.fail("sidecar_error", f"{item.label}: {why}; no sidecar written")
                continue
            try:
                written = write_sidecar(item.path, _label(item.record.get(KEY_EMOTION)),
                                        _label(item.record.get(KEY_SENTIMENT)))
            except SidecarError as e:
                item.fail("sidecar_error", str(e))
                continue
            except RecursionError:  # a sidecar nested deeper than any real one
                item.fail("sidecar_error", f"{item.label}: its sidecar is nested too deeply to merge; left untouched")
                continue
            # Named after the file it went beside (path_bytes where the record has one), never a
            # "path" that says otherwise; readably, as "path" is written.
            name = record_name(item.record)
            item.record[KEY_XMP] = f"{printable(name)}.xmp" if name is not None else printable(str(written))
