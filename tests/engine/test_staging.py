"""Engine.stage: the host batch an engine is fed, pinned and reused on CUDA, a plain stack elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emo.engine import Engine, Profile


def _views(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(n)]


def _engine(device: str) -> Engine:
    return Engine(fn=lambda x: (x.float().mean((1, 2, 3)),), backend="eager", device=torch.device(device),
                  precision="fp32", profile=Profile(8, 4))


def test_cpu_stage_is_the_nchw_view_of_the_stacked_pixels():
    views = _views(3)
    x = _engine("cpu").stage(views)
    assert x.shape == (3, 3, 8, 8) and x.dtype == torch.uint8
    assert torch.equal(x.permute(0, 2, 3, 1), torch.from_numpy(np.stack(views)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_stage_pins_once_and_results_match_a_pageable_batch():
    eng = _engine("cuda")
    a, b = _views(4, 1), _views(2, 2)
    xa = eng.stage(a)
    assert xa.is_pinned()
    want_a = eng(torch.from_numpy(np.stack(a)).permute(0, 3, 1, 2))[0]
    assert torch.equal(eng(xa)[0], want_a)
    buf = eng._staging
    xb = eng.stage(b)  # a shorter batch reuses the buffer
    assert eng._staging is buf and xb.shape[0] == 2
    assert torch.equal(xb.permute(0, 2, 3, 1), torch.from_numpy(np.stack(b)))
