"""``emo.Predictor``: a subcommand as a callable, loaded once, for Ray, Spark or your own loop.

``Predictor("classify")`` parses its arguments exactly as ``emo classify`` does and builds the
same stages (networks, engine, heads) once; each call runs one batch through the one pipeline
and returns one record per input, in order, the same records ``emo classify`` writes:

    p = emo.Predictor("features", "--set", "object", device="cuda:0")
    p(["a.jpg", "b.jpg"])                     # paths (decoded on the pipeline's threads)
    p([{"path": "a.jpg", "label": "joy"}])    # records: fields pass through
    p([array_hw3_uint8, pil_image])           # pictures already in memory, taken as upright
    p({"path": np.array([...])})              # a column batch (Ray Data's numpy format)

Bad inputs become records with ``error``, as on the command line; an unusable model or option
raises :class:`emo.errors.EmoError` from the constructor.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any

from emo.config import KEY_PATH
from emo.io.records import Item, item_from_record

IMAGE_COLUMN = "image"  # a column batch with this column carries pixels (Ray's read_images)


def _flags(options: Mapping[str, Any]) -> list[str]:
    """``batch_size=8, quiet=True`` -> ``["--batch-size", "8", "--quiet"]``."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, str(value)]
    return out


class Predictor:
    """One ``emo`` subcommand, built once, called on batches.

    ``command`` and ``args`` are what follows ``emo`` on a command line (no paths); keyword
    options are the same options spelt in Python (``device="cuda:1"``, ``batch_size=64``).
    """

    def __init__(self, command: str = "classify", *args: str, **options: Any) -> None:
        from emo.cli.options import settings_from, stages_for
        from emo.pipeline import Pipeline

        opts, build = stages_for([command, *args, *_flags(options)])
        self.command = command
        settings = settings_from(opts)
        # Called batch after batch: decode threads, not a process pool forked for every call.
        self.settings = replace(settings, decoder="thread") if settings.decoder == "auto" else settings
        self.root: Path | None = opts.get("root")
        self.stages = list(build(self.settings))
        self._pipeline = Pipeline(self.stages, self.settings)

    def __call__(self, batch: Sequence[Any] | Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """One record per input of ``batch``, in order (see the module docstring for inputs)."""
        items = list(self._items(batch))
        pixels = [it for it in items if "pixels" in it.scratch]
        if pixels:
            return self._run_pixels(items)
        return [it.record for done in self._pipeline.run(items) for it in done]

    def _items(self, batch: Sequence[Any] | Mapping[str, Sequence[Any]]) -> Iterator[Item]:
        if isinstance(batch, Mapping):
            cols = {k: list(v) for k, v in batch.items()}
            n = len(next(iter(cols.values()), []))
            rows: Iterable[Any] = ({k: v[i] for k, v in cols.items()} for i in range(n))
        else:
            rows = batch
        for i, row in enumerate(rows):
            yield self._item(i, row)

    def _item(self, index: int, row: Any) -> Item:
        if isinstance(row, (str, PathLike)):
            row = {KEY_PATH: str(row)}
        if isinstance(row, Mapping):
            record = {k: _plain(v) for k, v in row.items() if k != IMAGE_COLUMN}
            if IMAGE_COLUMN in row:
                item = Item(index, record)
                item.scratch["pixels"] = row[IMAGE_COLUMN]
                return item
            return item_from_record(index, record, self.root)
        item = Item(index, {})
        item.scratch["pixels"] = row  # an array or a Pillow image
        return item

    def _run_pixels(self, items: list[Item]) -> list[dict[str, Any]]:
        """Batches with pictures in memory: their views are made here, then the same stages run.

        Records with a path in the same batch are decoded from their files, in this thread.
        """
        from emo.errors import InputError
        from emo.io.decode import from_pixels
        from emo.io.procpool import _decode_one
        from emo.pipeline import _views_for

        out: list[dict[str, Any]] = []
        size = self.settings.batch_size
        for start in range(0, len(items), size):
            chunk = items[start : start + size]
            decoded: list[_Done | None] = []
            for item in chunk:
                pixels = item.scratch.pop("pixels", None)
                views = _views_for(item, self.stages) if item.ok else ()
                decoded.append(None)
                if not views:
                    continue
                if pixels is not None:
                    try:
                        got = from_pixels(pixels, views)
                    except InputError as e:
                        item.fail(e.kind, e.message)
                        continue
                    item.size, item.views = got.size, got.views
                elif item.path is not None:
                    decoded[-1] = _Done(_decode_one(item.path, views, self.settings.max_pixels))
                else:
                    item.fail("bad_record", "record has no path or image and lacks the features this command needs")
            out += [it.record for it in self._pipeline.process(chunk, decoded)]
        return out


class _Done:
    """An already finished result, shaped like the futures Pipeline.process takes."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self) -> Any:
        return self.value


def _plain(value: Any) -> Any:
    """Numpy scalars from a column batch as plain Python values (strings, numbers)."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value
