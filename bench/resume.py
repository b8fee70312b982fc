"""What --resume costs before a run starts: reading the keys of an existing output file.

    python bench/resume.py [FILE.jsonl]

FILE defaults to a synthetic output of 20,000 records carrying object (1000) and deep (1280)
features, about as large as an emo features run over 20,000 images writes. The file is copied
first (read_done cuts a partial last line in place).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from emo.io.output import read_done
from emo.io.writer import dumps


def synthetic(path: Path, n: int = 20_000) -> None:
    rng = np.random.default_rng(0)
    obj, deep = rng.random(1000, dtype=np.float32), rng.random(1280, dtype=np.float32)
    with open(path, "wb") as f:
        for i in range(n):
            f.write(dumps({"path": f"photos/{i:06d}.jpg", "features": {"object": obj, "deep": deep}}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", type=Path, nargs="?", help="An emo -o output file (default: a synthetic one).")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d) / "out.jsonl"
        if a.file is not None:
            shutil.copyfile(a.file, work)
        else:
            synthetic(work)
        size = work.stat().st_size
        t = time.perf_counter()
        done = read_done(work)
        secs = time.perf_counter() - t
    print(f"{len(done)} records, {size / 1e6:.0f} MB: read_done {secs:.2f} s "
          f"({len(done) / secs:,.0f} records/s, {size / 1e6 / secs:.0f} MB/s)")


if __name__ == "__main__":
    main()
