"""Faithfulness and localisation metrics: hand-computed references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from featviz.metrics import (
    average_drop,
    deletion_auc,
    energy_in_box,
    increase_in_confidence,
    insertion_auc,
    pointing_game,
)


class Linear4(nn.Module):
    """Logits of a (N, 1, 2, 2) image: class 0 = x . (1, 2, 3, 4), class 1 = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


ONES = torch.ones(1, 1, 2, 2)
# saliency ranks pixels 3, 2, 1, 0 (weights 4, 3, 2, 1)
SAL = torch.tensor([[[0.1, 0.2], [0.3, 0.4]]])


def test_deletion_by_hand():
    model = Linear4()
    res = deletion_auc(model, ONES, SAL, 0, steps=4, probability=False)
    # scores after removing 0..4 pixels: 10, 6, 3, 1, 0
    torch.testing.assert_close(res.curve, torch.tensor([[10.0, 6.0, 3.0, 1.0, 0.0]]))
    # trapezoid: (8 + 4.5 + 2 + 0.5) / 4
    torch.testing.assert_close(res.auc, torch.tensor([3.75]))
    torch.testing.assert_close(res.fractions, torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]))
    two = deletion_auc(model, ONES, SAL, 0, steps=2, probability=False)
    torch.testing.assert_close(two.curve, torch.tensor([[10.0, 3.0, 0.0]]))
    torch.testing.assert_close(two.auc, torch.tensor([4.0]))
    # steps=3: k = round(t * 4 / 3) = 0, 1, 3, 4
    three = deletion_auc(model, ONES, SAL, 0, steps=3, probability=False)
    torch.testing.assert_close(three.curve, torch.tensor([[10.0, 6.0, 1.0, 0.0]]))


def test_insertion_by_hand_and_probability():
    model = Linear4()
    res = insertion_auc(model, ONES, SAL, 0, steps=4, baseline="zeros", probability=False)
    torch.testing.assert_close(res.curve, torch.tensor([[0.0, 4.0, 7.0, 9.0, 10.0]]))
    torch.testing.assert_close(res.auc, torch.tensor([6.25]))
    prob = insertion_auc(model, ONES, SAL, 0, steps=4, baseline="zeros")
    sig = [1 / (1 + math.exp(-s)) for s in (0, 4, 7, 9, 10)]
    torch.testing.assert_close(prob.curve, torch.tensor([sig]))
    expected = sum((sig[t - 1] + sig[t]) / 2 for t in range(1, 5)) / 4
    torch.testing.assert_close(prob.auc, torch.tensor([expected]))
    # a constant baseline value: removed pixels become 0.5
    half = deletion_auc(model, ONES, SAL, 0, steps=4, baseline=0.5, probability=False)
    torch.testing.assert_close(half.curve, torch.tensor([[10.0, 8.0, 6.5, 5.5, 5.0]]))


def test_batched_equals_single_and_resizing():
    torch.manual_seed(0)
    model = Linear4()
    x = torch.rand(5, 1, 2, 2)
    sal = torch.rand(5, 2, 2)
    batch = deletion_auc(model, x, sal, 0, steps=4, batch_size=3, probability=False)
    for i in range(5):
        one = deletion_auc(model, x[i : i + 1], sal[i : i + 1], 0, steps=4, probability=False)
        torch.testing.assert_close(batch.curve[i], one.curve[0])
    # target None = arg-max of the intact image; here class 0 wins for positive x
    none = deletion_auc(model, x, sal, steps=4, probability=False)
    torch.testing.assert_close(none.auc, batch.auc)
    # a 1x1 saliency map is resized to 2x2 (constant): ties keep row-major order
    tie = deletion_auc(model, ONES, torch.ones(1, 1, 1), 0, steps=4, probability=False)
    torch.testing.assert_close(tie.curve, torch.tensor([[10.0, 9.0, 7.0, 4.0, 0.0]]))
    # numpy saliency is accepted
    arr = deletion_auc(model, ONES, SAL.numpy(), 0, steps=4, probability=False)
    torch.testing.assert_close(arr.auc, torch.tensor([3.75]))


def test_blur_baseline_and_errors():
    model = Linear4()
    flat = torch.full((1, 1, 2, 2), 0.25)
    res = insertion_auc(model, flat, SAL, 0, steps=4, probability=False)  # blur of constant
    torch.testing.assert_close(res.curve, torch.full((1, 5), 2.5))
    from featviz.metrics import _gaussian_blur

    img = torch.zeros(1, 1, 21, 21)
    img[0, 0, 10, 10] = 1.0
    blurred = _gaussian_blur(img)
    k = torch.exp(-((torch.arange(11.0) - 5) ** 2) / 50)
    k = k / k.sum()
    torch.testing.assert_close(blurred[0, 0, 5:16, 5:16], k[:, None] * k[None, :])
    with pytest.raises(ValueError, match="'steps' parameter of deletion_auc"):
        deletion_auc(model, ONES, SAL, 0, steps=0)
    with pytest.raises(ValueError, match="'baseline' parameter"):
        deletion_auc(model, ONES, SAL, 0, baseline="noise")
    with pytest.raises(ValueError, match="one map per image"):
        deletion_auc(model, torch.cat([ONES, ONES]), SAL, 0)
    with pytest.raises(ValueError, match="one entry per image"):
        deletion_auc(model, torch.cat([ONES, ONES]), SAL.expand(2, -1, -1), [0, 1, 0])
    with pytest.raises(TypeError, match="'images' parameter"):
        deletion_auc(model, ONES.numpy(), SAL, 0)


def test_average_drop_and_increase_by_hand():
    model = Linear4()
    x = torch.cat([ONES, -ONES])
    sal = torch.tensor([[[1.0, 0.0], [0.5, 1.0]], [[0.5, 0.5], [0.5, 0.5]]])

    def sig(s: float) -> float:
        return 1 / (1 + math.exp(-s))

    # image 0: Y = sig(10), O = sig(1 + 1.5 + 4) = sig(6.5); image 1: Y = sig(-10) < O = sig(-5)
    drop0 = 100 * (sig(10) - sig(6.5)) / sig(10)
    per = average_drop(model, x, sal, 0, reduce="none")
    torch.testing.assert_close(per, torch.tensor([drop0, 0.0]))
    assert average_drop(model, x, sal, 0) == pytest.approx(drop0 / 2, rel=1e-5)
    inc = increase_in_confidence(model, x, sal, 0, reduce="none")
    torch.testing.assert_close(inc, torch.tensor([0.0, 100.0]))
    assert increase_in_confidence(model, x, sal, 0, batch_size=1) == 50.0
    with pytest.raises(ValueError, match="'reduce' parameter"):
        average_drop(model, x, sal, 0, reduce="sum")


def test_model_flags_restored():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5))
    model.train()
    model[2].eval()
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 1, 2, 2)
    sal = torch.rand(4, 2, 2)
    a = deletion_auc(model, x, sal, steps=2).auc
    average_drop(model, x, sal)
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    torch.testing.assert_close(deletion_auc(model.eval(), x, sal, steps=2).auc, a)


def test_pointing_game_by_hand():
    maps = torch.zeros(4, 6, 8)
    maps[0, 2, 3] = 1.0  # inside box 0
    maps[1, 0, 0] = 1.0  # outside box 1
    maps[2, 5, 7] = 1.0  # on box 2's last pixel (exclusive ends)
    # maps[3] is constant: a miss
    boxes = torch.tensor([[2, 1, 5, 4], [4, 4, 8, 6], [6, 3, 8, 6], [0, 0, 8, 6]])
    hits = pointing_game(maps, boxes, reduce="none")
    assert hits.tolist() == [True, False, True, False]
    assert pointing_game(maps, boxes) == 0.5
    # x1/y1 are exclusive: a box ending at the point's column misses it
    assert not pointing_game(maps[:1], torch.tensor([[0, 0, 3, 6]]), reduce="none")[0]
    # tolerance (Euclidean): point (y=0, x=0) to box 1 (x >= 4, y >= 4): distance sqrt(32)
    assert not pointing_game(maps[1:2], boxes[1:2], tolerance=5.6, reduce="none")[0]
    assert pointing_game(maps[1:2], boxes[1:2], tolerance=5.66, reduce="none")[0]
    # the same with masks
    masks = torch.zeros(4, 6, 8, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        masks[i, y0:y1, x0:x1] = True
    assert pointing_game(maps, masks=masks, reduce="none").tolist() == hits.tolist()
    assert pointing_game(maps[1:2], masks=masks[1:2], tolerance=5.66) == 1.0
    assert pointing_game(maps[1:2], masks=masks[1:2], tolerance=5.6) == 0.0
    assert pointing_game(maps.numpy(), boxes.numpy()) == 0.5
    with pytest.raises(ValueError, match="exactly one of"):
        pointing_game(maps, boxes, masks=masks)
    with pytest.raises(ValueError, match="exactly one of"):
        pointing_game(maps)
    with pytest.raises(ValueError, match="one box per map"):
        pointing_game(maps, boxes[:2])
    with pytest.raises(ValueError, match="'masks' parameter"):
        pointing_game(maps, masks=masks[:, :5])
    with pytest.raises(ValueError, match="'tolerance' parameter"):
        pointing_game(maps, boxes, tolerance=-1)


def test_energy_in_box_by_hand():
    maps = torch.tensor(
        [
            [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]],
            [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
            [[-5.0, 1.0, 1.0], [1.0, 1.0, 0.0]],
        ]
    )
    boxes = torch.tensor([[1, 0, 3, 2], [0, 0, 3, 2], [0, 0, 1, 2]])
    e = energy_in_box(maps, boxes, reduce="none")
    # (2 + 4) / 10; an all-zero map -> 0; negatives clipped: 1 / 4
    torch.testing.assert_close(e, torch.tensor([0.6, 0.0, 0.25]))
    assert energy_in_box(maps, boxes) == pytest.approx((0.6 + 0.25) / 3)
    masks = np.zeros((3, 2, 3), dtype=bool)
    masks[0, 1, :] = True
    masks[2, 0, 1] = True
    em = energy_in_box(maps, masks=masks, reduce="none")
    torch.testing.assert_close(em, torch.tensor([0.7, 0.0, 0.25]))


# --------------------------------------------------------------------------------------
# non-finite values and empty inputs (issue 14)
# --------------------------------------------------------------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BOX = torch.tensor([[0, 0, 1, 1]])  # the top-left pixel


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_pointing_game_ignores_non_finite_for_the_maximum(bad):
    # finite maximum 0.2 at the top-left pixel (a hit); the non-finite value elsewhere
    sal = torch.tensor([[[0.2, -1.0], [bad, 0.1]]])
    with pytest.warns(RuntimeWarning, match="1 non-finite"):
        assert pointing_game(sal, BOX) == 1.0
    # all-negative finite values: the NaN (set to 0) must not become the maximum
    sal = torch.tensor([[[-0.1, -1.0], [bad, -0.5]]])
    with pytest.warns(RuntimeWarning):
        assert pointing_game(sal, BOX) == 1.0
    with pytest.warns(RuntimeWarning):
        hit = pointing_game(sal, masks=torch.tensor([[[True, False], [False, False]]]))
    assert hit == 1.0


def test_pointing_game_all_non_finite_or_constant_finite_is_a_miss():
    sal = torch.tensor([[[float("nan"), float("inf")], [float("nan"), -float("inf")]]])
    with pytest.warns(RuntimeWarning, match="4 non-finite"):
        assert pointing_game(sal, BOX) == 0.0
    sal = torch.tensor([[[0.5, 0.5], [float("nan"), 0.5]]])  # constant where finite
    with pytest.warns(RuntimeWarning):
        assert pointing_game(sal, BOX) == 0.0


@pytest.mark.parametrize(
    "call",
    [
        lambda s: pointing_game(s, torch.zeros((0, 4), dtype=torch.long)),
        lambda s: energy_in_box(s, torch.zeros((0, 4), dtype=torch.long)),
    ],
)
def test_metrics_refuse_no_maps(call):
    with pytest.raises(ValueError, match=r"'heatmaps' parameter of \w+ must hold at least one"):
        call(torch.zeros(0, 4, 4))


def test_average_drop_zero_confidence_is_zero_with_a_warning():
    class Sure(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # class 1 gets probability exactly 0 in float32 (exp(-200) underflows)
            return torch.stack([torch.zeros(len(x)), torch.full((len(x),), -200.0)], 1)

    sal = torch.ones(2, 2, 2)
    with pytest.warns(RuntimeWarning, match=r"probability 0 on images \[0, 1\]"):
        per = average_drop(Sure(), torch.ones(2, 1, 2, 2), sal, target=1, reduce="none")
    assert torch.equal(per, torch.zeros(2))
    with pytest.warns(RuntimeWarning):
        assert average_drop(Sure(), torch.ones(2, 1, 2, 2), sal, target=1) == 0.0


def test_model_metrics_set_non_finite_saliency_to_zero():
    sal = torch.tensor([[[0.1, float("nan")], [0.3, 0.4]]])
    clean = torch.tensor([[[0.1, 0.0], [0.3, 0.4]]])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        got = deletion_auc(Linear4(), ONES, sal, target=0, steps=4, progress=False)
    want = deletion_auc(Linear4(), ONES, clean, target=0, steps=4, progress=False)
    torch.testing.assert_close(got.curve, want.curve)
    with pytest.warns(RuntimeWarning):
        e = energy_in_box(sal, BOX)
    assert e == pytest.approx(0.1 / 0.8)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=32),
            st.sampled_from([0.0, 1.0, float("nan")]),
        ),
        min_size=9,
        max_size=9,
    ),
    dtype=st.sampled_from([torch.float16, torch.float32, torch.float64]),
)
def test_localisation_metrics_never_nan(values, dtype):
    sal = torch.tensor(values, dtype=torch.float64).reshape(1, 3, 3).to(dtype)
    box = torch.tensor([[1, 1, 3, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hit = pointing_game(sal, box, reduce="none")
        e = energy_in_box(sal, box)
    finite = torch.isfinite(sal.double())
    if bool(finite.any()):
        v = torch.where(finite, sal.double(), -math.inf).flatten()
        top = float(v.max())
        low = float(torch.where(finite, sal.double(), math.inf).min())
        first = int(v.argmax())
        want = top != low and first // 3 >= 1 and first % 3 >= 1
    else:
        want = False
    assert bool(hit[0]) == want
    assert 0.0 <= e <= 1.0
