

def test_anchors_are_shared_per_size_and_usable_by_autograd():
    import torch

    from emo.regions.proposals import anchors

    with torch.inference_mode():
        first = anchors(300, 200)
    again = anchors(300, 200)
    assert all(a is b for (_, a), (_, b) in zip(first, again))  # cached, not rebuilt
    assert not any(b.is_inference() for _, b in again)
    w = torch.ones(4, requires_grad=True)
    (again[0][1] * w).sum().backward()  # an inference tensor here would raise
    assert torch.equal(w.grad, again[0][1].sum(0))
