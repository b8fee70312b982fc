"""emo.engine.aoti_direct: a compiled CPU engine called without Python's lock, checked bit for bit
against torch's loader on its first batch, and the loader wherever that is not certain."""

from __future__ import annotations

import gc
import os
import threading
import weakref
import zipfile
from pathlib import Path

import pytest
import torch

from emo.config import Settings, from_env
from emo.engine import Profile, aoti_direct, inductor, load
from tests.conftest import in_fork


def _engine(tiny_backbone, tiny_cache):
    from emo.models import create

    model = create("tiny_test", from_env())
    settings = Settings(device="cpu", backend="inductor", cache_dir=str(tiny_cache))
    eng = load(model, network_id="tiny_test", weights_sha256=model.weights_sha256, profile=Profile(32, 32),
               settings=settings)
    assert eng.backend == "inductor" and eng.path is not None
    return model, eng


def _batch(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)


def test_the_engine_turns_lock_free_after_a_first_batch_that_agrees(tiny_backbone, tiny_cache):
    model, eng = _engine(tiny_backbone, tiny_cache)
    x = _batch(5)
    first = eng(x)  # (loading may already have made the checking call)
    assert eng.lock_free
    again = eng(x)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    with torch.inference_mode():
        ref = model(x)
    assert all(torch.allclose(a, r, atol=1e-4, rtol=0) for a, r in zip(again, ref))


def test_calls_from_two_threads_at_once_give_each_its_own_answer(tiny_backbone, tiny_cache):
    _, eng = _engine(tiny_backbone, tiny_cache)
    eng(_batch(2))
    batches = [_batch(4, seed) for seed in range(8)]
    want = [eng(b)[0] for b in batches]
    got: dict[int, torch.Tensor] = {}

    def work(i: int) -> None:
        for _ in range(20):
            got[i] = eng(batches[i])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(torch.equal(got[i], want[i]) for i in range(len(batches)))


def test_a_first_batch_that_differs_or_fails_keeps_the_loader():
    x = _batch(2)
    want = [torch.ones(2, 3)]
    calls = []

    def loader(t):
        calls.append("loader")
        return want

    for direct in (lambda ins: [torch.zeros(2, 3)], lambda ins: 1 / 0):
        calls.clear()
        fn = aoti_direct.checked(direct, loader)
        assert fn(x) is want and not fn.direct()
        assert fn(x) is want and calls == ["loader", "loader"]


def test_the_loader_is_let_go_once_the_direct_call_agrees_and_kept_when_it_does_not():
    class Loader:  # stands for the package loader: its own copy of the network's memory
        def __call__(self, t):
            return [torch.ones(2, 3)]

    for direct, let_go in ((lambda ins: [torch.ones(2, 3)], True), (lambda ins: [torch.zeros(2, 3)], False)):
        loader = Loader()
        gone = weakref.ref(loader)
        fn = aoti_direct.checked(direct, loader)
        del loader
        fn(_batch(2))
        gc.collect()
        assert (gone() is None) is let_go
        assert fn.direct() is let_go
        assert torch.equal(fn(_batch(2))[0], torch.ones(2, 3))  # the direct call that agreed, or the loader kept


def test_the_first_batch_reaches_the_library_dense_as_every_later_one():
    x = _batch(4).transpose(2, 3)  # a view: the library would read its memory in the wrong order
    want = [x.float().sum((1, 2))]

    def direct(ins):
        assert all(t.is_contiguous() for t in ins)
        return [ins[0].float().sum((1, 2))]

    fn = aoti_direct.checked(direct, lambda t: want)
    fn(x)
    assert fn.direct() and torch.equal(fn(x)[0], want[0])


def _zip(path: Path, names: list[str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for n in names:
            z.writestr(n, b"x")
    return path


@pytest.mark.parametrize("names, plain", [
    (["p/data/aotinductor/model/a.wrapper.so", "p/data/aotinductor/model/a.wrapper.cpp"], True),
    (["p/data/aotinductor/model/a.wrapper.so", "p/data/aotinductor/model/a.wrapper.json"], False),  # proxy executor
    (["p/data/aotinductor/model/a.so", "p/data/aotinductor/model/b.so"], False),
    (["p/data/aotinductor/model/a.so", "p/data/weights/w0"], False),
    (["p/data/aotinductor/model/a.cpp"], False),
    (["p/data/aotinductor/model/a.wrapper.so", "p/data/aotinductor/model/a.wrapper_metadata.json",
      "p/data/aotinductor/model/b.kernel.cpp", "p/archive_format", "p/.data/version", "p/byteorder"], True),
    # constants or weights the loader hands the library: called directly it would read none
    (["p/data/aotinductor/model/a.so", "p/data/constants/tensor_0"], False),
    (["p/data/aotinductor/model/a.so", "p/data/weights/weight_0"], False),
    (["p/data/aotinductor/model/a.so", "p/xl_model_weights/model_param_config"], False),
    (["p/data/aotinductor/model/a.so", "p/data/aotinductor/model/a_serialized_weights.bin"], False),
    (["p/data/aotinductor/model/a.so", "p/models/model.json"], False),
    (["p/data/aotinductor/model/a.so", "p/data/aotinductor/model/a.cubin"], False),
    (["p/data/aotinductor/other/a.so"], False),  # not the model the loader runs
    (["p/data/aotinductor/model/a.so", "q/archive_format"], False),
    (["p/data/aotinductor/model/a.so", "stray"], False),
])
def test_only_a_plain_one_library_package_is_called_directly(tmp_path, names, plain):
    got = aoti_direct.model_library(_zip(tmp_path / "e.pt2", names))
    assert (got == names[0]) is plain


def test_a_library_that_is_not_a_model_falls_back_to_the_loader(tmp_path):
    pkg = _zip(tmp_path / "e.pt2", ["p/data/aotinductor/model/a.wrapper.so"])  # "x" is no shared object
    assert inductor._direct(pkg, str(tmp_path)) is None


def test_the_engine_runs_as_many_calls_at_once_as_torch_has_threads(tiny_backbone, tiny_cache, tmp_path, monkeypatch):
    """The regions stage shares a batch among one thread per torch thread: with fewer model
    instances than that, the library makes the other threads' calls wait, one core each idle."""
    _, eng = _engine(tiny_backbone, tiny_cache)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    direct = inductor._direct(eng.path, str(tmp_path))
    assert direct is not None and direct.models == 6
    x = _batch(2)
    out: list = [None] * 6
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, direct([x])[0])) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(torch.equal(o, out[0]) for o in out)


@pytest.mark.parametrize("error", [NotImplementedError("That compression method is not supported"),
                                   RuntimeError("File is encrypted, password required for extraction"),
                                   EOFError(), MemoryError()])
def test_a_library_that_cannot_be_unpacked_keeps_the_loader_and_the_cached_engine(
        tiny_backbone, tiny_cache, monkeypatch, capfd, error):
    """The loader has loaded the package already: whatever goes wrong in making the direct call
    costs only the direct call, never the cached engine (removed and rebuilt as corrupt)."""
    def fail(*a, **kw):
        raise error

    monkeypatch.setattr(aoti_direct, "extract_library", fail)
    model, eng = _engine(tiny_backbone, tiny_cache)
    assert not eng.built and not eng.lock_free
    x = _batch(3)
    with torch.inference_mode():
        ref = model(x)
    assert all(torch.allclose(a, r, atol=1e-4, rtol=0) for a, r in zip(eng(x), ref))
    assert "corrupt" not in capfd.readouterr().err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here")
def test_a_first_call_another_thread_was_making_at_a_fork_is_made_again_in_the_child():
    """The first call's lock stays held in the child, where the thread holding it never ends."""
    started, finish = threading.Event(), threading.Event()
    parent = os.getpid()
    want = [torch.ones(2, 3)]

    def loader(t):
        if os.getpid() == parent:  # the parent's first call lasts across the fork
            started.set()
            finish.wait(30)
        return want

    fn = aoti_direct.checked(lambda ins: [torch.ones(2, 3)], loader)
    t = threading.Thread(target=fn, args=(_batch(2),))
    t.start()
    started.wait(30)
    try:
        assert in_fork(lambda: str(fn.direct()).encode() + str(fn(_batch(2)) is want).encode()) == b"FalseTrue"
    finally:
        finish.set()
        t.join()
    assert fn.direct()
