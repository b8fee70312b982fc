"""XMP stage: after the classify stage, write each picture's keywords into its XMP sidecar.

Runs on items whose record carries ``emotion`` (or ``sentiment``); needs no pixels. Adds
``xmp`` (the sidecar's path, as the record names the picture) to the record. A sidecar that
cannot be merged marks only its own record with a ``sidecar_error``; the batch goes on.
"""

from __future__ import annotations

from typing import Any

from emo.config import KEY_EMOTION, KEY_PATH, KEY_SENTIMENT, KEY_XMP
from emo.io.decode import View
from emo.io.records import Item
from emo.io.xmp import SidecarError, write_sidecar



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
            if item.path is None:
                item.fail("sidecar_error", f"{item.label}: no picture path to put a sidecar beside")
                continue
            try:
                written = write_sidecar(item.path, _label(item.record.get(KEY_EMOTION)),
                                        _label(item.record.get(KEY_SENTIMENT)))
            except SidecarError as e:
                item.fail("sidecar_error", str(e))
                continue
            name = item.record.get(KEY_PATH)
            item.record[KEY_XMP] = f"{name}.xmp" if isinstance(name, str) else str(written)
