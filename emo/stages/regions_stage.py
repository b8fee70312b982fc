"""The regions stage: ``regions`` in each record, and the ``regions`` feature group (X_local).

The ``regions`` feature group is Rao et al.'s local part of eq. 5 as one vector: the K regions'
pooled features, best first, zero rows where fewer than K were found, then a K-long mask
(1 = a real region): ``K * C + K`` floats. Placed after ``deep`` (X_global) it makes
X = [X_global, X_local(1..K)].
"""

from __future__ import annotations

import contextlib
import math
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emo.config import KEY_REGIONS
from emo.engine import Engine
from emo.forks import renew_in_child
from emo.io.decode import View
from emo.io.records import Item
from emo.regions.draw import DrawingNames
from emo.regions.find import RegionFinder, Regions, one_thread
from emo.regions.layers import LinearLayer
from emo.regions.local import pad_regions
from emo.regions.rcnn import Detector
from emo.stages.backbone_stage import to_batch
from emo.stages.worker_threads import one_core_pool

GROUP = "regions"

# Images per engine call on a CPU. A 320-pixel view's early activations take megabytes per image:
# in twos they stay in the cores' caches, and the engine's CPU time per image is about half that
# of batches of 32 (same outputs, bit for bit). A GPU gets the whole batch.
CPU_CHUNK = 2


class Pace:
    """Whether the CPU engine runs on all of torch's threads or on one, from measured time per image.

    Small calls on all threads are fastest on idle cores, but every operation ends in a wait for
    the slowest thread, and when other programs hold a core that wait grows many times over; one
    thread never waits. Both ways give the same bits, so the faster one is taken: each is tried
    on the first batches and again every ``every`` batches, and the median of the last three
    times per image decides.
    """

    WAYS = ("all", "one")

    def __init__(self, every: int = 12) -> None:
        self.every = every
        self.seen: dict[str, deque[float]] = {w: deque(maxlen=3) for w in self.WAYS}
        self.calls = 0
        self.warm = False  # an engine's first call sets it up (seconds): timing it would condemn its way

    def way(self) -> str:
        """The way to run the next batch."""
        untried = [w for w in self.WAYS if not self.seen[w]]
        if untried:
            return untried[0]
        if self.calls % self.every < len(self.WAYS):  # look again: the machine's load changes
            return self.WAYS[self.calls % self.every]
        return min(self.WAYS, key=lambda w: statistics.median(self.seen[w]))

    def record(self, way: str, seconds_per_image: float) -> None:
        if not self.warm:
            self.warm = True
            return
        self.seen[way].append(seconds_per_image)
        self.calls += 1


def local_group(regions: Regions, k: int) -> np.ndarray:
    """``(K * C + K,) float32``: padded local features then the mask."""
    feats, mask = pad_regions(regions.local, k)
    return np.concatenate([feats.numpy().reshape(-1), mask.numpy().astype(np.float32)])


def group_dim(k: int, channels: int) -> int:
    """Size of the ``regions`` feature group for ``k`` regions of ``channels`` features."""
    return k * channels + k


# No picture is this many pixels across: a box coordinate beyond it is not one emo wrote.
MAX_COORD = float(1 << 31)


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def given_regions(record: dict) -> tuple[torch.Tensor, torch.Tensor, list[str]] | None:
    """Boxes, p_obj and labels a record already carries under ``regions``, or None if it has none
    usable: the record came from a file, so a region that is not as ``emo regions`` writes it (a
    box of four numbers within :data:`MAX_COORD`, ``p_obj`` a number from 0 to 1, ``label`` a
    string) makes the picture's regions be found afresh rather than fail or reach the output."""
    regs = record.get(KEY_REGIONS)
    if not isinstance(regs, list):
        return None
    boxes, p_obj, labels = [], [], []
    for r in regs:
        box = r.get("box") if isinstance(r, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) and abs(v) <= MAX_COORD for v in box)):
            return None
        if not (box[2] > box[0] and box[3] > box[1]):
            return None
        p, label = r.get("p_obj", 0.0), r.get("label", "")
        if not (_number(p) and 0.0 <= p <= 1.0 and isinstance(label, str)):
            return None
        boxes.append([float(v) for v in box])
        p_obj.append(float(p))
        labels.append(label)
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(p_obj), labels


class RegionStage:
    """Finds each picture's regions; writes ``regions`` and/or fills the ``regions`` feature group.

    ``engine``: the backbone's last-map network on ``(B, 3, view, view) uint8`` fit views.
    ``detector``: the ``rcnn`` source on fit views of side ``detector_view`` (None: ``cam``).
    ``emit``: write ``regions`` into records; ``local``: fill ``features["regions"]`` (K = top_k),
    reusing the boxes a record already carries. ``draw_dir``: a JPEG per picture there with its
    best ``draw_k`` regions, named after its path relative to ``root`` (:mod:`emo.regions.draw`).
    """

    def __init__(self, engine: Engine, finder: RegionFinder, *, detector: Detector | None = None,
                 detector_view: int = 800, emit: bool = True, local: bool = False,
                 draw_dir: Path | None = None, draw_k: int = 3, root: Path | None = None,
                 max_pixels: int = 0) -> None:
        self.engine = engine
        self.finder = finder
        self.view = View(finder.view, mode="fit")
        self.detector = detector
        self.det_view = View(detector_view, mode="fit") if detector is not None else None
        self.emit = emit
        self.local = local
        self.draw_dir = draw_dir
        self.draw_k = draw_k
        self.pace = Pace()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        renew_in_child(self, RegionStage._forget_pool)  # a forked child makes its own
        self.max_pixels = max_pixels
        self.names = DrawingNames(root if root is not None else Path.cwd())
        self.views = (self.view,) + ((self.det_view,) if self.det_view is not None else ())

    def _forget_pool(self) -> None:
        """In a forked child: the pool's threads are not there, so the next batch makes a new one."""
        self._pool, self._pool_size = None, 0

    def feature_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """The engine on ``batch (B, 3, S, S) uint8``: ``(B, C, h, w)``; on a CPU in chunks of
        :data:`CPU_CHUNK`, on one thread or all as :class:`Pace` finds faster."""
        n = batch.shape[0]
        if self.engine.device.type != "cpu" or n == 0:
            return self.engine(batch)[0]
        if threading.current_thread().name.startswith("emo-regions"):  # a share of the batch: one core already
            return torch.cat([self.engine(batch[i : i + CPU_CHUNK])[0] for i in range(0, n, CPU_CHUNK)])
        way = self.pace.way()
        start = time.perf_counter()
        with one_thread() if way == "one" else contextlib.nullcontext():
            out = torch.cat([self.engine(batch[i : i + CPU_CHUNK])[0] for i in range(0, n, CPU_CHUNK)])
        self.pace.record(way, (time.perf_counter() - start) / n)
        return out

    def wants(self, item: Item) -> bool:
        if self.local:
            return GROUP not in item.features
        return KEY_REGIONS not in item.record

    def _detections(self, items: list[Item]) -> list:
        from emo.io.decode import fit_size
        from emo.regions.find import to_original

        side = self.det_view.size
        pics = []
        for it in items:
            w, h = fit_size(*it.size, side)
            pics.append(torch.from_numpy(np.ascontiguousarray(it.views[self.det_view][:h, :w])).permute(2, 0, 1))
        dets = self.detector(pics)
        return [(to_original(d.boxes, it.size, side), d.scores, d.labels) for d, it in zip(dets, items)]

    def _shares(self, items: list[Item]) -> int:
        """Threads to share this batch among: each runs the engine and finds the regions of its
        pictures on one core. Only where engine calls run at once (a lock-free CPU engine)."""
        if (self.engine.device.type != "cpu" or self.detector is not None or not self.engine.lock_free
                or self.draw_dir is not None):
            return 1
        return max(1, min(torch.get_num_threads(), len(items) // (2 * CPU_CHUNK)))

    def run(self, items: list[Item]) -> None:
        threads = self._shares(items)
        if threads < 2:
            self._run_part(items)
            return
        pool = self._pool
        if pool is None or self._pool_size < threads:
            # One pool for batches of every size (a shorter last batch uses fewer of its threads),
            # replaced only by a bigger one and never shut down: a caller on another thread
            # (emo.Predictor) may be using it; its threads end once it is dropped.
            size = max(threads, torch.get_num_threads())
            pool = self._pool = one_core_pool(size, "emo-regions")
            self._pool_size = size
        # Whole pictures per thread, in CPU_CHUNK pairs: the same engine calls as one thread makes.
        step = -(-len(items) // threads)
        step += step % CPU_CHUNK
        parts = [items[i : i + step] for i in range(0, len(items), step)]
        futures = [pool.submit(self._run_part, part) for part in parts]
        # Every part ends before this returns, even when one raises: the batch is then retried
        # picture by picture, and a part still running would write into the same records meanwhile.
        wait(futures)
        for f in futures:
            f.result()

    def _run_part(self, items: list[Item]) -> None:
        fmaps = self.feature_maps(to_batch(items, self.view))
        sizes = [it.size for it in items]
        given: list | None = None
        if self.detector is not None:
            given = self._detections(items)
        elif self.local:
            given = [given_regions(it.record) for it in items]
        found = self.finder.find(fmaps, sizes, given)
        for item, regions in zip(items, found):
            recs = regions.records()
            if self.emit:
                item.record[KEY_REGIONS] = recs
            if self.local:
                item.features[GROUP] = local_group(regions, self.finder.top_k)
            if self.draw_dir is not None and item.path is not None:
                self._draw(item, recs, regions.emotion)

    def _draw(self, item: Item, recs: list[dict], emotion: str) -> None:
        """Write the item's drawing; a failure is its error, and its regions stay in the record."""
        from PIL import Image

        from emo.regions.draw import draw_regions

        out = self.draw_dir / self.names(item.path, item.index)
        try:
            draw_regions(item.path, recs, out, emotion, self.draw_k, item.size, self.max_pixels)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            item.fail("read_error", f"drawing not written to {out.name}: {getattr(e, 'strerror', None) or e}")


def object_classifier(state: dict, classes: int, channels: int) -> LinearLayer | None:
    """The backbone's ImageNet classifier read from its weights, or None if it cannot be told apart.

    The classifier is the one linear layer of ``classes x channels`` in ``state`` (with its bias):
    reading it from the weights file spares building the network when its engine is cached.
    """
    found = [k[: -len("weight")] for k, v in state.items()
             if k.endswith("weight") and getattr(v, "shape", None) == (classes, channels)]
    if len(found) != 1 or getattr(state.get(found[0] + "bias"), "shape", None) != (classes,):
        return None
    return LinearLayer(state[found[0] + "weight"].float(), state[found[0] + "bias"].float())


def region_stage(settings, *, proposals: str = "cam", top_k: int = 10, iou: float = 0.5, size: int = 320,
                 detector_size: int = 800, cam_file: Path | None = None, region_head: Path | None = None,
                 emit: bool = True, local: bool = False, draw_dir: Path | None = None, draw_k: int = 3,
                 root: Path | None = None, verbose: bool = False,
                 read: tuple[Any, Any] | None = None) -> RegionStage:
    """Build the backbone's last-map engine, the CAM layer, optional region head and detector.

    ``settings.backbone`` must be the network the CAM layer was trained on (its header says).
    ``draw_dir``: write drawings there, each with the best ``draw_k`` regions, named after the
    picture's path relative to ``root`` (default: the current folder). ``read``: the CAM layer
    and region head as :func:`emo.regions.layers.read_region_layers` already read and checked
    them (so a file replaced since is not read again), instead of reading ``cam_file`` and
    ``region_head``.
    """
    from emo.engine import Profile, load
    from emo.errors import UsageError
    from emo.models import create, get
    from emo.models.weights import load_state_dict, resolve
    from emo.regions.find import LastMap
    from emo.regions.layers import layer_of, read_region_layers

    entry = get(settings.backbone)
    cam_read, head_read = read if read is not None else read_region_layers(entry, cam_file, region_head)
    cam, head = layer_of(cam_read), (layer_of(head_read) if head_read is not None else None)
    channels = entry.stages[-1][1]
    weights, digest = resolve(entry.weights, settings) if entry.weights else (None, "")
    classifier = object_classifier(load_state_dict(weights), entry.num_classes, channels) if weights else None
    built: list = []

    def model():
        if not built:
            built.append(create(entry.name, settings))
        return built[0]

    # Built only when the engine is not in the cache: building imports torchvision (seconds).
    engine = load(lambda: LastMap(model(), entry).eval(), network_id=f"{entry.name}.lastmap",
                  weights_sha256=digest or model().weights_sha256, profile=Profile(size, settings.batch_size),
                  settings=settings, verbose=verbose)
    if classifier is None:
        classifier = model().classifier.eval()
    finder = RegionFinder(cam, classifier, size, None, top_k, iou, head)
    det = None
    if proposals == "rcnn":
        from emo.regions.rcnn import detector

        det = detector(settings)
    if draw_dir is not None:
        try:
            draw_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UsageError(f"--draw {draw_dir}: cannot make the folder ({e.strerror or e})") from None
    return RegionStage(engine, finder, detector=det, detector_view=detector_size, emit=emit, local=local,
                       draw_dir=draw_dir, draw_k=draw_k, root=root, max_pixels=settings.max_pixels)
