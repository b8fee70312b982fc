#!/usr/bin/env python
"""Throughput of emo on a folder of images, against a naive loop, a DataLoader, and the engine alone.

Every figure comes from one run, side by side (docs/performance.md says what each measures):

1. naive: Pillow open, the torchvision weights' transforms, the eager model one image at a time;
2. loader: a torch DataLoader (2 workers, batch 32) feeding the eager model;
3. ceiling: the engine ``--backend`` picks, alone, on pre-decoded uint8 tensors;
4. emo: ``emo classify`` end to end as a subprocess, from process start to its last line,
   run twice: the first run may compile the engine (empty cache), the second loads it; the
   second's time to its first line is the start-up cost of a cached run;
5. memory: peak RSS of emo on the first ``--memory-base`` images (default: a tenth of the list)
   and on those repeated ``--scale`` times (10x the input, the same size as the full list).

On CUDA with torch-tensorrt installed it also compares fp16 TensorRT with fp32 eager
(throughput and top-1 agreement on the same images).

    python bench/throughput.py                 # full run, writes the Throughput section of RESULTS.md
    python bench/throughput.py --limit 200 --scale 3 --no-write   # a quick look
    python bench/throughput.py --check         # also runs the slow engine test (pytest -m slow)
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "RESULTS.md"
SECTION = "## Throughput"


def image_list(root: Path, limit: int) -> list[Path]:
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return paths[:limit] if limit else paths


def torchvision_model(network: str):
    """The torchvision network with emo's verified weights file, and its weights' eval transforms."""
    import torch
    import torchvision

    from emo.config import from_env
    from emo.models import get
    from emo.models.weights import load_state_dict, resolve

    entry = get(network)
    path, _ = resolve(entry.weights, from_env(), fetch=False)
    model = torchvision.models.get_model(network, weights=None)
    model.load_state_dict(load_state_dict(path))
    transforms = torchvision.models.get_model_weights(network).DEFAULT.transforms()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the device emo's auto picks
    return model.eval().to(device), transforms, torch, device


def bench_naive(paths: list[Path], network: str) -> float:
    """Images per second of the textbook loop: one image at a time, eager."""
    from PIL import Image

    model, tf, torch, device = torchvision_model(network)
    start = time.perf_counter()
    with torch.inference_mode():
        for p in paths:
            with Image.open(p) as img:
                x = tf(img.convert("RGB"))
            model(x.unsqueeze(0).to(device)).cpu()
    return len(paths) / (time.perf_counter() - start)


class _Folder:
    """A map-style dataset: path -> transformed float tensor (what a DataLoader tutorial writes)."""

    def __init__(self, paths: list[Path], tf) -> None:
        self.paths, self.tf = paths, tf

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.tf(img.convert("RGB"))


def bench_loader(paths: list[Path], network: str, batch: int, workers: int) -> float:
    """Images per second of a DataLoader (``workers`` processes, ``batch``) feeding the eager model."""
    from torch.utils.data import DataLoader

    model, tf, torch, device = torchvision_model(network)
    start = time.perf_counter()
    loader = DataLoader(_Folder(paths, tf), batch_size=batch, num_workers=workers)
    with torch.inference_mode():
        for x in loader:
            model(x.to(device)).cpu()
    return len(paths) / (time.perf_counter() - start)


def predecode(paths: list[Path], network: str):
    """All images as one ``(N, 3, S, S) uint8`` tensor, decoded the way emo decodes them."""
    import numpy as np
    import torch

    from emo.io.decode import View, decode
    from emo.models import get

    pp = get(network).preprocess
    view = View(pp.crop, pp.resize, "crop")
    arr = np.stack([decode(p, (view,), 0).views[view] for p in paths])
    return torch.from_numpy(arr).permute(0, 3, 1, 2)


def load_engine(network: str, batch: int, backend: str, precision: str, device: str, cache: Path):
    from dataclasses import replace

    from emo.config import from_env
    from emo.engine import Profile, load
    from emo.models import create, get

    settings = replace(from_env(), device=device, backend=backend, precision=precision, cache_dir=str(cache),
                       batch_size=batch)
    model = create(network, settings)
    entry = get(network)
    t0 = time.perf_counter()
    eng = load(model, network_id=entry.name, weights_sha256=model.weights_sha256,
               profile=Profile(entry.preprocess.crop, batch), settings=settings)
    return eng, model, time.perf_counter() - t0


def bench_ceiling(x, eng, batch: int, repeat: int = 1) -> list[float]:
    """Images per second of the engine alone on pre-decoded batches (one warm-up batch first),
    one figure per pass over ``x``."""
    eng(x[:batch])
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(0, x.shape[0], batch):
            eng(x[i : i + batch])
        runs.append(x.shape[0] / (time.perf_counter() - start))
    return runs


def emo_command(args) -> list[str]:
    exe = Path(sys.executable).with_name("emo")
    head = [str(exe)] if exe.exists() else [sys.executable, "-m", "emo"]
    return head + args.command.split() + ["-q", "--batch-size", str(args.batch_size), "--backbone", args.network,
                                          "--backend", args.backend, "--precision", args.precision]


def run_emo(cmd: list[str], paths: list[Path], env: dict[str, str], stop_after_first: bool = False,
            mark: int = 0, half: bool = False) -> dict:
    """Run emo with ``paths`` on stdin; times from process start to its first and last line, peak RSS;
    with ``half``, also the rate over the second half of the output (start-up and the first fill
    of the decode ring left out)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("".join(f"{p}\n" for p in paths))
        listing = f.name
    try:
        with open(listing, "rb") as stdin:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            first = None
            lines = 0
            hwm = 0
            kids: dict[int, int] = {}  # decode worker pid -> its peak (kB)
            at_mark = 0  # emo's own peak once ``mark`` lines were out (growth within one run)
            at_half = None
            while chunk := proc.stdout.read1(1 << 20):
                hwm = max(hwm, _vm_hwm_kb(proc.pid))
                if mark and not at_mark and lines >= mark:
                    at_mark = hwm
                for kid in _children(proc.pid):
                    kids[kid] = max(kids.get(kid, 0), _vm_hwm_kb(kid))
                n = chunk.count(b"\n")
                if n and first is None:
                    first = time.perf_counter() - start
                    if stop_after_first:
                        proc.terminate()
                lines += n
                if half and at_half is None and lines >= len(paths) // 2:
                    at_half = (time.perf_counter() - start, lines)
            last = time.perf_counter() - start
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            err = proc.stderr.read().decode(errors="replace")
    finally:
        os.unlink(listing)
    if not stop_after_first and (proc.returncode != 0 or lines != len(paths)):
        raise SystemExit(f"emo failed (exit {proc.returncode}, {lines}/{len(paths)} lines):\n{err[-2000:]}")
    # ru_maxrss of a child counts this (large) process's RSS at fork; VmHWM is emo's own peak.
    # The decode workers' peaks are added to emo's own: their shared ring is counted twice, so
    # the total is an upper bound on what the run holds.
    own = (hwm or usage.ru_maxrss) / 1024
    workers = sum(kids.values()) / 1024
    second = (lines - at_half[1]) / (last - at_half[0]) if at_half and last > at_half[0] else None
    return {"first_s": first, "total_s": last, "lines": lines, "ips": lines / last, "second_half_ips": second,
            "own_rss_mb": own,
            "own_at_mark_mb": at_mark / 1024,
            "workers_rss_mb": workers, "workers": len(kids), "peak_rss_mb": own + workers, "stderr": err}


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (emo's decode workers), from /proc."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def _vm_hwm_kb(pid: int) -> int:
    """Peak resident memory (kB) of a running process, from /proc (0 where there is none)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cuda_trt_compare(x, args, cache: Path) -> str:
    """fp16 TensorRT against fp32 eager on CUDA: throughput and top-1 agreement."""
    import torch

    from emo.engine import tensorrt

    if not torch.cuda.is_available():
        return "no CUDA device here: the fp16 TensorRT comparison was not run."
    if not tensorrt.available():
        return "CUDA is here but torch-tensorrt is not installed: the fp16 TensorRT comparison was not run."
    trt, _, trt_load = load_engine(args.network, args.batch_size, "tensorrt", "fp16", "cuda", cache)
    eager, _, _ = load_engine(args.network, args.batch_size, "eager", "fp32", "cuda", cache)

    def top1_and_ips(eng):
        eng(x[: args.batch_size])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        tops = [eng(x[i : i + args.batch_size])[0].argmax(1) for i in range(0, x.shape[0], args.batch_size)]
        return torch.cat(tops), x.shape[0] / (time.perf_counter() - t0)

    t_top, t_ips = top1_and_ips(trt)
    e_top, e_ips = top1_and_ips(eager)
    agree = (t_top == e_top).float().mean().item() * 100
    return (f"CUDA ({torch.cuda.get_device_name()}): TensorRT fp16 {t_ips:.0f} img/s, eager fp32 {e_ips:.0f} img/s "
            f"({t_ips / e_ips:.1f}x); top-1 agreement {agree:.2f}% (target >= 99%); engine ready in {trt_load:.1f} s.")


def cpu_name() -> str:
    """The processor's model name, in words (the architecture where the system does not say)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def write_section(text: str) -> None:
    """Replace this script's section of RESULTS.md (other sections are left as they are)."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    start = old.find(SECTION + "\n")
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = re.search(r"^## ", old[start + len(SECTION):], flags=re.M)
        end = start + len(SECTION) + nxt.start() if nxt else len(old)
        new = old[:start] + text + ("\n" + old[end:] if nxt else "")
    RESULTS.write_text(new.rstrip("\n") + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True, help="Folder of images (walked), e.g. a data set's images/.")
    ap.add_argument("--limit", type=int, default=0, help="Use only the first N images (quick runs).")
    ap.add_argument("--network", default="mobilenet_v2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for the loader baseline.")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--command", default="classify", help="emo subcommand and its options, e.g. 'features --set object,deep'.")
    ap.add_argument("--scale", type=int, default=10, help="Memory check: the input repeated this many times (0: skip).")
    ap.add_argument("--memory-base", type=int, default=-1,
                    help="Memory check: images in the small run [default -1: the whole list; 0: the list's size / "
                         "--scale]. The decode ring (160 MiB) fills over the first ~1,100 images, so a smaller base "
                         "measures that fill, not growth with the input.")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="Engine cache for this run [default: a fresh temporary folder, so the first emo run compiles].")
    ap.add_argument("--skip", default="", help="Comma-separated figures to skip: naive,loader,ceiling,emo.")
    ap.add_argument("--repeat", type=int, default=3,
                    help="Runs of emo (cached engine) and passes of the ceiling; the median of each is reported.")
    ap.add_argument("--check", action="store_true", help="Also run the slow engine test (pytest -m slow tests/engine).")
    ap.add_argument("--no-write", action="store_true", help="Print the section; do not touch RESULTS.md.")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    # Every figure runs under the OpenMP wait policy emo sets for itself, before torch loads; the
    # heap setting (emo.engine.host) only from the ceiling on: the baselines are what a user writes.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    paths = image_list(args.images, args.limit)
    if not paths:
        raise SystemExit(f"no images under {args.images}")
    fresh = args.cache_dir is None
    cache = Path(tempfile.mkdtemp(prefix="emo-bench-")) if fresh else args.cache_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMO_")}
    env["EMO_CACHE_DIR"] = str(cache)
    load_start = loadavg()
    out: dict[str, object] = {}
    print(f"{len(paths)} images, {args.network}, batch {args.batch_size}, torch threads {torch.get_num_threads()}, "
          f"load {load_start}", file=sys.stderr)
    try:
        cmd = emo_command(args)
        if "emo" not in skip:
            # First: cold cache, so this run compiles; the second is the figure and the start-up check.
            out["emo_cold"] = run_emo(cmd, paths, env)
            print(f"emo (cold cache) {out['emo_cold']['ips']:.1f} img/s, first line {out['emo_cold']['first_s']:.1f} s",
                  file=sys.stderr)
            runs = []
            for _ in range(args.repeat):
                runs.append(run_emo(cmd, paths, env))
                print(f"emo {runs[-1]['ips']:.1f} img/s, first line {runs[-1]['first_s']:.2f} s, "
                      f"peak {runs[-1]['own_rss_mb']:.0f} MB + workers {runs[-1]['workers_rss_mb']:.0f} MB",
                      file=sys.stderr)
            out["emo"] = sorted(runs, key=lambda r: r["ips"])[len(runs) // 2]  # the median run
            out["emo_runs"] = [r["ips"] for r in runs]
            out["emo_peaks"] = [r["peak_rss_mb"] for r in runs]
        if "loader" not in skip:
            out["loader"] = bench_loader(paths, args.network, args.batch_size, args.workers)
            print(f"loader {out['loader']:.1f} img/s", file=sys.stderr)
        if "naive" not in skip:
            out["naive"] = bench_naive(paths, args.network)
            print(f"naive {out['naive']:.1f} img/s", file=sys.stderr)
        from emo.engine.host import tune_process

        out["heap_tuned"] = tune_process()
        if "loader" not in skip and out["heap_tuned"]:
            out["loader_tuned"] = bench_loader(paths, args.network, args.batch_size, args.workers)
            print(f"loader, emo's heap setting {out['loader_tuned']:.1f} img/s", file=sys.stderr)
        if "ceiling" not in skip:
            eng, _, t_load = load_engine(args.network, args.batch_size, args.backend, args.precision, "auto", cache)
            x = predecode(paths, args.network)
            out["ceiling_runs"] = bench_ceiling(x, eng, args.batch_size, args.repeat)
            out["ceiling"] = statistics.median(out["ceiling_runs"])
            out["engine"] = f"{eng.backend} on {eng.device} ({eng.precision})"
            out["engine_load_s"] = t_load
            print(f"ceiling {out['ceiling']:.1f} img/s ({out['engine']})", file=sys.stderr)
            out["cuda"] = cuda_trt_compare(x, args, cache)
            del x
        if "emo" not in skip and args.scale > 1:
            base = paths if args.memory_base < 0 else paths[: args.memory_base or max(1, len(paths) // args.scale)]
            out["emo_small"] = run_emo(cmd, base, env)
            out["emo_big"] = run_emo(cmd, base * args.scale, env, mark=len(base))
            tenth = paths[: max(1, len(paths) // args.scale)]
            if len(tenth) < len(base):  # for the record: a run shorter than the ring's fill
                out["emo_tenth"] = run_emo(cmd, tenth, env)
            print(f"emo x{args.scale}: {out['emo_big']['ips']:.1f} img/s, peak {out['emo_big']['peak_rss_mb']:.0f} MB",
                  file=sys.stderr)
        if args.check:
            tenv = {**env, "EMO_TEST_ENGINE_CACHE": str(cache)}
            rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-m", "slow", "tests/engine"], cwd=REPO, env=tenv)
            out["check"] = "passed" if rc == 0 else f"FAILED (exit {rc})"
    finally:
        if fresh:
            shutil.rmtree(cache, ignore_errors=True)
    text = report(args, paths, out, load_start, loadavg())
    print(text)
    if not args.no_write:
        write_section(text)
        print(f"wrote {SECTION!r} in {RESULTS}", file=sys.stderr)
    return 0


NOTES = """- Every figure runs with OMP_WAIT_POLICY=PASSIVE, which emo sets for itself before torch loads:
  on 2 busy cores, OpenMP threads spinning at their barriers doubled the engine's CPU time per
  image. emo's first batch is at most 8 images, so its first line does not wait for a full batch.
- emo also tells glibc to keep freed memory and to serve large blocks from its heap
  (`emo/engine/host.py`; `EMO_HEAP=system` turns it off). By default every engine call maps its
  activation buffers afresh and page-faults them in: about 40% of the engine's CPU time was
  kernel time, and the engine alone ran at about half the speed. The ceiling is measured with
  the setting, as emo runs; the naive and loader baselines without it, as a user would run them
  (the extra loader row shows what the setting alone does for them).
- Start-up of a cached run is mostly `import torch` (1.1 to 1.6 s here): the network is not
  built when its engine is in the cache (the key needs only the weights file's digest), so
  torchvision and torch._dynamo are not imported; the engine loads in about 0.1 s.
- emo decodes in a worker process forked before torch loads, into a 160 MiB ring of shared
  memory (`emo/io/procpool.py`): it decodes the first ~1,000 images while the main process
  imports torch and loads the engine, then runs beside the engine without sharing its GIL. After
  its last line emo flushes and leaves without the interpreter's teardown (0.4 s with torch loaded).
- Peak memory is VmHWM read from /proc while emo runs, for emo and for each decode worker,
  added up (a child's ru_maxrss would count this script's memory at fork time). The ring counts
  once: emo drops each slot's pages from its own page tables after copying the images out.
  About 0.5 GB is torch's CUDA build mapped at import, on this CPU-only machine too."""


def report(args, paths, out, load_start: str, load_end: str) -> str:
    import torch

    argv = " ".join(a if re.fullmatch(r"[\w./,=:-]+", a) else repr(a) for a in sys.argv[1:])
    rows = []

    def ratio(a, b):
        return f"{a / b:.2f}x" if isinstance(a, float) and isinstance(b, float) and b else "-"

    emo = out.get("emo")
    emo_ips = emo["ips"] if emo else None
    if "naive" in out:
        rows.append(("naive: Pillow + weights' transforms + eager, 1 image at a time", out["naive"]))
    if "loader" in out:
        rows.append((f"loader: DataLoader, {args.workers} workers, batch {args.batch_size}, eager", out["loader"]))
    if "loader_tuned" in out:
        rows.append(("loader as above, in a process with emo's heap setting (not a baseline; see below)",
                     out["loader_tuned"]))
    if "ceiling" in out:
        rows.append((f"ceiling: engine alone ({out['engine']}) on pre-decoded tensors", out["ceiling"]))
    if emo:
        rows.append((f"emo: `emo {args.command}` end to end, process start to last line", emo_ips))
    lines = [
        SECTION,
        "",
        f"Command: `python bench/throughput.py{' ' + argv if argv else ''}` "
        f"({len(paths)} images of {args.images.name}/, {args.network}, batch {args.batch_size}, "
        f"{os.cpu_count()} cores: {cpu_name()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads). Load average (1/5/15 min) at start {load_start}, at end {load_end}: "
        "figures move with the machine's load.",
        "",
        "| | img/s | vs loader | vs ceiling |",
        "|---|---:|---:|---:|",
    ]
    for name, ips in rows:
        lines.append(f"| {name} | {ips:.1f} | {ratio(ips, out.get('loader'))} | {ratio(ips, out.get('ceiling'))} |")
    lines.append("")
    if emo:
        cold = out.get("emo_cold")
        lines.append(f"- Targets: emo >= 2x loader ({ratio(emo_ips, out.get('loader'))}), >= 0.75x ceiling "
                     f"({ratio(emo_ips, out.get('ceiling'))}).")
        if len(out.get("emo_runs", [])) > 1 or len(out.get("ceiling_runs", [])) > 1:
            fmt = lambda xs: ", ".join(f"{v:.1f}" for v in xs)  # noqa: E731
            lines.append(f"- emo and the ceiling are medians: emo runs {fmt(out.get('emo_runs', []))} img/s "
                         f"(cached engine, process start to end of output); ceiling passes "
                         f"{fmt(out.get('ceiling_runs', []))} img/s.")
        if cold:
            lines.append(f"- Start-up: first run with an empty cache reached its first line in {cold['first_s']:.1f} s "
                         f"(compiling the engine; {cold['ips']:.1f} img/s overall); the second run, engine loaded "
                         f"from the cache, in {emo['first_s']:.2f} s (target <= 3 s).")
        small, big = out.get("emo_small"), out.get("emo_big")
        if big:
            # Runs on the same list differ by up to ~10% (where glibc's heap, which keeps what it
            # frees, happens to fragment), so the 1x figure is the median of every run on the list.
            peaks = [small["peak_rss_mb"]] + (out.get("emo_peaks", []) if small["lines"] == len(paths) else [])
            ref = statistics.median(peaks)
            growth = (big["peak_rss_mb"] / ref - 1) * 100
            spread = f" (median of {len(peaks)} runs, {min(peaks):.0f} to {max(peaks):.0f} MB)" if len(peaks) > 1 else ""
            lines.append(f"- Memory: peak RSS {ref:.0f} MB on {small['lines']} images{spread}, "
                         f"{big['peak_rss_mb']:.0f} MB on the same list repeated {args.scale}x ({big['lines']} images): "
                         f"{growth:+.1f}% (target within 10%). The main run's {emo['peak_rss_mb']:.0f} MB is "
                         f"{emo['own_rss_mb']:.0f} MB emo itself and {emo['workers_rss_mb']:.0f} MB its "
                         f"{emo['workers']} decode worker(s).")
        if big and big.get("own_at_mark_mb"):
            inner = (big["own_rss_mb"] / big["own_at_mark_mb"] - 1) * 100
            lines.append(f"- Within the {args.scale}x run itself: emo's own peak was {big['own_at_mark_mb']:.0f} MB "
                         f"once {small['lines']} records were out and {big['own_rss_mb']:.0f} MB at the end "
                         f"({inner:+.1f}%). Runs differ from each other by up to ~10% in where glibc's heap "
                         "(which keeps what it frees) settles during start-up; within a run it stays put.")
        if out.get("emo_tenth"):
            t = out["emo_tenth"]
            lines.append(f"- On {t['lines']} images the peak is {t['peak_rss_mb']:.0f} MB: the decode ring fills over "
                         "the first ~1,100 images (up to 160 MiB), then memory stays where it is however long the "
                         "input, which is what the check above measures.")
    if "engine_load_s" in out:
        lines.append(f"- Engine loaded from the cache in {out['engine_load_s']:.2f} s (in the bench process).")
    if "cuda" in out:
        lines.append(f"- {out['cuda']}")
    lines.append(NOTES)
    if "check" in out:
        lines.append(f"- `pytest -m slow tests/engine` (real-network inductor == eager within 1e-4): {out['check']}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
