"""``emo features --set color,lbp,gist,object,deep`` on the sample photos: every group, its documented dims."""

from __future__ import annotations

import numpy as np
import pytest

from emo.features import HANDCRAFTED_DIMS
from emo.models import get
from emo.models.weights import locate
from emo.config import DEFAULTS
from tests.cli.test_cmd_models import emo
from tests.conftest import SAMPLES


def test_all_default_groups_on_samples(monkeypatch):
    if locate(get("mobilenet_v2").weights, DEFAULTS) is None:
        pytest.skip("mobilenet_v2 weights are not installed here")
    paths = [str(SAMPLES / "cat.jpg"), str(SAMPLES / "coffee.jpg")]
    r = emo(monkeypatch, "features", "--set", "color,lbp,gist,object,deep", *paths)
    assert r.code == 0, r.err
    recs = r.records()
    assert [rec["path"] for rec in recs] == paths
    dims = {**HANDCRAFTED_DIMS, "object": 1000, "deep": get("mobilenet_v2").embed_dim}
    assert dims == {"color": 22, "lbp": 59, "gist": 512, "object": 1000, "deep": 1280}
    for rec in recs:
        f = rec["features"]
        assert {g: len(f[g]) for g in dims} == dims
        assert all(np.isfinite(f[g]).all() for g in dims)
        assert sum(f["lbp"]) == pytest.approx(1.0, abs=1e-5)
        assert sum(f["color"][8:19]) == pytest.approx(1.0, abs=1e-5)  # colour-name shares
        assert len(f["object_top"]) == 5
    assert recs[0]["features"]["gist"] != recs[1]["features"]["gist"]
    assert 281 <= int(np.argmax(recs[0]["features"]["object"])) <= 285  # a cat class
