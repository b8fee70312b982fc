"""Run an emo subcommand over folders of images on a Ray cluster: Ray Data's ``map_batches``
through a pool of actors, each holding one :class:`emo.Predictor` (one GPU per actor where
there are GPUs). The output is the JSONL ``emo classify -r FOLDER`` writes: the same records,
in the same order.

    pip install '.[ray]'          # from a clone of the repository, as docs/scale.md says
    python examples/ray_classify.py photos/ -o tags.jsonl
    python examples/ray_classify.py photos/ --actors 8 --gpus-per-actor 1 -o tags.jsonl
    python examples/ray_classify.py photos/ -o feats.jsonl -- features --set object,deep

Arguments after ``--`` are the emo subcommand and its options (default: ``classify``). Each actor
loads its network once and builds or loads its compiled engine from the shared engine cache
(``--cache-dir`` on a shared disk builds it once per GPU model). Connects to a running cluster
when ``RAY_ADDRESS`` is set, else starts a local one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


class EmoActor:
    """One emo.Predictor per actor: built once, then called on each batch of paths."""

    def __init__(self, argv: Sequence[str]) -> None:
        import emo

        self.predictor = emo.Predictor(*argv)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from emo.io.writer import dumps

        records = self.predictor(list(batch["path"]))
        return {"line": np.array([dumps(r) for r in records], dtype=object)}


def list_images(inputs: Sequence[str]) -> list[str]:
    """Files as given, folders walked as ``emo -r`` walks them (image files, sorted)."""
    from emo.io.records import walk

    out: list[str] = []
    for arg in inputs:
        p = Path(arg)
        out += [str(f) for f in walk(p)] if p.is_dir() else [arg]
    return out


def run(paths: Sequence[str], argv: Sequence[str], actors: int = 2, gpus_per_actor: float = 0,
        batch_size: int = 32) -> Iterator[bytes]:
    """JSONL lines for ``paths``, in order, computed by ``actors`` Predictor actors."""
    import ray

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # records come back in input order
    ds = ray.data.from_items([{"path": p} for p in paths])
    out = ds.map_batches(
        EmoActor,
        fn_constructor_args=(list(argv),),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus_per_actor,
    )
    for row in out.iter_rows():
        yield row["line"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    emo_args = ["classify"]
    if "--" in argv:
        i = argv.index("--")
        argv, emo_args = argv[:i], argv[i + 1 :] or emo_args
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="image files and folders (walked like emo -r)")
    ap.add_argument("-o", "--output", required=True, help="JSONL file to write")
    ap.add_argument("--actors", type=int, default=2, help="actors in the pool [default: 2]")
    ap.add_argument("--gpus-per-actor", type=float, default=None,
                    help="GPUs each actor holds [default: 1 where the cluster has GPUs, else 0]")
    ap.add_argument("--batch-size", type=int, default=32, help="paths per map_batches call [default: 32]")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray instance")
    a = ap.parse_args(argv)

    import ray

    import os

    # Workers on other machines do not see this shell: hand them its EMO_* settings.
    emo_env = {k: v for k, v in os.environ.items() if k.startswith("EMO_")}
    ray.init(num_cpus=a.num_cpus, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             runtime_env={"env_vars": emo_env} if emo_env else None)
    gpus = a.gpus_per_actor
    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    paths = list_images(a.inputs)
    tmp = Path(a.output).with_name(f".{Path(a.output).name}.tmp")
    with open(tmp, "wb") as f:
        for line in run(paths, emo_args, a.actors, gpus, a.batch_size):
            f.write(line)
    tmp.replace(a.output)  # the file appears whole, as with emo -o
    import orjson

    errors = sum("error" in orjson.loads(line) for line in open(a.output, "rb"))
    print(f"{len(paths)} inputs, {errors} errors -> {a.output}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
