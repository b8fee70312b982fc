"""Which conventions make the ported EfficientNet-Lite0 weights work: padding, BN epsilon, input scaling.

Without ImageNet labels at hand, each variant is scored by agreement with MobileNetV2's top-1 on
160 Emotion6 images (MobileNetV2's object probabilities from ``--features``, the output of
``emo features --set object,deep`` over the same records, or computed when it is not given).
The right conventions agree most.

Usage: nice -n 10 .venv/bin/python bench/lite_conventions.py DATA [--features FEATURES.jsonl]
(DATA: a folder holding train.jsonl and the pictures it names.)
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import orjson
import torch

import emo.models.efficientnet_lite as L
from emo.io.decode import View, decode
from emo.models import create


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="Folder holding train.jsonl and the pictures it names.")
    ap.add_argument("--features", type=Path, default=None, help="emo features --set object,deep output for those records.")
    a = ap.parse_args()
    root = a.data
    recs = [orjson.loads(line) for line in open(root / "train.jsonl", "rb")][::8][:160]
    view = View(224, 256, "crop")
    x = torch.from_numpy(np.stack([decode(root / r["path"], (view,), 0).views[view] for r in recs])).permute(0, 3, 1, 2)

    def predict(model):
        with torch.inference_mode():
            return torch.cat([torch.softmax(model(x[i:i + 40])[0], 1) for i in range(0, len(x), 40)])

    if a.features is not None:
        obj = {r["path"]: r["features"]["object"] for r in map(orjson.loads, open(a.features, "rb"))}
        ref = torch.tensor(np.array([obj[r["path"]] for r in recs]))
    else:
        ref = predict(create("mobilenet_v2"))
    ref1, ref5 = ref.argmax(1), ref.topk(5, 1).indices
    symmetric = lambda self, t: torch.nn.functional.pad(t, [self.kernel // 2] * 4)  # noqa: E731
    tf_same = L.TFSamePad.forward
    print("| padding | BN eps | input | top-1 = MobileNetV2 top-1 | top-1 in MobileNetV2 top-5 |")
    print("|---|---|---|---|---|")
    for pad, eps, (mean, std, what) in itertools.product(
        ("TF SAME", "symmetric"), (1e-3, 1e-5), ((127 / 255, 128 / 255, "(x-127)/128"), (0.485, 0.229, "ImageNet mean/std"))
    ):
        L.BN_EPS = eps
        L.TFSamePad.forward = tf_same if pad == "TF SAME" else symmetric
        model = create("efficientnet_lite0")
        model.mean.fill_(mean * 255)
        model.inv_std.fill_(1 / (std * 255))
        top = predict(model).argmax(1)
        a1 = (top == ref1).float().mean().item()
        a5 = (ref5 == top[:, None]).any(1).float().mean().item()
        print(f"| {pad} | {eps:g} | {what} | {a1:.3f} | {a5:.3f} |")
    L.TFSamePad.forward, L.BN_EPS = tf_same, 1e-3


if __name__ == "__main__":
    main()
