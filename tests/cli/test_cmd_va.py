"""``emo va`` end to end with a va head fitted on the tiny network."""

from __future__ import annotations

import orjson

from tests.cli.test_cmd_fit import FAST, _feature_records, _write
from tests.cli.test_cmd_models import emo
from tests.conftest import make_image


def test_va_on_images_and_on_feature_records(monkeypatch, tiny_backbone, tmp_path):
    data = _write(tmp_path, _feature_records())
    head = str(tmp_path / "va.head")
    assert emo(monkeypatch, "fit", "--task", "va", *FAST, str(data), "-o", head, "-q").code == 0
    img = str(make_image(tmp_path / "a.png"))
    r = emo(monkeypatch, "va", "--head", head, "--backbone", "tiny_test", img)
    assert r.code == 0, r.err
    (rec,) = r.records()
    assert set(rec) == {"path", "va"} and all(1 <= v <= 9 for v in rec["va"].values())
    lines = b"".join(orjson.dumps(x) + b"\n" for x in _feature_records(4))
    r = emo(monkeypatch, "va", "--head", head, "--backbone", "tiny_test", input=lines)
    assert r.code == 0, r.err
    s = emo(monkeypatch, "score", "--task", "va", input=r.out)
    res = orjson.loads(s.out)["va"]
    assert res["counts"]["scored"] == 4 and res["valence"]["n"] == 4 and res["valence"]["mse"] >= 0
