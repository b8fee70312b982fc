

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


def test_every_level_proposes_inside_a_strip_thinner_than_half_a_cell():
    from emo.regions.proposals import ANCHOR_SIZES, anchors

    for width, height in [(320, 11), (320, 1), (1, 320), (3, 2), (1, 1)]:
        levels = anchors(width, height)
        assert [k for k, _ in levels] == list(ANCHOR_SIZES)
        for k, b in levels:
            assert b.shape[0] >= 1, (width, height, k)
            assert (b[:, 0] >= 0).all() and (b[:, 2] <= width).all() and (b[:, 1] >= 0).all() and (b[:, 3] <= height).all()
            assert ((b[:, 2] - b[:, 0]) >= 1).all() and ((b[:, 3] - b[:, 1]) >= 1).all()
