#!/usr/bin/env python
"""Throughput of emo on photo-sized JPEGs (12 and 24 megapixels), side by side with its bounds.

Generates camera-like JPEGs (gradients, shapes, sensor noise, quality 90, an EXIF orientation on
each) into a folder, or reuses the ones already there, then measures in one run:

1. naive: Pillow full decode, the weights' transforms, the eager model, one image at a time;
2. loader: a torch DataLoader (one worker per core, batch 32) feeding the eager model;
3. floor: emo's own decoder alone, one process per core (the most decoding the cores can do);
4. ceiling: the engine alone on pre-decoded uint8 tensors;
   decode side: emo's own loop (decode processes, balancing, batches in input order) with a
   stage that takes each batch's pixels and computes nothing, balanced and with one worker per
   core: what emo reaches where the engine costs next to nothing, as on a GPU, measured on any
   machine (target: 0.9x the floor);
5. emo: ``emo classify`` end to end (process start to last line) with its default, balanced decode,
   and with each fixed ``--workers N`` of ``--fixed``; every emo figure is the best of ``--repeat``
   runs, taken in turns so that a busy spell of a shared machine does not favour one setting;
6. memory: emo's peak RSS, its own and its decode workers', on each photo size.

    python bench/photos.py PHOTO_FOLDER --count 300                  # writes bench/PHOTOS.md
    python bench/photos.py PHOTO_FOLDER --count 300 --passes 10 --fixed 8,12,15,16 --backend eager

``--passes`` lists every photo that many times, so a run is long enough on many cores without
generating thousands of files (each decode costs the same; the file is in the page cache anyway).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import throughput as tp  # noqa: E402  (the baselines and emo's runner are shared)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "PHOTOS.md"
SECTION = "## Photo-sized inputs"
SIZES = {"12 MP": (4000, 3000), "24 MP": (6000, 4000)}
ORIENTATIONS = (1, 6, 3, 8, 1, 1)  # mostly upright, as cameras write; 6 and 8: shot in portrait


_GRAIN: dict[tuple[int, int], object] = {}


def _photo(args: tuple[Path, int, int, int]) -> Path:
    """One camera-like JPEG: sky-to-ground gradient, soft shapes, sensor noise, an EXIF orientation."""
    import numpy as np
    from PIL import Image, ImageDraw

    path, w, h, seed = args
    if path.exists() and path.stat().st_size > 0:
        return path
    rng = np.random.default_rng(seed)
    sw, sh = w // 4, h // 4  # the scene is drawn small and enlarged: soft edges, as through a lens
    top, bottom = rng.integers(40, 200, 3), rng.integers(20, 180, 3)
    t = np.linspace(0.0, 1.0, sh, dtype=np.float32)[:, None, None]
    shade = np.linspace(0.85, 1.15, sw, dtype=np.float32)[None, :, None]  # light falls off sideways
    img = Image.fromarray(np.clip((top * (1 - t) + bottom * t) * shade, 0, 239).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 14))):
        x, y = int(rng.integers(0, sw)), int(rng.integers(0, sh))
        r = int(rng.integers(sw // 40, sw // 6))
        fill = tuple(int(v) for v in rng.integers(0, 240, 3))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        else:
            draw.polygon([(x + int(rng.integers(-r, r)), y + int(rng.integers(-r, r))) for _ in range(5)], fill=fill)
    a = np.asarray(img.resize((w, h), Image.BILINEAR)).copy()
    if (w, h) not in _GRAIN:  # sensor noise: one field per process, shifted for each photo
        _GRAIN[(w, h)] = np.random.default_rng(w).integers(0, 16, size=(h, w, 3), dtype=np.uint8)
    a += np.roll(_GRAIN[(w, h)], int(rng.integers(0, w)), axis=1)  # at most 239 + 15: no overflow
    exif = Image.Exif()
    exif[0x0112] = ORIENTATIONS[seed % len(ORIENTATIONS)]
    exif[0x010F] = "bench"  # Make: a camera's files always carry one
    tmp = path.with_suffix(".tmp")
    Image.fromarray(a, "RGB").save(tmp, "JPEG", quality=90, exif=exif)
    tmp.rename(path)
    return path


def generate(folder: Path, count: int, size: tuple[int, int], procs: int) -> list[Path]:
    """``count`` photos of ``size`` under ``folder`` (kept from an earlier run when already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    jobs = [(folder / f"photo{i:05d}.jpg", w, h, i) for i in range(count)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        return list(pool.imap(_photo, jobs, chunksize=1))


_VIEW = None


def _decode_one(path: Path) -> int:
    from emo.io.decode import decode

    decode(path, (_VIEW,), 0)
    return 1


def bench_floor(paths: list[Path], view, procs: int) -> float:
    """Images per second of emo's decoder alone, in ``procs`` processes (forked before torch loads)."""
    global _VIEW
    _VIEW = view
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        pool.map(_decode_one, paths[: 2 * procs])  # each process's imports and first file
        start = time.perf_counter()
        n = sum(pool.imap_unordered(_decode_one, paths, chunksize=2))
        return n / (time.perf_counter() - start)


class _FreeEngine:
    """A stage that takes each batch's pixels and computes nothing: emo's loop with the engine's
    cost taken out, which a GPU engine nearly is (the CPU sees only the staging copy)."""

    def __init__(self, view) -> None:
        self.views = (view,)

    def wants(self, item) -> bool:
        return True

    def run(self, items) -> None:
        import numpy as np

        np.stack([it.views[self.views[0]] for it in items])  # the copy into an engine's input batch
        for it in items:
            it.features["free"] = None


def bench_decode_side(paths: list[Path], view, workers: int, batch_size: int) -> dict:
    """emo's pipeline on ``paths`` with :class:`_FreeEngine` (``workers`` 0: balanced): images per
    second over the run and over its second half, the plan it ended with, and the main process's
    CPU per image outside decoding (the loop's own cost, which one core must carry however many
    decode). Runs in this process, before torch loads, so the decode processes fork as in ``emo``."""
    import emo.io.procpool as procpool
    from emo.config import Settings
    from emo.io.records import Item
    from emo.pipeline import Pipeline

    plain, decoding = procpool._decode_one, [0.0]

    def timed(*a, **k):  # the main process decodes some images itself while it would wait
        t = time.thread_time()
        try:
            return plain(*a, **k)
        finally:
            decoding[0] += time.thread_time() - t

    pipe = Pipeline([_FreeEngine(view)], Settings(workers=workers, batch_size=batch_size))
    items = (Item(index=i, record={"path": str(p)}, path=p) for i, p in enumerate(paths))
    marks, n, start, cpu = [], 0, time.perf_counter(), time.process_time()
    procpool._decode_one = timed
    try:
        for batch in pipe.run(items):
            n += len(batch)
            marks.append((time.perf_counter() - start, n))
    finally:
        procpool._decode_one = plain
    total = time.perf_counter() - start
    loop_cpu = time.process_time() - cpu - decoding[0]
    t_half, n_half = next(m for m in marks if m[1] >= n // 2)
    return {"n": n, "ips": n / total, "half": (n - n_half) / max(total - t_half, 1e-9), "plan": pipe.decoded_by,
            "main_ms": 1e3 * loop_cpu / max(n, 1)}


def decode_side_runs(args, paths: list[Path], cores: int) -> dict[int, dict]:
    """:func:`bench_decode_side` balanced (0) and with ``--workers cores``, each the best of
    ``args.repeat`` runs taken in turns."""
    runs: dict[int, list[dict]] = {0: [], cores: []}
    for _ in range(args.repeat):
        for n in runs:
            got = bench_decode_side(paths, args.view, n, args.batch_size)
            runs[n].append(got)
            print(f"  decode side, {f'--workers {n}' if n else 'balanced'}: {got['ips']:.1f} img/s, second half "
                  f"{got['half']:.1f}, main process {got['main_ms']:.2f} ms CPU per image ({got['plan']})", file=sys.stderr)
    return {n: {"ips": max(r["ips"] for r in rs), "half": max(r["half"] for r in rs),
                "main_ms": min(r["main_ms"] for r in rs)} for n, rs in runs.items()}


def ring_slots(view) -> int:
    """Images emo's decode ring holds for ``view``: that many decode during start-up."""
    from emo.io.procpool import MAX_SLOTS, RING_BYTES, _Layout

    return max(2, min(MAX_SLOTS, RING_BYTES // _Layout((view,)).slot_bytes))


def network_view(network: str):
    from emo.io.decode import View
    from emo.models import get

    pp = get(network).preprocess
    return View(pp.crop, pp.resize, "crop")


def emo_env(cache: Path) -> dict[str, str]:
    """The environment of an emo run: no EMO_* setting of ours but the weights folder, a fixed cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMO_") or k == "EMO_WEIGHTS_DIR"}
    env["EMO_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def emo_runs(args, paths: list[Path], env: dict[str, str], settings: list[int]) -> dict[int, dict]:
    """Each ``--workers`` value's figures (0: emo's own choice), each the best over ``args.repeat``
    runs taken in turns: images per second end to end and over the output's second half, peaks."""
    base = tp.emo_command(args)
    runs: dict[int, list[dict]] = {n: [] for n in settings}
    for _ in range(args.repeat):
        for n in settings:
            got = tp.run_emo(base + (["--workers", str(n)] if n else []), paths, env, half=True)
            runs[n].append(got)
            print(f"  {f'--workers {n}' if n else 'balanced'}: {got['ips']:.1f} img/s, second half "
                  f"{got['second_half_ips'] or 0:.1f}, first line {got['first_s']:.1f} s, peak "
                  f"{got['own_rss_mb']:.0f} MB + {got['workers']} workers {got['workers_rss_mb']:.0f} MB", file=sys.stderr)
    return {n: {"ips": max(r["ips"] for r in rs), "half": max(r["second_half_ips"] or 0 for r in rs),
                "first_s": min(r["first_s"] for r in rs), "own_mb": max(r["own_rss_mb"] for r in rs),
                "workers_mb": max(r["workers_rss_mb"] for r in rs)} for n, rs in runs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="Where the photos are generated (or found from an earlier run).")
    ap.add_argument("--count", type=int, default=300, help="12 MP photos to generate [300].")
    ap.add_argument("--big-count", type=int, default=0, help="24 MP photos [default: a quarter of --count].")
    ap.add_argument("--passes", type=int, default=1, help="Times each photo is listed in the input [1].")
    ap.add_argument("--fixed", default="", help="Comma-separated --workers values to compare [1,2,...,cores].")
    ap.add_argument("--repeat", type=int, default=2, help="Runs of each emo setting; the best is kept [2].")
    ap.add_argument("--naive-limit", type=int, default=24, help="Photos for the naive loop (a rate) [24].")
    ap.add_argument("--loader-limit", type=int, default=96, help="Photos for the DataLoader baseline [96].")
    ap.add_argument("--ceiling-limit", type=int, default=128, help="Photos pre-decoded for the ceiling [128].")
    ap.add_argument("--network", default="mobilenet_v2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="Engine cache [default: a fresh temporary folder; the warm-up run builds the engine].")
    ap.add_argument("--no-write", action="store_true", help="Print the section; do not touch bench/PHOTOS.md.")
    ap.add_argument("--decode-side-only", action="store_true",
                    help="Measure the floor and the decode side only (no torch, no engine; a minute or two) and print them.")
    args = ap.parse_args()
    args.command = "classify"
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as emo sets for itself (see throughput.py)

    from emo.io.balance import usable_cores

    cores = usable_cores()
    fixed = sorted({int(x) for x in args.fixed.split(",") if x} or set(range(1, cores + 1)))
    counts = {"12 MP": args.count, "24 MP": args.big_count or max(1, args.count // 4)}
    view = args.view = network_view(args.network)
    load_start = tp.loadavg()
    rows: dict[str, dict] = {}
    t0 = time.perf_counter()
    for name, size in SIZES.items():
        photos = generate(args.folder / name.replace(" ", "").lower(), counts[name], size, cores)
        rows[name] = {"photos": photos, "paths": photos * args.passes}
    print(f"photos ready in {time.perf_counter() - t0:.0f} s; {cores} cores, load {load_start}", file=sys.stderr)
    for name, row in rows.items():  # before torch is imported: the pool forks a clean process
        row["floor"] = tp_floor = bench_floor(row["paths"], view, cores)
        row["floor_1"] = bench_floor(row["photos"][: max(8, len(row["photos"]) // 4)], view, 1)
        print(f"{name} floor {tp_floor:.1f} img/s on {cores} processes, {row['floor_1']:.1f} on one", file=sys.stderr)
        row["free"] = decode_side_runs(args, row["paths"], cores)
    if args.decode_side_only:
        print(decode_side_report(args, rows, cores, load_start))
        return 0

    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="emo-bench-"))
    env = emo_env(cache)
    try:
        warm = tp.run_emo(tp.emo_command(args), rows["12 MP"]["photos"][:16], env)  # compiles into the cache
        print(f"emo warm-up (engine built into the cache) {warm['total_s']:.1f} s", file=sys.stderr)
        for name, row in rows.items():
            print(f"{name}: emo", file=sys.stderr)
            row["emo"] = emo_runs(args, row["paths"], env, [0, *fixed])
        os.environ["EMO_CACHE_DIR"] = str(cache)
        import torch

        photos = rows["12 MP"]["photos"]
        rows["12 MP"]["naive"] = tp.bench_naive(photos[: args.naive_limit], args.network)
        rows["12 MP"]["loader"] = tp.bench_loader(photos[: args.loader_limit], args.network, args.batch_size, cores)
        print(f"naive {rows['12 MP']['naive']:.1f}, loader {rows['12 MP']['loader']:.1f} img/s", file=sys.stderr)
        from emo.engine.host import tune_process

        tune_process()
        eng, _, _ = tp.load_engine(args.network, args.batch_size, args.backend, args.precision, "auto", cache)
        x = tp.predecode(photos[: args.ceiling_limit], args.network)
        reps = max(1, 1024 // x.shape[0])
        ceiling = max(tp.bench_ceiling(x.repeat(reps, 1, 1, 1), eng, args.batch_size, 3))
        engine = f"{eng.backend} on {eng.device} ({eng.precision})"
        print(f"ceiling {ceiling:.1f} img/s ({engine})", file=sys.stderr)
    finally:
        if args.cache_dir is None:
            shutil.rmtree(cache, ignore_errors=True)
    text = report(args, rows, cores, ceiling, engine, torch.__version__, load_start, tp.loadavg(), ring_slots(view))
    print(text)
    if not args.no_write:
        old = RESULTS.read_text() if RESULTS.exists() else ""
        RESULTS.write_text((old.rstrip("\n") + "\n\n" if old.strip() else "# Photo-sized inputs\n\n") + text)
        print(f"appended to {RESULTS}", file=sys.stderr)
    return 0


def decode_side_report(args, rows, cores: int, load_start: str) -> str:
    """The floor and the decode side of each photo size, for ``--decode-side-only``."""
    argv = " ".join(sys.argv[1:]).replace(str(args.folder), "PHOTOS")  # the caller's folder, not the result's
    lines = [f"{cores} cores ({tp.cpu_name()}), load at start {load_start}, at end {tp.loadavg()}; "
             f"python bench/photos.py {argv}", "",
             "| photos | decode floor, img/s | decode side balanced | over the floor | "
             f"--workers {cores} | main process CPU per image, outside decoding |", "|---|---:|---:|---:|---:|---:|"]
    for name, row in rows.items():
        free = row["free"]
        lines.append(f"| {name}, {len(row['paths'])} inputs | {row['floor']:.1f} | {free[0]['ips']:.1f} | "
                     f"{free[0]['ips'] / row['floor']:.2f} | {free[cores]['ips']:.1f} | {free[0]['main_ms']:.2f} ms |")
    return "\n".join(lines) + "\n"


def report(args, rows, cores, ceiling, engine, torch_version, load_start, load_end, ring: int) -> str:
    argv = " ".join(a if re.fullmatch(r"[\w./,=:-]+", a) else repr(a) for a in sys.argv[1:])
    for folder, word in ((args.folder, "PHOTOS"), (args.cache_dir, "CACHE")):  # the caller's, not the result's
        if folder is not None:
            argv = argv.replace(str(folder), word)
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name()}"
    except Exception:
        pass
    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {cores} cores ({tp.cpu_name()}){gpu}",
        "",
        f"Command: `python bench/photos.py {argv}` ({args.network}, batch {args.batch_size}, "
        f"{tp.cpu_name()}, torch {torch_version}; engine {engine}). "
        f"Load average (1/5/15 min) at start {load_start}, at end {load_end}. Every figure comes from this "
        "one run; the ratios are what to read.",
        "",
    ]
    for name, row in rows.items():
        emo = row["emo"]
        bal = emo[0]
        # The second half measures the steady state only when the ring's start-up fill is behind it.
        steady = len(row["paths"]) // 2 >= ring
        fixed = [n for n in emo if n]
        best_e2e = max(fixed, key=lambda n: emo[n]["ips"])
        best_half = max(fixed, key=lambda n: emo[n]["half"])
        bound = min(row["floor"], ceiling)
        lines += [
            f"**{name}** ({len(row['photos'])} photos, {len(row['paths'])} inputs):",
            "",
            "| | img/s | second half of the output, img/s |",
            "|---|---:|---:|",
        ]
        if "naive" in row:
            lines.append(f"| naive loop: Pillow full decode + transforms + eager, one at a time "
                         f"({min(args.naive_limit, len(row['photos']))} photos) | {row['naive']:.1f} | |")
            lines.append(f"| DataLoader, {cores} workers, batch {args.batch_size}, eager "
                         f"({min(args.loader_limit, len(row['photos']))} photos) | {row['loader']:.1f} | |")
        lines.append(f"| decode floor: emo's decoder alone in {cores} processes | {row['floor']:.1f} | |")
        lines.append(f"| (the same decoder in one process) | {row['floor_1']:.1f} | |")
        lines.append(f"| engine ceiling: {engine} on pre-decoded tensors | {ceiling:.1f} | |")
        free = row["free"]
        for n in sorted(free):
            how = "balanced" if n == 0 else f"--workers {n}"
            half = f"{free[n]['half']:.1f}" if steady else "-"
            lines.append(f"| decode side: emo's loop, {how}, with an engine that costs nothing | {free[n]['ips']:.1f} "
                         f"| {half} |")
        for n in sorted(emo):
            label = "**emo classify, balanced (default)**" if n == 0 else f"emo classify --workers {n}"
            half = f"{emo[n]['half']:.1f}" if steady else "-"
            lines.append(f"| {label} | {emo[n]['ips']:.1f} | {half} |")
        lines.append("")
        if steady:
            lines += [
                f"- Balanced emo over the lower of floor and ceiling: {bal['half'] / bound:.2f} on the second half "
                f"(target >= 0.9), {bal['ips'] / bound:.2f} end to end (start-up included: first line after "
                f"{bal['first_s']:.1f} s).",
                f"- Balanced over the best fixed value: {bal['half'] / emo[best_half]['half']:.2f} on the second "
                f"half (--workers {best_half}), {bal['ips'] / emo[best_e2e]['ips']:.2f} end to end "
                f"(--workers {best_e2e}) (target >= 0.95).",
            ]
        else:
            lines += [
                f"- {len(row['paths'])} inputs: fewer than twice the {ring} images the decode ring holds, which "
                "decode during start-up, so there is no steady state to measure (use --passes).",
                f"- Balanced emo over the lower of floor and ceiling, end to end (start-up included: first line "
                f"after {bal['first_s']:.1f} s): {bal['ips'] / bound:.2f}; over the best fixed value "
                f"(--workers {best_e2e}): {bal['ips'] / emo[best_e2e]['ips']:.2f} (target >= 0.95).",
            ]
        if "naive" in row:
            lines.append(f"- Balanced emo end to end is {bal['ips'] / row['naive']:.1f}x the naive loop and "
                         f"{bal['ips'] / row['loader']:.1f}x the DataLoader.")
        lines.append(f"- Decode side over the floor (target >= 0.9 where the engine outpaces the decode, as on a "
                     f"GPU): balanced {free[0]['ips'] / row['floor']:.2f} over the run"
                     + (f", {free[0]['half'] / row['floor']:.2f} on its second half" if steady else "")
                     + f"; --workers {cores} {free[cores]['ips'] / row['floor']:.2f} over the run. The main process "
                     f"spent {free[0]['main_ms']:.2f} ms of CPU per image there outside decoding: one core of that kind keeps up "
                     f"with {1000 / max(free[0]['main_ms'], 1e-3):.0f} images a second.")
        if not gpu:
            shared = 1 / (1 / row["floor"] + 1 / ceiling)
            lines.append(f"- Here the engine runs on the cores that decode, so both cannot run at full speed at once: "
                         f"both jobs on all cores, one after the other, give {shared:.1f} img/s; balanced emo "
                         f"{'on the second half' if steady else 'end to end'} is "
                         f"{(bal['half'] if steady else bal['ips']) / shared:.2f}x that.")
        mem = ", ".join(f"{('balanced' if n == 0 else f'--workers {n}')} {emo[n]['own_mb']:.0f} + "
                        f"{emo[n]['workers_mb']:.0f} MB" for n in sorted(emo))
        lines += [f"- Peak memory, emo itself + its decode workers (each worker's peak added up, so pages they "
                  f"share count once per worker): {mem}.", ""]
    lines.append("Photos: 4000x3000 and 6000x4000 JPEGs made by the script (gradient sky, blurred shapes, "
                 "sensor noise, quality 90, EXIF orientations 1/3/6/8). emo figures: process start to last line, "
                 f"the best of {args.repeat} runs per setting, settings taken in turns; the second half is the "
                 "rate over the last half of the output lines, after start-up and most of the decode ring's "
                 "first fill.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
