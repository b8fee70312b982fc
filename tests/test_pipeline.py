"""emo.pipeline: order, error isolation, decode only when wanted, bounded look-ahead; the same
records whether decoding runs on threads or in worker processes."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emo import pipeline
from emo.config import DEFAULTS
from emo.io import decode as decode_mod
from emo.errors import ModelError
from emo.io.decode import View
from emo.io.records import Item
from emo.pipeline import Pipeline, Summary, run
from tests.conftest import make_image

VIEW = View(16, mode="squash")


class RedStage:
    """Writes each image's mean red value; raises on any batch holding a path with ``poison``."""

    views = (VIEW,)

    def __init__(self) -> None:
        self.batches: list[int] = []

    def wants(self, item: Item) -> bool:
        return "red" not in item.record

    def run(self, items: list[Item]) -> None:
        self.batches.append(len(items))
        if any("poison" in str(it.path) for it in items):
            raise ValueError("poisoned input")
        for it in items:
            it.record["red"] = float(it.views[VIEW][..., 0].mean())


def _settings(batch_size: int, workers: int = 2, decoder: str = "thread"):
    return replace(DEFAULTS, batch_size=batch_size, workers=workers, decoder=decoder)


def _collect(items, stages, batch_size, workers=2, decoder="thread"):
    out: list[Item] = []
    summary = run(items, stages, _settings(batch_size, workers, decoder), out.extend, on_error=lambda it: None)
    return out, summary


@pytest.fixture
def mixed(tmp_path, bad_files) -> list[tuple[Path, float | None]]:
    """Good images (each its own red level) interleaved with bad files; expected mean red or None."""
    inputs: list[tuple[Path, float | None]] = []
    bad = [bad_files["empty"], bad_files["truncated"], bad_files["text"], bad_files["folder"], tmp_path / "missing.jpg"]
    for i in range(12):
        red = 20 + 18 * i
        p = make_image(tmp_path / f"img{i:02d}.png", size=(40, 30), color=(red, 10, 10))
        arr = np.asarray(Image.open(p).convert("RGB").resize((16, 16), Image.BILINEAR))
        inputs.append((p, float(arr[..., 0].mean())))
        if i % 2 == 1 and bad:
            inputs.append((bad.pop(), None))
    return inputs


def _items(inputs) -> list[Item]:
    return [Item(i, {"path": str(p), "n": i}, path=p) for i, (p, _) in enumerate(inputs)]


@pytest.mark.parametrize("batch_size", [1, 2, 7])
@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("decoder", ["thread", "process"])
def test_order_and_results_with_mixed_inputs(mixed, batch_size, workers, decoder):
    out, summary = _collect(_items(mixed), [RedStage()], batch_size, workers, decoder)
    assert [it.record["n"] for it in out] == list(range(len(mixed)))
    for it, (path, red) in zip(out, mixed):
        assert it.record["path"] == str(path)
        if red is None:
            assert not it.ok and "red" not in it.record and it.record["error"]["kind"] != "model_error"
        else:
            assert it.ok, it.record
            assert it.record["red"] == pytest.approx(red, abs=0.01)  # this image's own pixels
        assert it.views == {}  # pixels are dropped once the batch is written
    assert summary == Summary(total=len(mixed), failed=5)


def test_error_kinds_of_bad_inputs(mixed):
    out, _ = _collect(_items(mixed), [RedStage()], 4)
    kinds = sorted(it.record["error"]["kind"] for it in out if not it.ok)
    assert kinds == ["empty_file", "is_directory", "not_an_image", "not_found", "truncated"]


@pytest.mark.parametrize("batch_size", [1, 2, 7])
def test_a_stage_that_fails_on_one_item_isolates_it(tmp_path, batch_size):
    paths = [make_image(tmp_path / f"{name}.png", color=(30 * i + 10, 0, 0))
             for i, name in enumerate(["a", "b", "poison", "c", "d"])]
    stage = RedStage()
    out, summary = _collect([Item(i, {"path": str(p)}, path=p) for i, p in enumerate(paths)], [stage], batch_size)
    assert [it.ok for it in out] == [True, True, False, True, True]
    assert out[2].record["error"] == {"kind": "model_error", "message": "ValueError: poisoned input"}
    assert all("red" in it.record for i, it in enumerate(out) if i != 2)
    assert summary == Summary(total=5, failed=1)


def test_later_stages_skip_items_an_earlier_stage_failed(tmp_path):
    paths = [make_image(tmp_path / f"{n}.png") for n in ("a", "poison", "b")]
    seen: list[str] = []

    class After:
        views = ()

        def wants(self, item):
            return True

        def run(self, items):
            seen.extend(Path(it.path).stem for it in items)

    _collect([Item(i, {"path": str(p)}, path=p) for i, p in enumerate(paths)], [RedStage(), After()], 3)
    assert seen == ["a", "b"]


def test_an_emo_error_from_a_stage_stops_the_run(tmp_path):
    p = make_image(tmp_path / "a.png")

    class Broken:
        views = ()

        def wants(self, item):
            return True

        def run(self, items):
            raise ModelError("engine cannot run")

    with pytest.raises(ModelError, match="engine cannot run"):
        _collect([Item(0, {"path": str(p)}, path=p), Item(1, {"path": str(p)}, path=p)], [Broken()], 2)


def test_an_emo_error_during_the_item_by_item_retry_stops_the_run(tmp_path):
    paths = [make_image(tmp_path / f"{n}.png") for n in ("a", "b")]

    class FailsThenFatal:
        views = ()

        def wants(self, item):
            return True

        def run(self, items):
            if len(items) > 1:
                raise RuntimeError("batch failed")
            raise ModelError("fatal")

    with pytest.raises(ModelError, match="fatal"):
        _collect([Item(i, {"path": str(p)}, path=p) for i, p in enumerate(paths)], [FailsThenFatal()], 2)


@pytest.fixture
def count_decodes(monkeypatch):
    calls: list[Path] = []
    real = decode_mod.decode

    def counting(path, views, max_pixels, max_bytes=None):
        calls.append(path)
        return real(path, views, max_pixels, max_bytes)

    monkeypatch.setattr(decode_mod, "decode", counting)  # on threads: counted in this process
    return calls


def test_no_decoding_when_no_stage_wants_the_item(tmp_path, count_decodes):
    paths = [make_image(tmp_path / f"{n}.png") for n in ("a", "b", "c")]
    items = [Item(i, {"path": str(p), "red": 1.0}, path=p) for i, p in enumerate(paths)]  # already done
    stage = RedStage()
    out, summary = _collect(items, [stage], 2)
    assert count_decodes == [] and stage.batches == []
    assert [it.record["red"] for it in out] == [1.0, 1.0, 1.0] and summary.failed == 0


def test_decoding_only_for_items_that_want_it(tmp_path, count_decodes):
    paths = [make_image(tmp_path / f"{n}.png") for n in ("a", "b", "c", "d")]
    items = [Item(i, {"path": str(p), **({"red": 0.0} if i % 2 else {})}, path=p) for i, p in enumerate(paths)]
    _collect(items, [RedStage()], 4)
    assert sorted(count_decodes) == [paths[0], paths[2]]


def test_no_decoding_for_a_stage_without_views(tmp_path, count_decodes):
    p = make_image(tmp_path / "a.png")

    class RecordOnly:
        views = ()

        def wants(self, item):
            return True

        def run(self, items):
            for it in items:
                it.record["done"] = True

    out, _ = _collect([Item(0, {"path": str(p)}, path=p)], [RecordOnly()], 1)
    assert count_decodes == [] and out[0].record["done"] is True


def test_each_image_decoded_once_for_several_stages(tmp_path, count_decodes):
    p = make_image(tmp_path / "a.png")

    class Other(RedStage):
        views = (VIEW, View(8, mode="squash"))

        def wants(self, item):
            return "other" not in item.record

        def run(self, items):
            for it in items:
                it.record["other"] = it.views[View(8, mode="squash")].shape

    out, _ = _collect([Item(0, {"path": str(p)}, path=p)], [RedStage(), Other()], 1)
    assert count_decodes == [p]
    assert out[0].record["other"] == (8, 8, 3) and "red" in out[0].record


def test_a_record_without_path_that_needs_pixels_is_a_bad_record():
    items = [Item(0, {"features": {"deep": [1.0]}})]
    out, summary = _collect(items, [RedStage()], 1)
    assert out[0].record["error"]["kind"] == "bad_record" and summary.failed == 1


def test_already_failed_items_pass_through_untouched(tmp_path, count_decodes):
    p = make_image(tmp_path / "a.png")
    bad = Item(0, {"line": 1})
    bad.fail("bad_line", "line 1 is not valid JSON")
    out, summary = _collect([bad, Item(1, {"path": str(p)}, path=p)], [RedStage()], 2)
    assert out[0].record == {"line": 1, "error": {"kind": "bad_line", "message": "line 1 is not valid JSON"}}
    assert count_decodes == [p] and summary == Summary(2, 1)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_look_ahead_is_bounded(tmp_path, batch_size, count_decodes):
    p = make_image(tmp_path / "a.png", size=(20, 20))
    n, lookahead = 40, 2
    pulled = 0

    def gen():
        nonlocal pulled
        for i in range(n):
            pulled += 1
            yield Item(i, {"path": str(p)}, path=p)

    ahead: list[int] = []
    decoded_ahead: list[int] = []
    done = 0
    for batch in Pipeline([RedStage()], _settings(batch_size), lookahead=lookahead).run(gen()):
        done += len(batch)
        ahead.append(pulled - done)
        decoded_ahead.append(len(count_decodes) - done)
    assert done == n
    # Pixels: at most `lookahead` batches are decoded ahead of the one being written (decodes run
    # on threads, so fewer may have started when a batch is written, never more).
    assert max(decoded_ahead) <= lookahead * batch_size, decoded_ahead
    # Inputs (records without pixels) are read ahead into a bounded queue, so a pause is noticed.
    assert max(ahead) <= lookahead * batch_size + 64
    assert pulled == n


def test_breaking_off_early_cancels_pending_work(tmp_path):
    p = make_image(tmp_path / "a.png")
    gen = Pipeline([RedStage()], _settings(1)).run(Item(i, {"path": str(p)}, path=p) for i in range(100))
    first = next(gen)
    gen.close()  # what `emo ... | head -1` does to the loop: no hang, no error
    assert first[0].record["red"] > 0


def test_stderr_line_per_failed_input(tmp_path, capsys):
    good = make_image(tmp_path / "a.png")
    items = [Item(0, {"path": str(tmp_path / "nope.jpg")}, path=tmp_path / "nope.jpg"), Item(1, {"path": str(good)}, path=good)]
    out: list[Item] = []
    summary = run(items, [RedStage()], _settings(2), out.extend)
    err = capsys.readouterr().err
    assert err == f"emo: {tmp_path / 'nope.jpg'}: not_found: no such file\n"
    assert summary == Summary(2, 1)


def test_process_and_thread_decoding_give_the_same_records(mixed):
    a, sa = _collect(_items(mixed), [RedStage()], 3, decoder="thread")
    b, sb = _collect(_items(mixed), [RedStage()], 3, decoder="process")
    assert [it.record for it in a] == [it.record for it in b] and sa == sb


def _submitted_before_first_batch(tmp_path, monkeypatch, n: int, delay: float) -> int:
    """Run ``n`` inputs arriving ``delay`` s apart through decode processes; how many images
    were handed to the decoder when the first batch came out (all ``n`` must come out)."""
    p = make_image(tmp_path / "a.png", size=(20, 20))
    submitted = 0
    real = pipeline.ProcessDecoder.submit

    def counting(self, *a):
        nonlocal submitted
        submitted += 1
        return real(self, *a)

    monkeypatch.setattr(pipeline.ProcessDecoder, "submit", counting)

    def inputs():
        for i in range(n):
            time.sleep(delay)
            yield Item(i, {"path": str(p)}, path=p)

    gen = Pipeline([RedStage()], _settings(4, decoder="process")).run(inputs())
    first = next(gen)
    at_first = submitted
    assert len(first) + sum(len(batch) for batch in gen) == n
    return at_first


def test_the_first_fill_reads_ahead_as_far_as_the_ring_holds(tmp_path, monkeypatch):
    # A 16 px view: the ring holds more than these 600 images, so all are decoding at once.
    monkeypatch.setattr(pipeline, "FILL_SECONDS", 60)  # a busy machine must not end the fill early
    assert _submitted_before_first_batch(tmp_path, monkeypatch, 600, 0.0) == 600


def test_the_first_fill_stops_for_a_slow_producer(tmp_path, monkeypatch):
    """Paths that trickle in (100 a second) still get their first lines soon: the fill gives up
    after FILL_SECONDS, not after the ring's hundreds of images."""
    monkeypatch.setattr(pipeline, "FILL_SECONDS", 0.2)
    assert _submitted_before_first_batch(tmp_path, monkeypatch, 300, 0.01) < 100


def test_breaking_off_early_stops_the_decode_processes(tmp_path, monkeypatch):
    p = make_image(tmp_path / "a.png")
    seen: list[int] = []
    real = pipeline.ProcessDecoder.__init__

    def spy(self, *a, **kw):
        real(self, *a, **kw)
        seen.extend(self.pids)

    monkeypatch.setattr(pipeline.ProcessDecoder, "__init__", spy)
    gen = Pipeline([RedStage()], _settings(1, decoder="process")).run(
        Item(i, {"path": str(p)}, path=p) for i in range(100))
    next(gen)
    gen.close()
    assert seen
    for pid in seen:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_input_that_pauses_does_not_hold_up_what_was_read(tmp_path, monkeypatch):
    """A producer that stops mid-stream (a pipe with nothing more yet): the first fill gives up
    waiting at its deadline, and the records read so far come out while the input is paused."""
    import threading

    monkeypatch.setattr(pipeline, "FILL_SECONDS", 0.2)
    p = make_image(tmp_path / "a.png", size=(20, 20))
    resume = threading.Event()

    def paused():
        for i in range(40):
            if i == 20:
                assert resume.wait(30), "the pipeline never got to its first batch"
            yield Item(i, {"path": str(p)}, path=p)

    gen = Pipeline([RedStage()], _settings(4, decoder="process")).run(paused())
    first = next(gen)  # would block for good if the fill waited for the 21st input
    resume.set()
    rest = [it for batch in gen for it in batch]
    assert [it.index for it in first + rest] == list(range(40))


def test_an_error_from_the_input_reaches_the_caller(tmp_path):
    p = make_image(tmp_path / "a.png", size=(20, 20))

    def broken():
        for i in range(5):
            yield Item(i, {"path": str(p)}, path=p)
        raise ModelError("the input broke")

    for decoder in ("thread", "process"):
        with pytest.raises(ModelError, match="the input broke"):
            list(Pipeline([RedStage()], _settings(2, decoder=decoder)).run(broken()))
    # Whatever was read before the error is written first (decode processes read far ahead).
    for decoder in ("thread", "process"):
        out: list[Item] = []
        with pytest.raises(ModelError, match="the input broke"):
            for batch in Pipeline([RedStage()], _settings(2, decoder=decoder)).run(broken()):
                out += batch
        assert [it.index for it in out] == [0, 1, 2, 3, 4] and all("red" in it.record for it in out)


def test_a_lazy_network_that_cannot_be_built_stops_the_run(tmp_path):
    """Not a model_error on every record (and a rebuild per record): one ModelError, as at start-up."""
    from emo.stages.head_stages import LazyStage

    p = make_image(tmp_path / "a.png")
    builds = []

    def build():
        builds.append(1)
        raise RuntimeError("no CUDA driver")

    stage = LazyStage(build, (VIEW,), ("deep",))
    with pytest.raises(ModelError, match="cannot build the network: RuntimeError: no CUDA driver"):
        _collect([Item(i, {"path": str(p)}, path=p) for i in range(4)], [stage], 2)
    assert builds == [1]


@pytest.mark.parametrize("workers, cores, forked, balanced", [(3, 2, 3, False), (0, 2, 2, True), (0, 1, 1, True)])
def test_workers_setting_forces_the_count_else_the_run_balances(tmp_path, monkeypatch, workers, cores, forked,
                                                                 balanced):
    """--workers N forks N and feeds them all; 0 forks one per usable core and lets the measured
    plan feed them (on one core the plan is fixed at one worker)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    seen: list = []
    real = pipeline.ProcessDecoder.__init__

    def spy(self, *a, **kw):
        real(self, *a, **kw)
        seen.append(self)

    monkeypatch.setattr(pipeline.ProcessDecoder, "__init__", spy)
    p = make_image(tmp_path / "a.png", size=(20, 20))
    out, summary = _collect([Item(i, {"path": str(p)}, path=p) for i in range(70)], [RedStage()], 4, workers,
                            "process")
    assert [it.index for it in out] == list(range(70)) and summary.failed == 0
    (dec,) = seen
    assert len(dec.pids) == forked and (dec.balancer is not None) == balanced
    if balanced:
        assert dec.balancer.fixed == (cores == 1)
        assert dec.balancer._taken == 70  # every image taken was timed


def test_decode_processes_stay_fed_as_far_as_the_ring_holds(tmp_path, monkeypatch):
    """Input that keeps coming: past the first fill the loop keeps the ring's worth of images
    submitted (not just ``lookahead`` batches), so a worker never idles between two batches;
    never more than the ring holds."""
    from emo.io import procpool

    monkeypatch.setattr(procpool, "MAX_SLOTS", 64)
    monkeypatch.setattr(pipeline, "FILL_SECONDS", 60)
    p = make_image(tmp_path / "a.png", size=(20, 20))
    submitted = 0
    real = pipeline.ProcessDecoder.submit

    def counting(self, *a, **kw):
        nonlocal submitted
        submitted += 1
        return real(self, *a, **kw)

    monkeypatch.setattr(pipeline.ProcessDecoder, "submit", counting)
    done, ahead = 0, []
    for batch in Pipeline([RedStage()], _settings(4, decoder="process")).run(
            Item(i, {"path": str(p)}, path=p) for i in range(400)):
        done += len(batch)
        ahead.append(submitted - done)
    assert done == 400
    steady = ahead[20:-20]  # past the first fill, before the end of the input
    assert min(steady) > 2 * 4 and max(ahead) <= 64


@pytest.mark.parametrize("decoder", ["thread", "process"])
def test_input_that_pauses_gets_its_records_before_the_next_line(tmp_path, decoder):
    """``tail -f log | emo``: records read before a pause come out during it, not at end of input."""
    import threading

    p = make_image(tmp_path / "a.png", size=(20, 20))
    got_first = threading.Event()
    resumed_after_first: list[bool] = []

    def gen():
        yield Item(0, {"path": str(p)}, path=p)
        resumed_after_first.append(got_first.wait(timeout=15))  # the producer pauses here
        yield Item(1, {"path": str(p)}, path=p)

    settings = replace(_settings(32), decoder=decoder)
    out = []
    for batch in Pipeline([RedStage()], settings).run(gen()):
        out += batch
        got_first.set()
    assert [it.index for it in out] == [0, 1]
    assert resumed_after_first == [True]  # the first record was out while the input was paused


@pytest.mark.parametrize("mode, isolated", [("process", True), ("auto", False)])
def test_decoder_process_by_name_never_decodes_in_the_main_process(mode, isolated):
    from emo.io.procpool import ProcessDecoder, can_fork_before_torch

    if mode == "auto" and not can_fork_before_torch():
        pytest.skip("torch is loaded in this process: auto decodes on threads")
    dec = pipeline.open_decoder(replace(DEFAULTS, decoder=mode), (VIEW,))
    try:
        assert isinstance(dec, ProcessDecoder) and dec.isolate is isolated
    finally:
        dec.close()


def test_stages_run_side_by_side_decode_only_the_views_of_those_that_want_the_item(tmp_path, monkeypatch):
    from emo.stages.together import Together

    small = View(8, mode="squash")

    class Small(RedStage):
        views = (small,)

        def wants(self, item):
            return "small" not in item.record

        def run(self, items):
            for it in items:
                it.record["small"] = it.views[small].shape

    asked: list[tuple[View, ...]] = []
    real = decode_mod.decode
    monkeypatch.setattr(decode_mod, "decode", lambda path, views, *a: asked.append(views) or real(path, views, *a))
    p = make_image(tmp_path / "a.png")
    items = [Item(0, {"path": str(p), "red": 1.0}, path=p), Item(1, {"path": str(p), "small": 0}, path=p)]
    out, _ = _collect(items, [Together([RedStage(), Small()])], 2, workers=1)
    # the first record carries what RedStage makes, the second what Small makes
    assert asked == [(small,), (VIEW,)]
    assert out[0].record["small"] == (8, 8, 3) and out[1].record["red"] >= 0


@pytest.mark.parametrize("decoder", ["thread", "process"])
def test_nothing_to_decode_opens_no_decoder(tmp_path, monkeypatch, decoder):
    """Empty input, inputs that fail before their file is read, records that carry their result:
    no worker is forked, no thread started, and -v says nothing was decoded."""
    opened = []
    real = pipeline.open_decoder
    monkeypatch.setattr(pipeline, "open_decoder", lambda *a: opened.append(a) or real(*a))
    carried = [Item(0, {"path": "a.jpg", "red": 1.0}, path=tmp_path / "a.jpg")]
    failed = [Item(1, {"path": "b.jpg"}, path=tmp_path / "b.jpg")]
    failed[0].fail("not_found", "no such file")
    for items in ([], carried, failed):
        out, summary = _collect(items, [RedStage()], 4, decoder=decoder)
        assert len(out) == len(items) and summary.decoder == ""
    assert opened == []
    p = make_image(tmp_path / "c.png")
    out, summary = _collect([Item(0, {"path": str(p)}, path=p)], [RedStage()], 4, decoder=decoder)
    assert len(opened) == 1 and "red" in out[0].record and summary.decoder
