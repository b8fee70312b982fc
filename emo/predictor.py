"""``emo.Predictor``: a subcommand as a callable, loaded once, for Ray, Spark or your own loop.

``Predictor("classify")`` parses its arguments exactly as ``emo classify`` does and builds the
same stages (networks, engine, heads) once; each call runs one batch through the one pipeline
and returns one record per input, in order, the same records ``emo classify`` writes:

    p = emo.Predictor("features", "--set", "object", device="cuda:0")
    p(["a.jpg", "b.jpg"])                     # paths, str or bytes (decoded on the pipeline's threads)
    p([{"path": "a.jpg", "label": "joy"}])    # records: fields pass through
    p([array_hw3_uint8, pil_image])           # pictures already in memory, taken as upright
    p({"path": np.array([...])})              # a column batch (Ray Data's numpy format)

Bad inputs become records with ``error``, as on the command line; an unusable model or option
raises :class:`emo.errors.EmoError` from the constructor. A process forked after a call (a
multiprocessing pool's workers) can call it too: see :mod:`emo.forks`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike, fsdecode
from pathlib import Path
from typing import Any

from emo.config import KEY_PATH, KEY_PATH_BYTES
from emo.io.records import Item, item_from_record, name_fields

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
        from emo.assembly.runner import stages_for_flags
        from emo.pipeline import Pipeline

        # Called batch after batch: decode threads, not a process pool forked for every call.
        given = {} if "decoder" in options or "--decoder" in args else {"decoder": "thread"}
        self.stages, self.settings, run = stages_for_flags(command, [*args, *_flags(options)], **given)
        self.command = command
        self.root: Path | None = run.root
        self._views = tuple(dict.fromkeys(v for s in self.stages for v in s.views))
        self._pipeline = Pipeline(self.stages, self.settings)

    def __call__(self, batch: Sequence[Any] | Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        """One record per input of ``batch``, in order (see the module docstring for inputs)."""
        from emo.forks import on_own_thread

        self._check_cuda_after_fork()
        return on_own_thread(lambda: self._records(batch))

    def _records(self, batch: Sequence[Any] | Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
        items = [self._item(i, row) for i, row in enumerate(_rows(batch))]
        return [it.record for done in self._pipeline.run(items) for it in done]

    def _check_cuda_after_fork(self) -> None:
        """Raise :class:`EmoError` in a process forked after CUDA was used, when this Predictor
        would run on CUDA: no call could succeed there (torch refuses CUDA in such a child)."""
        torch = sys.modules.get("torch")
        device = self.settings.device
        # torch's flag: CUDA was asked about before the fork (also where it found no device)
        if torch is None or device == "cpu" or not getattr(torch.cuda, "_is_in_bad_fork", lambda: False)():
            return
        if device == "auto" and not torch.cuda.is_available():  # the count the parent found, kept
            return
        from emo.errors import EmoError

        raise EmoError(f"this Predictor runs on CUDA (device {device}), which a process forked after CUDA was "
                       "used cannot use: start the worker processes with the 'spawn' or 'forkserver' method")

    def _item(self, index: int, row: Any) -> Item:
        if isinstance(row, (str, bytes, PathLike)):  # bytes: a name from os.listdir(b".")
            row = {KEY_PATH: fsdecode(row)}
        if isinstance(row, Mapping):
            record = {k: _plain(v) for k, v in row.items() if k != IMAGE_COLUMN}
            path = record.get(KEY_PATH)
            named = isinstance(path, str) and record.get(KEY_PATH_BYTES) is None
            if IMAGE_COLUMN in row:
                if named:
                    record.update(name_fields(path))
                return self._from_pixels(Item(index, record), row[IMAGE_COLUMN])
            # The file is the name as given; only then is the record's "path" made readable (a
            # name from os.listdir may not be UTF-8), so the readable spelling never picks the file.
            item = item_from_record(index, record, self.root)
            if named:
                fields = name_fields(path)
                record.update(fields)
                if fields[KEY_PATH] != path and KEY_PATH_BYTES not in fields and item.ok:
                    item.fail("bad_path", "the name holds a lone surrogate, which no file name can")
            return item
        return self._from_pixels(Item(index, {}), row)  # an array or a Pillow image

    def _from_pixels(self, item: Item, pixels: Any) -> Item:
        """An item whose views are made here from pictures in memory, so the pipeline decodes nothing."""
        from emo.errors import InputError
        from emo.io.decode import from_pixels

        if not self._views:
            return item
        try:
            got = from_pixels(pixels, self._views)
        except InputError as e:
            item.fail(e.kind, e.message)
            return item
        item.size, item.views = got.size, got.views
        return item


def _rows(batch: Sequence[Any] | Mapping[str, Sequence[Any]]) -> Iterable[Any]:
    """The rows of a batch: a sequence as it is, a column mapping row by row."""
    if not isinstance(batch, Mapping):
        return batch
    cols = {k: list(v) for k, v in batch.items()}
    n = len(next(iter(cols.values()), []))
    return ({k: v[i] for k, v in cols.items()} for i in range(n))


def _plain(value: Any) -> Any:
    """Numpy scalars from a column batch as plain Python values (strings, numbers)."""
    return value.item() if hasattr(value, "item") and getattr(value, "ndim", 1) == 0 else value
