#!/usr/bin/env python
"""The GPU path in one command: engine agreement and speed, end to end, the decode wall, transfers.

    python bench/gpu.py --images PHOTOS --weights-dir WEIGHTS --out RESULTS   # a CUDA machine
    python bench/gpu.py --device cpu --quick                                  # CI: tiny input, CPU

Writes ``gpu.json`` and ``gpu.md`` under ``--out`` after every section, so a run stopped at a time
limit still leaves what it measured. Sections, in the order they run:

1. environment: GPU, driver, torch, CUDA, cores;
2. engines: the compiled engines are built first, in parallel processes, while the large test
   images are generated (nothing is timed while they build);
3. agreement: the emotion (the shipped emotion6 head on the backbone's embedding) of every carried
   photo from each engine, against eager fp32 on the same device and against the CPU;
4. engine speed: each engine alone on pre-decoded batches (host tensors in, host tensors out),
   median of several passes, against eager fp32;
5. transfers: one batch's host-to-device copy (pageable, pinned, ``non_blocking``) against its
   compute, and the engine call fed from pageable and from pinned memory;
6. the decode wall: emo's decode worker processes alone, 1..15 workers, carried photos and
   12-megapixel JPEGs made here;
7. end to end: ``emo classify`` over a few thousand paths of each kind, against the engine ceiling.

Every section catches its own failure and records it, so one broken engine never hides the rest.
The decode wall runs in a child process that never imports torch: emo's decode workers are forked
before torch loads, as on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run from a source tree: this tree's emo, not an installed one

NETWORK = "mobilenet_v2"
HEAD = "emotion6"
SUFFIXES = (".jpg", ".jpeg", ".png")
SAMPLES = REPO / "emo" / "data" / "samples"
AGREEMENT_GOAL = 99.0  # top-1 agreement, percent
SPEED_GOAL = 5.0  # best compiled engine / eager fp32


# ---------------------------------------------------------------- options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, help="Folder of photos (walked) [--quick: emo's sample images].")
    ap.add_argument("--limit", type=int, default=0, help="Use at most N photos (0: all).")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N [default: auto].")
    ap.add_argument("--quick", action="store_true", help="Tiny input and small batches: the CI run.")
    ap.add_argument("--out", type=Path, default=Path("gpu-results"), help="Folder for gpu.json and gpu.md.")
    ap.add_argument("--weights-dir", default="", help="Folder holding the backbone's weights file (EMO_WEIGHTS_DIR).")
    ap.add_argument("--cache-dir", type=Path, help="Engine cache [default: a new empty folder].")
    ap.add_argument("--engines", default="",
                    help="Comma-separated backend:precision [default: CUDA eager fp32/fp16/bf16 and inductor "
                         "fp32/fp16; CPU eager fp32/bf16 (add inductor:fp32 to compile one)].")
    ap.add_argument("--batches", default="", help="Batch sizes for engine speed [default 32,128,256; quick 2,4].")
    ap.add_argument("--workers", default="", help="Decode worker counts [default 1,2,4,8,15; quick 1,2].")
    ap.add_argument("--big-count", type=int, default=0, help="Distinct large JPEGs to generate [48; quick 3].")
    ap.add_argument("--big-mp", type=float, default=0, help="Megapixels of each large JPEG [12; quick 1].")
    ap.add_argument("--e2e-images", type=int, default=0,
                    help="Paths per end-to-end run (the photos repeated) [photos x10, at least 4000; quick 16].")
    ap.add_argument("--e2e-threads", type=int, default=0,
                    help="Also run emo classify with this many torch threads (OMP_NUM_THREADS) [0: no such run].")
    ap.add_argument("--e2e-batch", type=int, default=0, help="emo classify --batch-size [largest of --batches].")
    ap.add_argument("--budget", type=float, default=0,
                    help="Seconds the whole run may take; sections that would not fit are skipped [420; quick 300].")
    ap.add_argument("--pack", nargs=2, type=Path, metavar=("SRC", "DEST"),
                    help="Only write a small photo set to carry: N photos of SRC (evenly spread), long side at most "
                         "400 px, JPEG quality 80, into DEST; then exit.")
    ap.add_argument("--pack-count", type=int, default=400, help="Photos --pack writes [400].")
    ap.add_argument("--skip", default="", help="Comma-separated sections not to run: decode_wall, transfers, end_to_end.")
    ap.add_argument("--decode-wall", type=Path, help=argparse.SUPPRESS)  # child mode: spec file in, JSON out
    ap.add_argument("--build", default="", help=argparse.SUPPRESS)  # child mode: build one engine
    args = ap.parse_args(argv)
    q = args.quick
    args.batches = _ints(args.batches or ("2,4" if q else "32,128,256"))
    args.workers = _ints(args.workers or ("1,2" if q else "1,2,4,8,15"))
    args.big_count = args.big_count or (3 if q else 48)
    args.big_mp = args.big_mp or (1.0 if q else 12.0)
    args.e2e_batch = args.e2e_batch or max(args.batches)
    args.budget = args.budget or (300.0 if q else 420.0)
    args.weights_dir = str(Path(args.weights_dir).resolve()) if args.weights_dir else ""
    args.images = args.images.resolve() if args.images else None
    return args


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def engine_specs(args: argparse.Namespace, cuda: bool) -> list[tuple[str, str]]:
    """(backend, precision) pairs to measure; eager fp32 comes first: it is the baseline."""
    if args.engines:
        specs = [tuple(s.strip().split(":", 1)) for s in args.engines.split(",") if s.strip()]
    elif cuda:
        specs = [("eager", "fp32"), ("eager", "fp16"), ("eager", "bf16"), ("inductor", "fp32"), ("inductor", "fp16")]
    else:
        specs = [("eager", "fp32"), ("eager", "bf16")]
    specs = [s for s in specs if s != ("eager", "fp32")]
    return [("eager", "fp32"), *specs]  # type: ignore[list-item]


def name_of(spec: tuple[str, str]) -> str:
    return f"{spec[0]} {spec[1]}"


# ---------------------------------------------------------------- the run's record


class Record:
    """The results so far, written to gpu.json and gpu.md after every section."""

    def __init__(self, out: Path, budget: float) -> None:
        self.out = out
        self.start = time.perf_counter()
        self.budget = budget
        self.data: dict[str, Any] = {"command": "python bench/gpu.py " + " ".join(_quote(a) for a in sys.argv[1:]),
                                     "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def section(self, name: str, need: float, fn, *a, **kw) -> Any:
        """Run one section if ``need`` seconds are left; its result or its error is recorded."""
        t0 = time.perf_counter()
        if self.left() < need:
            self.data["sections"][name] = {"skipped": f"not measured: {self.left():.0f} s of the time budget left, "
                                                      f"the section needs about {need:.0f} s"}
            self.save()
            return None
        _say(f"[{time.perf_counter() - self.start:6.1f} s] {name} ...")
        try:
            result = fn(*a, **kw)
        except Exception as e:  # one broken section must not hide the others
            result = {"error": f"{type(e).__name__}: {_first_line(e)}", "trace": traceback.format_exc()[-3000:]}
            _say(f"  {name} failed: {result['error']}")
        if isinstance(result, dict):
            result.setdefault("seconds", round(time.perf_counter() - t0, 1))
        self.data["sections"][name] = result
        self.save()
        return result

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        (self.out / "gpu.json").write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        (self.out / "gpu.md").write_text(markdown(self.data))


def _quote(a: str) -> str:
    return a if all(c.isalnum() or c in "./,=:_-" for c in a) else repr(a)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(e).__name__


# ---------------------------------------------------------------- images (no torch)


def list_images(root: Path, limit: int) -> list[Path]:
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    return paths[:limit] if limit else paths


def quick_photos(dest: Path) -> list[Path]:
    """emo's sample images at about 400 px, each also mirrored: a tiny photo set for CI."""
    from PIL import Image, ImageOps

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(SAMPLES.glob("*.jpg")):
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((400, 400))
            for k, pic in enumerate((im, ImageOps.mirror(im))):
                p = dest / f"{src.stem}-{k}.jpg"
                pic.save(p, quality=85)
                out.append(p)
    return out


def pack(src: Path, dest: Path, count: int) -> int:
    """Write the carried photo set: ``count`` photos of ``src``, evenly spread over its sorted list."""
    from PIL import Image

    paths = list_images(src, 0)
    if not paths:
        raise SystemExit(f"no images under {src}")
    dest.mkdir(parents=True, exist_ok=True)
    picked = [paths[i * len(paths) // count] for i in range(min(count, len(paths)))]
    total = 0
    for i, p in enumerate(picked):
        with Image.open(p) as im:
            im = im.convert("RGB")
            im.thumbnail((400, 400))
            out = dest / f"{i:04d}.jpg"
            im.save(out, quality=80)
            total += out.stat().st_size
    _say(f"wrote {len(picked)} photos, {total / 2**20:.1f} MiB, to {dest}")
    return 0


def _make_big(job: tuple[str, str, int, int, int]) -> int:
    """One large JPEG: a photo scaled up, with grain so it compresses to a camera's size (~3 MB at 12 MP)."""
    import numpy as np
    from PIL import Image

    src, dst, w, h, seed = job
    with Image.open(src) as im:
        im = im.convert("RGB").resize((w, h), Image.BICUBIC)
    a = np.asarray(im, dtype=np.int16)
    grain = np.random.default_rng(seed).integers(-12, 13, size=a.shape, dtype=np.int16)
    Image.fromarray(np.clip(a + grain, 0, 255).astype(np.uint8)).save(dst, quality=90)
    return os.path.getsize(dst)


def make_big_set(photos: list[Path], dest: Path, count: int, megapixels: float) -> dict[str, Any]:
    """``count`` JPEGs of ``megapixels`` (4:3) made from the photos, on every core."""
    import multiprocessing

    dest.mkdir(parents=True, exist_ok=True)
    w = int(round(math.sqrt(megapixels * 1e6 * 4 / 3)))
    h = int(round(w * 3 / 4))
    jobs = [(str(photos[i * len(photos) // count]), str(dest / f"big{i:03d}.jpg"), w, h, i) for i in range(count)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(min(count, os.cpu_count() or 1)) as pool:
        sizes = pool.map(_make_big, jobs)
    return {"count": count, "width": w, "height": h, "mean_bytes": int(statistics.mean(sizes)),
            "seconds": round(time.perf_counter() - t0, 1), "files": [j[1] for j in jobs]}


def set_summary(paths: list[Path]) -> dict[str, Any]:
    from PIL import Image

    sizes = [p.stat().st_size for p in paths]
    dims = []
    for p in paths[:: max(1, len(paths) // 50)]:
        with Image.open(p) as im:
            dims.append(max(im.size))
    return {"count": len(paths), "bytes": sum(sizes), "mean_bytes": int(statistics.mean(sizes)),
            "median_long_side": int(statistics.median(dims))}


# ---------------------------------------------------------------- the decode wall (child, no torch)


def backbone_view():
    from emo.io.decode import View
    from emo.models.registry import get

    pp = get(NETWORK).preprocess
    return View(pp.crop, pp.resize, "crop")


def decode_rate(paths: list[str], workers: int, seconds: float, min_images: int) -> dict[str, Any]:
    """Images/s of emo's decode worker processes alone, taken in order as the pipeline takes them."""
    from emo.io.decode import Decoded
    from emo.io.procpool import ProcessDecoder

    view = backbone_view()
    with ProcessDecoder((view,), 89_478_485, workers) as dec:
        window = max(2, min(dec.slots // 2, 64 * workers))
        pending: deque = deque()
        done = bad = i = 0
        t0 = time.perf_counter()
        while True:
            submitting = done + len(pending) < min_images or time.perf_counter() - t0 < seconds
            if submitting and len(pending) < window:
                pending.append(dec.submit(Path(paths[i % len(paths)]), (view,)))
                i += 1
                continue
            if not pending:
                break
            bad += not isinstance(pending.popleft().result(), Decoded)
            done += 1
        dt = time.perf_counter() - t0
    return {"workers": workers, "images": done, "failed": bad, "img_s": round(done / dt, 1)}


def decode_wall_child(spec_path: Path) -> int:
    """Child mode: decode rates for every worker count and set named in the spec file."""
    spec = json.loads(spec_path.read_text())
    out: dict[str, list] = {}
    for kind, paths in spec["sets"].items():
        out[kind] = [decode_rate(paths, w, spec["seconds"], spec["min_images"]) for w in spec["workers"]]
    spec_path.with_suffix(".out.json").write_text(json.dumps(out))
    return 0


def decode_wall(sets: dict[str, list[str]], workers: list[int], quick: bool, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="emo-gpu-wall-") as d:
        spec = Path(d) / "spec.json"
        spec.write_text(json.dumps({"sets": sets, "workers": workers, "seconds": 0.2 if quick else 1.5,
                                    "min_images": 4 if quick else 16}))
        subprocess.run([sys.executable, __file__, "--decode-wall", str(spec)], check=True, timeout=timeout)
        rates = json.loads(spec.with_suffix(".out.json").read_text())
    return {"rates": rates, "default_workers": _default_workers()}


def _default_workers() -> int:
    from emo.io.procpool import process_workers

    return process_workers(0)


# ---------------------------------------------------------------- engines (torch)


def settings_for(backend: str, precision: str, device: str, batch: int, cache: Path, weights_dir: str):
    from dataclasses import replace

    from emo.config import from_env

    base = from_env()
    return replace(base, device=device, backend=backend, precision=precision, cache_dir=str(cache),
                   batch_size=batch, weights_dir=weights_dir or base.weights_dir)


def load_engine(spec: tuple[str, str], device: str, batch: int, cache: Path, weights_dir: str):
    """The engine ``emo classify --batch-size batch`` would load (same cache key)."""
    from emo.engine import Profile, load
    from emo.models import create, get, weights_digest

    settings = settings_for(spec[0], spec[1], device, batch, cache, weights_dir)
    entry = get(NETWORK)
    return load(lambda: create(NETWORK, settings), network_id=entry.name,
                weights_sha256=weights_digest(NETWORK, settings),
                profile=Profile(entry.preprocess.crop, batch), settings=settings)


def build_child(spec_text: str, device: str, batch: int, cache: Path, weights_dir: str) -> int:
    """Child mode: build one compiled engine into the cache."""
    backend, precision = spec_text.split(":")
    t0 = time.perf_counter()
    eng = load_engine((backend, precision), device, batch, cache, weights_dir)
    print(json.dumps({"engine": spec_text, "backend": eng.backend, "built": eng.built,
                      "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
    return 0


def start_builds(specs: list[tuple[str, str]], args, device: str, cache: Path) -> list[tuple[str, subprocess.Popen, float]]:
    procs = []
    for spec in specs:
        if spec[0] == "eager":
            continue
        cmd = [sys.executable, "-X", "faulthandler", __file__, "--build", f"{spec[0]}:{spec[1]}", "--device", device,
               "--e2e-batch", str(args.e2e_batch), "--cache-dir", str(args.cache_dir), "--weights-dir", args.weights_dir]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        procs.append((name_of(spec), proc, time.perf_counter()))
    return procs


def wait_builds(procs, timeout: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    end = time.perf_counter() + timeout
    for name, proc, t0 in procs:
        try:
            stdout, stderr = proc.communicate(timeout=max(1.0, end - time.perf_counter()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)  # the compiler's own workers too
            proc.communicate()
            out[name] = {"error": f"not built within {timeout:.0f} s"}
            continue
        done = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        if proc.returncode == 0 and done:
            out[name] = json.loads(done[-1])
        else:
            why = _child_failure(stderr, proc.returncode)
            out[name] = {"error": why, "exit": proc.returncode, "stdout": stdout[-1000:], "stderr": stderr[-4000:]}
        out[name]["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def _child_failure(stderr: str, code: int) -> str:
    """The line that says why a child failed: its exception, or the signal that ended it."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("Fatal Python error", "emo.errors.", "RuntimeError", "ModelError")) or "Error:" in ln:
            return ln[:400]
    if code < 0:
        return f"ended by signal {-code} ({signal.Signals(-code).name})"
    return f"exit {code}: {lines[-1][:300] if lines else 'no message'}"


def predecode(paths: list[Path]):
    """Every photo as the backbone sees it: ``(N, S, S, 3) uint8``, decoded as emo decodes."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from emo.io.decode import decode

    view = backbone_view()
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        arrs = list(pool.map(lambda p: decode(p, (view,), 0).views[view], paths))
    return np.stack(arrs)


def host_batches(nhwc, batch: int, n: int, pinned: bool) -> list:
    """``n`` images (the set repeated) as ``(B, 3, S, S)`` uint8 host batches, as the backbone stage hands them."""
    import numpy as np
    import torch

    idx = np.arange(n) % len(nhwc)
    out = []
    for i in range(0, n, batch):
        t = torch.from_numpy(np.ascontiguousarray(nhwc[idx[i : i + batch]]))
        out.append((t.pin_memory() if pinned else t).permute(0, 3, 1, 2))
    return out


def emotions(engine, nhwc, batch: int):
    """Emotion probabilities ``(N, 7)`` and ImageNet top-1 ``(N,)`` of every photo through ``engine``."""
    import numpy as np

    from emo.models.head_file import load_head

    head = load_head(HEAD)
    embs, tops = [], []
    for x in host_batches(nhwc, batch, len(nhwc), pinned=False):
        logits, emb = engine(x)
        embs.append(emb.float().numpy())
        tops.append(logits.float().argmax(1).numpy())
    emb = np.concatenate(embs)
    probs = head.predict(np.stack([head.stack({head.feature_key("deep"): e}) for e in emb])).astype(np.float64)
    probs /= probs.sum(1, keepdims=True)
    return probs, np.concatenate(tops)


def compare(probs, tops, ref_probs, ref_tops) -> dict[str, Any]:
    import numpy as np

    return {"top1_agree_pct": round(float((probs.argmax(1) == ref_probs.argmax(1)).mean() * 100), 2),
            "max_abs_prob_diff": float(np.abs(probs - ref_probs).max()),
            "imagenet_top1_agree_pct": round(float((tops == ref_tops).mean() * 100), 2)}


def agreement(engines: dict, nhwc, cpu_ref, device_ref_name: str, batch: int) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {"images": len(nhwc), "head": HEAD, "engines": {}}
    results = {}
    for name, eng in engines.items():
        try:
            results[name] = emotions(eng, nhwc, batch)
        except Exception as e:
            out["engines"][name] = {"error": f"{type(e).__name__}: {_first_line(e)}"}
    ref = results.get(device_ref_name)
    for name, (probs, tops) in results.items():
        row: dict[str, Any] = {"vs_cpu": compare(probs, tops, *cpu_ref)}
        if ref is not None:
            row["vs_device_fp32"] = compare(probs, tops, *ref)
        row["emotion_counts"] = [int(c) for c in np.bincount(probs.argmax(1), minlength=probs.shape[1])]
        out["engines"][name] = row
    return out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed(engines: dict, nhwc, batches: list[int], quick: bool, pinned: bool) -> dict[str, Any]:
    """Images/s of each engine alone at each batch: host uint8 in, host float out, median of passes."""
    out: dict[str, Any] = {"input": "pinned host memory" if pinned else "pageable host memory", "engines": {}}
    for name, eng in engines.items():
        row = {}
        for b in batches:
            if eng.max_batch and b > eng.max_batch:
                continue
            n = len(nhwc) if quick else max(1024, 4 * b)
            xs = host_batches(nhwc, b, n, pinned)
            try:
                eng(xs[0])  # warm-up: cuDNN picks its algorithms, the allocator fills
                _sync(eng.device)
                runs = []
                for _ in range(1 if quick else 3):
                    t0 = time.perf_counter()
                    for x in xs:
                        eng(x)
                    _sync(eng.device)
                    runs.append(n / (time.perf_counter() - t0))
                row[str(b)] = {"img_s": round(statistics.median(runs), 1), "passes": [round(r, 1) for r in runs]}
            except Exception as e:
                row[str(b)] = {"error": f"{type(e).__name__}: {_first_line(e)}"}
        out["engines"][name] = row
    base = out["engines"].get("eager fp32", {})
    for name, row in out["engines"].items():
        for b, cell in row.items():
            ref = base.get(b, {}).get("img_s")
            if ref and "img_s" in cell:
                cell["vs_eager_fp32"] = round(cell["img_s"] / ref, 2)
    return out


def _timed(fn, device, reps: int) -> float:
    """Median milliseconds of ``fn`` from the host's call to the device being done."""
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(times), 3)


def _host_ms(fn, device, reps: int) -> float:
    """Median milliseconds until ``fn`` returns to the host (the device may still be busy)."""
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        _sync(device)
    return round(statistics.median(times), 3)


def transfers(eng, nhwc, batch: int) -> dict[str, Any]:
    """One batch's host-to-device copy against its compute, pageable and pinned, and the engine fed from each."""
    import torch

    dev = eng.device
    if dev.type != "cuda":
        return {"skipped": "no CUDA device: host-to-device copies are not measured"}
    reps = 20
    pageable = host_batches(nhwc, batch, batch, pinned=False)[0]
    pinned = host_batches(nhwc, batch, batch, pinned=True)[0]
    on_dev = pinned.to(dev)
    if eng.in_dtype is not None:
        on_dev = on_dev.to(eng.in_dtype)
    with torch.inference_mode():
        outs = eng.fn(on_dev)
    out_bytes = sum(o.numel() * o.element_size() for o in (outs if isinstance(outs, (tuple, list)) else (outs,)))
    mb = pageable.numel() / 1e6
    r: dict[str, Any] = {"batch": batch, "engine": f"{eng.backend} {eng.precision}", "input_mb": round(mb, 1),
                         "output_mb": round(out_bytes / 1e6, 2)}
    r["h2d_pageable_ms"] = _timed(lambda: pageable.to(dev), dev, reps)
    r["h2d_pageable_nonblocking_host_ms"] = _host_ms(lambda: pageable.to(dev, non_blocking=True), dev, reps)
    r["h2d_pinned_ms"] = _timed(lambda: pinned.to(dev, non_blocking=True), dev, reps)
    r["h2d_pinned_nonblocking_host_ms"] = _host_ms(lambda: pinned.to(dev, non_blocking=True), dev, reps)
    r["pin_copy_ms"] = _host_ms(lambda: pageable.pin_memory(), dev, reps // 2)
    with torch.inference_mode():
        r["compute_ms"] = _timed(lambda: eng.fn(on_dev), dev, reps)
        r["engine_call_pageable_ms"] = _timed(lambda: eng(pageable), dev, reps)
        r["engine_call_pinned_ms"] = _timed(lambda: eng(pinned), dev, reps)
    r["pageable_gb_s"] = round(mb / r["h2d_pageable_ms"], 1)
    r["pinned_gb_s"] = round(mb / r["h2d_pinned_ms"], 1)
    r["copy_vs_compute_pageable"] = round(r["h2d_pageable_ms"] / r["compute_ms"], 2)
    r["copy_vs_compute_pinned"] = round(r["h2d_pinned_ms"] / r["compute_ms"], 2)
    return r


# ---------------------------------------------------------------- end to end


def run_emo(paths: list[str], spec: tuple[str, str], device: str, batch: int, cache: Path, weights_dir: str,
            workers: int = 0, timeout: float = 120, threads: int = 0) -> dict[str, Any]:
    """``emo classify`` on ``paths`` (stdin) as a child process: rates from start and from its first line."""
    cmd = [sys.executable, "-m", "emo", "classify", "-q", "--device", device, "--backend", spec[0],
           "--precision", spec[1], "--batch-size", str(batch)]
    if workers:
        cmd += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMO_")}
    env.update(EMO_CACHE_DIR=str(cache), PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    if weights_dir:
        env["EMO_WEIGHTS_DIR"] = weights_dir
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryFile("w+b") as stdin:
        stdin.write("".join(f"{p}\n" for p in paths).encode())
        stdin.seek(0)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        first = None
        lines = errors = 0
        deadline = t0 + timeout
        buf = b""
        while chunk := proc.stdout.read1(1 << 20):
            now = time.perf_counter()
            buf += chunk
            *done, buf = buf.split(b"\n")
            if done and first is None:
                first, first_lines = now - t0, len(done)
            lines += len(done)
            errors += sum(b'"error"' in ln for ln in done)
            if now > deadline:
                proc.kill()
                break
        last = time.perf_counter() - t0
        proc.wait()
        err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0 or lines != len(paths):
        raise RuntimeError(f"emo classify exit {proc.returncode}, {lines}/{len(paths)} lines: {err.strip()[-400:]}")
    steady = (lines - first_lines) / (last - first) if first is not None and last > first else 0.0
    return {"images": lines, "errors": errors, "workers": workers or "default", "torch_threads": threads or "default", "total_s": round(last, 2),
            "first_line_s": round(first or 0, 2), "img_s_total": round(lines / last, 1), "img_s_steady": round(steady, 1)}


def end_to_end(sets: dict[str, list[str]], spec, device: str, batch: int, cache: Path, weights_dir: str,
               ceiling: float | None, extra_workers: int, threads: int, rec: Record) -> dict[str, Any]:
    """``emo classify`` on each set: default decode workers, ``extra_workers``, and ``threads`` torch threads."""
    out: dict[str, Any] = {"engine": name_of(spec), "batch": batch, "ceiling_img_s": ceiling, "runs": {}}
    variants = [(0, 0)] + ([(extra_workers, 0)] if extra_workers else []) + ([(0, threads)] if threads else [])
    for kind, paths in sets.items():
        for workers, nthreads in variants:
            label = f"{kind}, {'default' if not workers else workers} workers"
            label += f", {nthreads} torch threads" if nthreads else ""
            if rec.left() < 25:
                out["runs"][label] = {"skipped": "time budget"}
                continue
            try:
                r = run_emo(paths, spec, device, batch, cache, weights_dir, workers, min(120, rec.left() - 10), nthreads)
                if ceiling:
                    r["steady_vs_ceiling"] = round(r["img_s_steady"] / ceiling, 3)
                    r["total_vs_ceiling"] = round(r["img_s_total"] / ceiling, 3)
            except Exception as e:
                r = {"error": f"{type(e).__name__}: {_first_line(e)}"}
            out["runs"][label] = r
            _say(f"  e2e {label}: {r}")
    return out


# ---------------------------------------------------------------- environment


def environment(device) -> dict[str, Any]:
    import PIL
    import torch
    from PIL import features

    env: dict[str, Any] = {
        "device": str(device), "cores": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "pillow": PIL.__version__,
        "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")), "torch_threads": torch.get_num_threads(),
        "memory_gb": _mem_gb(),
    }
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except Exception as e:
        env["torchvision"] = f"unavailable ({_first_line(e)})"
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), sm=f"{p.major}.{p.minor}",
                   multiprocessors=p.multi_processor_count, cudnn=torch.backends.cudnn.version())
        try:
            env["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception as e:
            env["driver"] = f"unknown ({type(e).__name__})"
    else:
        env["gpu"] = "none (CPU run)"
    try:
        import orjson

        env["orjson"] = orjson.__version__
    except ImportError:
        env["orjson"] = "missing"
    return env


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


# ---------------------------------------------------------------- report


def markdown(data: dict[str, Any]) -> str:
    """The record as Markdown tables (gpu.md)."""
    s = data["sections"]
    L = ["# emo on a GPU machine", "", f"Command: `{data['command']}` ({data.get('elapsed_s', 0):.0f} s).", ""]
    env = s.get("environment") or {}
    if env and "error" not in env:
        L += ["| environment | |", "|---|---|"]
        for k in ("gpu", "driver", "torch", "torch_cuda", "cudnn", "torchvision", "cores", "cpu", "memory_gb",
                  "python", "pillow", "libjpeg_turbo", "orjson"):
            if k in env:
                L.append(f"| {k} | {env[k]} |")
        L.append("")
    for key in ("photos", "large"):
        if isinstance(s.get(key), dict) and "count" in s[key]:
            d = s[key]
            L.append(f"- {key}: {d['count']} JPEGs, mean {d['mean_bytes'] / 1e3:.0f} kB"
                     + (f", {d['width']}x{d['height']}" if "width" in d else f", long side ~{d.get('median_long_side')} px"))
    for name, b in (s.get("builds") or {}).items():
        if isinstance(b, dict):
            what = b.get("error") or (f"compiled in {b.get('seconds')} s" if b.get("built") else "loaded from the cache")
            L.append(f"- engine {name}: {what}")
    L.append("")
    _agreement_md(s.get("agreement"), L)
    _speed_md(s.get("speed"), L)
    _transfers_md(s.get("transfers"), L)
    _decode_md(s.get("decode_wall"), s.get("speed"), s.get("end_to_end"), L)
    _e2e_md(s.get("end_to_end"), L)
    for name, sec in s.items():
        if isinstance(sec, dict) and ("error" in sec or "skipped" in sec):
            L.append(f"- {name}: {sec.get('error') or sec.get('skipped')}")
    L.append("- TensorRT: not measured (its libraries cannot be carried to the machine).")
    return "\n".join(L) + "\n"


def _agreement_md(a, L) -> None:
    if not isinstance(a, dict) or "engines" not in a:
        return
    L += [f"## Agreement ({a['images']} photos, top-1 emotion of the {a['head']} head; goal >= {AGREEMENT_GOAL:.0f}%)", "",
          "| engine | top-1 vs device fp32 | max abs prob diff | top-1 vs CPU | max abs prob diff | ImageNet top-1 vs CPU |",
          "|---|---:|---:|---:|---:|---:|"]
    for name, r in a["engines"].items():
        if "error" in r:
            L.append(f"| {name} | {r['error']} | | | | |")
            continue
        d, c = r.get("vs_device_fp32", {}), r["vs_cpu"]
        L.append(f"| {name} | {d.get('top1_agree_pct', '-')}% | {d.get('max_abs_prob_diff', 0):.2e} | "
                 f"{c['top1_agree_pct']}% | {c['max_abs_prob_diff']:.2e} | {c['imagenet_top1_agree_pct']}% |")
    L.append("")


def _speed_md(sp, L) -> None:
    if not isinstance(sp, dict) or "engines" not in sp:
        return
    batches = sorted({int(b) for row in sp["engines"].values() for b in row}, key=int)
    L += [f"## Engine speed (img/s, median of passes; {sp['input']} in, host out; goal: best compiled >= "
          f"{SPEED_GOAL:.0f}x eager fp32)", "",
          "| engine | " + " | ".join(f"batch {b}" for b in batches) + " |", "|---|" + "---:|" * len(batches)]
    for name, row in sp["engines"].items():
        cells = []
        for b in batches:
            c = row.get(str(b), {})
            cells.append(c.get("error", "-") if "img_s" not in c else
                         f"{c['img_s']:.0f} ({c.get('vs_eager_fp32', '-')}x)")
        L.append(f"| {name} | " + " | ".join(cells) + " |")
    L.append("")


def _transfers_md(t, L) -> None:
    if not isinstance(t, dict) or "compute_ms" not in t:
        return
    L += [f"## Transfers (one batch of {t['batch']}, {t['input_mb']} MB uint8 in, {t['engine']})", "",
          "| | ms |", "|---|---:|",
          f"| host-to-device, pageable ({t['pageable_gb_s']} GB/s) | {t['h2d_pageable_ms']} |",
          f"| host-to-device, pageable, non_blocking: host blocked for | {t['h2d_pageable_nonblocking_host_ms']} |",
          f"| host-to-device, pinned ({t['pinned_gb_s']} GB/s) | {t['h2d_pinned_ms']} |",
          f"| host-to-device, pinned, non_blocking: host blocked for | {t['h2d_pinned_nonblocking_host_ms']} |",
          f"| pinning a pageable batch (a host copy) | {t['pin_copy_ms']} |",
          f"| compute, input already on the device | {t['compute_ms']} |",
          f"| engine call fed from pageable memory (copy, compute, outputs back) | {t['engine_call_pageable_ms']} |",
          f"| engine call fed from pinned memory | {t['engine_call_pinned_ms']} |", ""]


def _decode_md(w, sp, e2e, L) -> None:
    if not isinstance(w, dict) or "rates" not in w:
        return
    ceiling = e2e.get("ceiling_img_s") if isinstance(e2e, dict) else None
    kinds = list(w["rates"])
    workers = [r["workers"] for r in w["rates"][kinds[0]]]
    L += [f"## The decode wall (emo's decode processes alone, img/s; default on this machine: "
          f"{w['default_workers']} workers)", "",
          "| workers | " + " | ".join(kinds) + " |", "|---:|" + "---:|" * len(kinds)]
    for i, n in enumerate(workers):
        L.append(f"| {n} | " + " | ".join(f"{w['rates'][k][i]['img_s']:.0f}" for k in kinds) + " |")
    if ceiling:
        L.append("| engine ceiling (e2e engine) | " + " | ".join(f"{ceiling:.0f}" for _ in kinds) + " |")
    L.append("")


def _e2e_md(e, L) -> None:
    if not isinstance(e, dict) or "runs" not in e:
        return
    ceil = e.get("ceiling_img_s")
    L += [f"## End to end (`emo classify`, {e['engine']}, batch {e['batch']}; engine ceiling "
          f"{ceil:.0f} img/s)" if ceil else f"## End to end (`emo classify`, {e['engine']}, batch {e['batch']})", "",
          "| run | images | img/s start to end | img/s after first line | vs ceiling (steady) | first line s |",
          "|---|---:|---:|---:|---:|---:|"]
    for label, r in e["runs"].items():
        if "img_s_total" not in r:
            L.append(f"| {label} | {r.get('error') or r.get('skipped')} | | | | |")
            continue
        L.append(f"| {label} | {r['images']} | {r['img_s_total']:.0f} | {r['img_s_steady']:.0f} | "
                 f"{r.get('steady_vs_ceiling', '-')} | {r['first_line_s']} |")
    L.append("")


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.decode_wall:
        return decode_wall_child(args.decode_wall)
    if args.pack:
        return pack(args.pack[0], args.pack[1], args.pack_count)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as emo sets for itself before torch loads
    if args.build:
        return quick_exit(build_child(args.build, args.device, args.e2e_batch, args.cache_dir, args.weights_dir))
    tmp = Path(tempfile.mkdtemp(prefix="emo-gpu-"))
    args.cache_dir = args.cache_dir or tmp / "cache"
    try:
        code = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return quick_exit(code)


def quick_exit(code: int) -> int:
    """Leave as emo's command line does, without the interpreter's teardown: with CUDA engines
    loaded, a teardown that fails would turn a finished run into a failed one."""
    import atexit

    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(Exception):  # removes the folders the engines were unpacked into
        atexit._run_exitfuncs()
    os._exit(code)


def run(args: argparse.Namespace, tmp: Path) -> int:
    rec = Record(args.out, args.budget)
    device = resolve_without_torch(args.device)
    cuda = device.startswith("cuda")
    specs = engine_specs(args, cuda)
    builds = start_builds(specs, args, device, args.cache_dir)

    photos = list_images(args.images, args.limit) if args.images else quick_photos(tmp / "photos")
    if args.quick and args.images:
        photos = photos[:16]
    if not photos:
        raise SystemExit(f"no images under {args.images}")
    rec.data["sections"]["photos"] = set_summary(photos)
    big = rec.section("large", 10, make_big_set, photos, tmp / "large", args.big_count, args.big_mp)
    big_paths = big.pop("files", []) if isinstance(big, dict) else []  # temporary paths: not part of the record
    build_report = wait_builds(builds, max(10.0, rec.left() - 150)) if builds else {}
    rec.data["sections"]["builds"] = build_report

    e2e_n = args.e2e_images or (16 if args.quick else max(4000, 10 * len(photos)))
    sets = {"photos": [str(p) for p in photos]}
    if big_paths:
        sets[f"{big['width'] * big['height'] / 1e6:.0f} MP"] = big_paths
    skip = set(filter(None, args.skip.split(",")))
    if "decode_wall" not in skip:
        rec.section("decode_wall", 15 if args.quick else 60, decode_wall, sets, args.workers, args.quick,
                    max(30.0, rec.left() - 100))

    import torch  # noqa: F401  (only now: the decode wall's workers were forked without it)

    from emo.engine import resolve_device

    dev = resolve_device(device)
    rec.section("environment", 1, environment, dev)
    nhwc = predecode(photos)
    cpu_eng = load_engine(("eager", "fp32"), "cpu", args.e2e_batch, args.cache_dir, args.weights_dir)
    cpu_ref = emotions(cpu_eng, nhwc, args.e2e_batch)
    engines = {"eager fp32": cpu_eng} if not cuda else {}  # on a CPU run the reference is the baseline
    del cpu_eng
    for spec in specs:
        b = build_report.get(name_of(spec), {})
        if "error" in b or name_of(spec) in engines:
            continue
        try:
            engines[name_of(spec)] = load_engine(spec, device, args.e2e_batch, args.cache_dir, args.weights_dir)
        except Exception as e:
            build_report.setdefault(name_of(spec), {})["error"] = f"{type(e).__name__}: {_first_line(e)}"
    rec.section("agreement", 5, agreement, engines, nhwc, cpu_ref, "eager fp32", args.e2e_batch)
    sp = rec.section("speed", 20 if not args.quick else 2, speed, engines, nhwc, args.batches, args.quick, cuda)
    best = best_engine(sp, args.e2e_batch)
    if best in engines and "transfers" not in skip:
        rec.section("transfers", 5, transfers, engines[best], nhwc, args.e2e_batch)
    ceiling = (sp or {}).get("engines", {}).get(best, {}).get(str(args.e2e_batch), {}).get("img_s") if sp else None
    del engines
    e2e_sets = {k: [v[i % len(v)] for i in range(e2e_n if k == "photos" else max(8, e2e_n // 2))]
                for k, v in sets.items()}
    spec = tuple(best.split(" ")) if best else ("eager", "fp32")
    extra = max(args.workers) if max(args.workers) != _default_workers() and not args.quick else 0
    if "end_to_end" not in skip:
        rec.section("end_to_end", 30 if not args.quick else 5, end_to_end, e2e_sets, spec, device, args.e2e_batch,
                    args.cache_dir, args.weights_dir, ceiling, extra, args.e2e_threads, rec)
    rec.data["best_engine"] = best
    rec.save()
    _say(f"wrote {args.out / 'gpu.json'} and {args.out / 'gpu.md'} in {time.perf_counter() - rec.start:.0f} s")
    return 0


def resolve_without_torch(spec: str) -> str:
    """The device ``spec`` names, asked of a child process: the decode wall forks before torch loads here."""
    if spec == "cpu":
        return spec
    probe = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                            "from emo.engine.device import resolve_device as r; print(r(sys.argv[2]))",
                            str(REPO), spec], capture_output=True, text=True)
    if probe.returncode != 0:
        lines = probe.stderr.strip().splitlines()
        raise SystemExit(f"--device {spec}: {lines[-1] if lines else 'unusable'}")
    return probe.stdout.strip()


def best_engine(sp: dict | None, batch: int) -> str:
    """The fastest engine at ``batch`` (a compiled one preferred when one ran); eager fp32 if none."""
    if not isinstance(sp, dict) or "engines" not in sp:
        return "eager fp32"
    rates = {n: row.get(str(batch), {}).get("img_s", 0) for n, row in sp["engines"].items()}
    return max(rates, key=rates.get) if rates and max(rates.values()) > 0 else "eager fp32"


if __name__ == "__main__":
    sys.exit(main())
