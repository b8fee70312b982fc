"""The GPU benchmark's CPU path (``bench/gpu.py --device cpu --quick``) runs end to end and reports real figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMO_")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--device", "cpu", "--quick", "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "gpu.json").read_text()), (out / "gpu.md").read_text()


def test_every_section_ran(quick_run):
    data, _ = quick_run
    for name in ("environment", "agreement", "speed", "decode_wall", "end_to_end"):
        sec = data["sections"][name]
        assert "error" not in sec and "skipped" not in sec, (name, sec)
    assert data["sections"]["environment"]["cores"] == os.cpu_count()
    assert "skipped" in data["sections"]["transfers"]  # no CUDA device: said so, not faked


def test_agreement_compares_real_outputs(quick_run):
    data, _ = quick_run
    rows = data["sections"]["agreement"]["engines"]
    assert rows["eager fp32"]["vs_cpu"] == {"top1_agree_pct": 100.0, "max_abs_prob_diff": 0.0,
                                            "imagenet_top1_agree_pct": 100.0}
    bf16 = rows["eager bf16"]["vs_cpu"]
    assert 0 < bf16["max_abs_prob_diff"] < 0.5  # bf16 really ran: close to fp32, not identical
    assert sum(rows["eager bf16"]["emotion_counts"]) == data["sections"]["agreement"]["images"] == 10


def test_speed_decode_and_end_to_end_figures(quick_run):
    data, md = quick_run
    s = data["sections"]
    for row in s["speed"]["engines"].values():
        assert set(row) == {"2", "4"} and all(cell["img_s"] > 0 for cell in row.values())
    assert s["speed"]["engines"]["eager fp32"]["2"]["vs_eager_fp32"] == 1.0
    rates = s["decode_wall"]["rates"]
    assert set(rates) == {"photos", "1 MP"}
    assert [r["workers"] for r in rates["photos"]] == [1, 2]
    assert all(r["img_s"] > 0 and r["failed"] == 0 for rs in rates.values() for r in rs)
    runs = s["end_to_end"]["runs"]
    assert runs["photos, default workers"]["images"] == 16 and runs["photos, default workers"]["errors"] == 0
    assert runs["1 MP, default workers"]["images"] == 8
    assert s["large"]["width"] * s["large"]["height"] == pytest.approx(1e6, rel=0.01)
    for title in ("## Agreement", "## Engine speed", "## The decode wall", "## End to end", "TensorRT: not measured"):
        assert title in md
