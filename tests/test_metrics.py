"""Faithfulness and localisation metrics: hand-computed references."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
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
    from featviz.metrics._common import _gaussian_blur

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
    with pytest.raises(ValueError, match=r"maps with N=\d+ \(one per image\)"):
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
    per = average_drop(model, x, sal, 0, aggregate="none")
    torch.testing.assert_close(per, torch.tensor([drop0, 0.0]))
    assert average_drop(model, x, sal, 0) == pytest.approx(drop0 / 2, rel=1e-5)
    inc = increase_in_confidence(model, x, sal, 0, aggregate="none")
    torch.testing.assert_close(inc, torch.tensor([0.0, 100.0]))
    assert increase_in_confidence(model, x, sal, 0, batch_size=1) == 50.0
    with pytest.raises(ValueError, match="'aggregate' parameter"):
        average_drop(model, x, sal, 0, aggregate="sum")
    # `reduce` pools activations elsewhere; here it was the old name of `aggregate`
    with pytest.warns(FutureWarning, match="'reduce' parameter of average_drop is renamed"):
        assert average_drop(model, x, sal, 0, reduce="none").shape == per.shape


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
    hits = pointing_game(maps, boxes, aggregate="none")
    assert hits.tolist() == [True, False, True, False]
    assert pointing_game(maps, boxes) == 0.5
    # x1/y1 are exclusive: a box ending at the point's column misses it
    assert not pointing_game(maps[:1], torch.tensor([[0, 0, 3, 6]]), aggregate="none")[0]
    # tolerance (Euclidean): point (y=0, x=0) to box 1 (x >= 4, y >= 4): distance sqrt(32)
    assert not pointing_game(maps[1:2], boxes[1:2], tolerance=5.6, aggregate="none")[0]
    assert pointing_game(maps[1:2], boxes[1:2], tolerance=5.66, aggregate="none")[0]
    # the same with masks
    masks = torch.zeros(4, 6, 8, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        masks[i, y0:y1, x0:x1] = True
    assert pointing_game(maps, masks=masks, aggregate="none").tolist() == hits.tolist()
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
    e = energy_in_box(maps, boxes, aggregate="none")
    # (2 + 4) / 10; an all-zero map -> 0; negatives clipped: 1 / 4
    torch.testing.assert_close(e, torch.tensor([0.6, 0.0, 0.25]))
    assert energy_in_box(maps, boxes) == pytest.approx((0.6 + 0.25) / 3)
    masks = np.zeros((3, 2, 3), dtype=bool)
    masks[0, 1, :] = True
    masks[2, 0, 1] = True
    em = energy_in_box(maps, masks=masks, aggregate="none")
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
    with pytest.raises(ValueError, match=r"'heatmaps' parameter of \w+ must be non-empty"):
        call(torch.zeros(0, 4, 4))


def test_average_drop_zero_confidence_is_zero_with_a_warning():
    class Sure(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # class 1 gets probability exactly 0 in float32 (exp(-200) underflows)
            return torch.stack([torch.zeros(len(x)), torch.full((len(x),), -200.0)], 1)

    sal = torch.ones(2, 2, 2)
    with pytest.warns(RuntimeWarning, match=r"probability 0 on images \[0, 1\]"):
        per = average_drop(Sure(), torch.ones(2, 1, 2, 2), sal, target=1, aggregate="none")
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
        hit = pointing_game(sal, box, aggregate="none")
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


# --------------------------------------------------------------------------------------
# ROAD and the noisy linear imputation (issue 15)
# --------------------------------------------------------------------------------------
from featviz.metrics import RoadScores, noisy_linear_imputation, road  # noqa: E402

# a 3x3 image:   a b c     2 0 0
#                d e f  =  0 9 0
#                g h i     0 0 12
X3 = torch.tensor([[[[2.0, 0.0, 0.0], [0.0, 9.0, 0.0], [0.0, 0.0, 12.0]]]])


def _removed(*pixels: tuple[int, int], size: int = 3) -> torch.Tensor:
    m = torch.zeros(1, size, size, dtype=torch.bool)
    for y, x in pixels:
        m[0, y, x] = True
    return m


def test_imputation_by_hand():
    # one pixel: the weighted mean of its neighbours (direct 1/6, diagonal 1/12)
    centre = noisy_linear_imputation(X3, _removed((1, 1)), noise=0.0)
    assert centre[0, 0, 1, 1].item() == pytest.approx((2 + 12) / 12)  # only diagonals non-zero
    # a corner has 3 neighbours, total weight 5/12: (f/6 + h/6 + e/12) / (5/12) = 9/5
    corner = noisy_linear_imputation(X3, _removed((2, 2)), noise=0.0)
    assert corner[0, 0, 2, 2].item() == pytest.approx(9 / 5)
    # an edge pixel has 5 neighbours, weight 2/3: (a/6 + c/6 + e/6 + d/12 + f/12) / (2/3)
    edge = noisy_linear_imputation(X3, _removed((0, 1)), noise=0.0)
    assert edge[0, 0, 0, 1].item() == pytest.approx((2 / 6 + 9 / 6) / (2 / 3))
    # two removed neighbours solve together: h = (e + i) / 4 ... gives h = i = 3 (see below)
    two = noisy_linear_imputation(X3, _removed((2, 1), (2, 2)), noise=0.0)
    torch.testing.assert_close(two[0, 0, 2, 1:], torch.tensor([3.0, 3.0]))
    # a = e / 5 and e = (a + 12) / 12 give e = 60/59, a = 12/59
    ae = noisy_linear_imputation(X3, _removed((0, 0), (1, 1)), noise=0.0)
    torch.testing.assert_close(ae[0, 0, 0, 0], torch.tensor(12 / 59))
    torch.testing.assert_close(ae[0, 0, 1, 1], torch.tensor(60 / 59))
    # kept pixels are returned bit for bit, the input is not modified
    for out, mask in ((centre, _removed((1, 1))), (two, _removed((2, 1), (2, 2)))):
        assert torch.equal(out[0, 0][~mask[0]], X3[0, 0][~mask[0]])
    assert X3[0, 0, 1, 1].item() == 9.0


def test_imputation_is_linear_and_keeps_constants():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 7, 9, generator=g, dtype=torch.float64)
    masks = torch.rand(2, 7, 9, generator=g) < 0.6
    masks[:, 0, 0] = False  # at least one pixel kept
    const = torch.full((2, 3, 7, 9), 0.25, dtype=torch.float64)
    torch.testing.assert_close(noisy_linear_imputation(const, masks, noise=0.0), const)
    # the solve is linear in the image: impute(2x + 3) == 2 impute(x) + 3; dtype kept
    a = noisy_linear_imputation(2 * x + 3, masks, noise=0.0)
    b = noisy_linear_imputation(x, masks, noise=0.0)
    assert a.dtype == torch.float64
    torch.testing.assert_close(a, 2 * b + 3)
    # each imputed pixel is the weighted mean of its neighbours' final values
    w = torch.tensor([[1 / 12, 1 / 6, 1 / 12], [1 / 6, 0.0, 1 / 6], [1 / 12, 1 / 6, 1 / 12]])
    padded = F.pad(b, (1, 1, 1, 1))
    ones = F.pad(torch.ones(1, 1, 7, 9, dtype=torch.float64), (1, 1, 1, 1))
    kernel = w.double().view(1, 1, 3, 3)
    num = F.conv2d(padded.flatten(0, 1)[:, None], kernel).view_as(b)
    den = F.conv2d(ones, kernel)
    mean = num / den
    sel = masks[:, None].expand_as(b)
    torch.testing.assert_close(b[sel], mean[sel])


def test_imputation_noise_is_seeded_and_only_on_removed_pixels():
    x = torch.full((2, 3, 40, 40), 0.5)
    masks = torch.zeros(2, 40, 40, dtype=torch.bool)
    masks[:, 5:35, 5:35] = True
    a = noisy_linear_imputation(x, masks, noise=0.1, random_state=3)
    b = noisy_linear_imputation(x, masks, noise=0.1, random_state=3)
    c = noisy_linear_imputation(x, masks, noise=0.1, random_state=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(a[~masks[:, None].expand_as(a)], x[~masks[:, None].expand_as(x)])
    residual = (a - 0.5)[masks[:, None].expand_as(a)]
    assert residual.numel() == 2 * 3 * 900
    assert float(residual.std()) == pytest.approx(0.1, rel=0.05)  # 5400 draws, seeded
    assert abs(float(residual.mean())) < 0.01
    # image 1's noise depends on its index only: imputing it alone as image 0 differs
    alone = noisy_linear_imputation(x[1:], masks[1:], noise=0.1, random_state=3)
    assert not torch.equal(alone[0], a[1])


def test_imputation_errors():
    with pytest.raises(ValueError, match=r"'masks' parameter of noisy_linear_imputation"):
        noisy_linear_imputation(X3, _removed((1, 1)).float())
    with pytest.raises(ValueError, match=r"shape \(1, 3, 3\)"):
        noisy_linear_imputation(X3, torch.zeros(1, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"removes every pixel of images \[0\]"):
        noisy_linear_imputation(X3, torch.ones(1, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"'noise' parameter of noisy_linear_imputation .* "):
        noisy_linear_imputation(X3, _removed((1, 1)), noise=-0.1)
    with pytest.raises(ValueError, match=r"'noise' parameter"):
        noisy_linear_imputation(X3, _removed((1, 1)), noise=float("nan"))
    with pytest.raises(ValueError, match=r"'random_state' parameter"):
        noisy_linear_imputation(X3, _removed((1, 1)), random_state=-1)
    with pytest.raises(TypeError, match=r"'images' parameter"):
        noisy_linear_imputation(X3.numpy(), _removed((1, 1)))


class Pick3(nn.Module):
    """Class 0 logit = a + e + i of a (N, 1, 3, 3) image; class 1 logit = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(9, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.weight[0, [0, 4, 8]] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


# ranks e, a, b, c, d, f, g, h, i: MoRF removes e then a, LeRF removes i then h
HEAT3 = torch.tensor([[[8.0, 7.0, 6.0], [5.0, 9.0, 4.0], [3.0, 2.0, 1.0]]])


def test_road_by_hand():
    # fractions 0.12 and 0.2 of 9 pixels: k = round(1.08) = 1 and round(1.8) = 2
    res = road(Pick3(), X3, HEAT3, 0, fractions=(0.12, 0.2), noise=0.0, probability=False)
    assert isinstance(res, RoadScores)
    # MoRF: e -> 14/12, score 2 + 7/6 + 12; then a, e -> 12/59, 60/59 (imputation test)
    morf = [2 + 7 / 6 + 12, 12 / 59 + 60 / 59 + 12]
    # LeRF: i -> 9/5, score 2 + 9 + 9/5; then h, i -> 3, 3
    lerf = [2 + 9 + 9 / 5, 2 + 9 + 3]
    torch.testing.assert_close(res.morf, torch.tensor([morf]))
    torch.testing.assert_close(res.lerf, torch.tensor([lerf]))
    torch.testing.assert_close(res.fractions, torch.tensor([0.12, 0.2]))
    combined = (sum(lerf) / 2 - sum(morf) / 2) / 2
    torch.testing.assert_close(res.score, torch.tensor([combined]))
    only = road(Pick3(), X3, HEAT3, 0, fractions=(0.12, 0.2), order="morf", noise=0.0,
                probability=False)  # fmt: skip
    assert only.lerf is None
    torch.testing.assert_close(only.score, torch.tensor([sum(morf) / 2]))
    only = road(Pick3(), X3, HEAT3, 0, fractions=(0.12, 0.2), order="lerf", noise=0.0,
                probability=False)  # fmt: skip
    assert only.morf is None
    torch.testing.assert_close(only.score, torch.tensor([sum(lerf) / 2]))
    # probability: softmax over (s, 0) is the sigmoid of s
    prob = road(Pick3(), X3, HEAT3, 0, fractions=(0.12, 0.2), noise=0.0)
    sig = torch.sigmoid(torch.tensor([morf], dtype=torch.float64)).float()
    torch.testing.assert_close(prob.morf, sig)


# 4x4 heat with ties; ranking (ties row-major): 3s (0,0) (1,1); 2s row 2; 1s (0,1) (0,2)
# (1,0) (3,2); 0s (0,3) (1,2) (1,3) (3,0) (3,1) (3,3)
HEAT4 = torch.tensor([[[3.0, 1, 1, 0], [1, 3, 0, 0], [2, 2, 2, 2], [0, 0, 1, 0]]])
MORF4 = {
    2: [(0, 0), (1, 1)],
    5: [(0, 0), (1, 1), (2, 0), (2, 1), (2, 2)],
    8: [(0, 0), (1, 1), (2, 0), (2, 1), (2, 2), (2, 3), (0, 1), (0, 2)],
}
LERF4 = {
    2: [(3, 1), (3, 3)],
    5: [(1, 2), (1, 3), (3, 0), (3, 1), (3, 3)],
    8: [(1, 0), (3, 2), (0, 3), (1, 2), (1, 3), (3, 0), (3, 1), (3, 3)],
}


class Recorder(nn.Module):
    """Records every input; logits (sum, 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        s = x.flatten(1).sum(1)
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_road_removes_exactly_the_top_or_bottom_pixels_ties_row_major():
    model = Recorder()
    x = torch.full((1, 2, 4, 4), 0.5)
    # fractions 0.125, 0.3125, 0.5 of 16 pixels: k = 2, 5, 8
    road(model, x, HEAT4, 0, fractions=(0.125, 0.3125, 0.5), noise=0.5, batch_size=6)
    inputs = torch.cat(model.inputs[1:])  # [0] is the probe that checks the target
    assert len(inputs) == 6
    got = [frozenset(map(tuple, (img[0] != 0.5).nonzero().tolist())) for img in inputs]
    for img in inputs:  # both channels are removed at the same pixels
        assert torch.equal(img[0] != 0.5, img[1] != 0.5)
    want = [frozenset(v) for v in (*MORF4.values(), *LERF4.values())]
    assert got == want  # per image: MoRF fractions, then LeRF fractions


def test_road_model_calls_and_batching():
    calls = []

    class Counting(Pick3):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(len(x))
            return super().forward(x)

    x = torch.rand(3, 1, 3, 3, generator=torch.Generator().manual_seed(1))
    heat = torch.rand(3, 3, 3, generator=torch.Generator().manual_seed(2))
    fr = (0.2, 0.5, 0.7)
    cases = [  # (target, order, batch_size) -> batch sizes the model sees
        (None, "both", 4, [3, 4, 4, 4, 4, 2]),  # arg-max pass, then 3 x 2 x 3 = 18 images
        (0, "both", 4, [1, 4, 4, 4, 4, 2]),  # a 1-image probe checks the target
        (None, "both", 1, [1] * 21),
        (0, "morf", 4, [1, 4, 4, 1]),
        ([0, 1, 0], "lerf", 9, [1, 9]),
    ]
    results = {}
    for target, order, bs, want in cases:
        calls.clear()
        results[(target is None, order, bs)] = road(
            Counting(), x, heat, target, fractions=fr, order=order, batch_size=bs, noise=0.1
        )
        assert calls == want, (target, order, bs)
    # results do not depend on batch_size, and MoRF is the same alone or with LeRF
    a, b = results[(True, "both", 4)], results[(True, "both", 1)]
    torch.testing.assert_close(a.morf, b.morf)
    torch.testing.assert_close(a.lerf, b.lerf)
    torch.testing.assert_close(results[(False, "morf", 4)].morf, a.morf)
    assert a.morf.shape == (3, 3) and a.score.shape == (3,)


def test_road_random_state():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(27, 4))
    x = torch.rand(2, 3, 3, 3)
    heat = torch.rand(2, 3, 3)
    state = torch.get_rng_state()
    a = road(model, x, heat, fractions=(0.3, 0.6), random_state=5)
    assert torch.equal(torch.get_rng_state(), state)  # no global RNG use
    b = road(model, x, heat, fractions=(0.3, 0.6), random_state=5)
    c = road(model, x, heat, fractions=(0.3, 0.6), random_state=6)
    assert torch.equal(a.morf, b.morf) and torch.equal(a.lerf, b.lerf)
    assert not torch.equal(a.morf, c.morf)
    d = road(model, x, heat, fractions=(0.3, 0.6), noise=0.0, random_state=5)
    e = road(model, x, heat, fractions=(0.3, 0.6), noise=0.0, random_state=6)
    assert torch.equal(d.morf, e.morf)  # without noise the seed plays no part
    # LeRF alone draws the same noise as LeRF next to MoRF
    lerf = road(model, x, heat, fractions=(0.3, 0.6), order="lerf", random_state=5)
    torch.testing.assert_close(lerf.lerf, a.lerf)  # up to batched float rounding
    # two copies of one image get independent noise, so their scores differ
    pair = (x[:1].expand(2, -1, -1, -1), heat[:1].expand(2, -1, -1))
    twin = road(model, *pair, fractions=(0.3, 0.6), random_state=5)
    assert not torch.equal(twin.morf[0], twin.morf[1])
    torch.testing.assert_close(twin.morf[0], a.morf[0])


def test_road_leaves_model_and_inputs_as_found():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Dropout(0.5))
    model.train()
    model[2].eval()
    flags = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 1, 2, 2)
    x0 = x.clone()
    heat = torch.rand(4, 2, 2)
    heat0 = heat.clone()
    a = road(model, x, heat, fractions=(0.25, 0.5))
    assert [m.training for m in model.modules()] == flags
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x0) and torch.equal(heat, heat0)
    torch.testing.assert_close(road(model.eval(), x, heat, fractions=(0.25, 0.5)).score, a.score)


def test_road_errors():
    model = Pick3()
    for bad in ((0.0, 0.5), (0.5, 1.0), (), "0.5", 0.5, [[0.5]], (float("nan"),)):
        with pytest.raises(ValueError, match=r"'fractions' parameter of road must be a non"):
            road(model, X3, HEAT3, fractions=bad)
    # 2x2 images: 0.9 removes round(3.6) = 4 pixels, all of them
    with pytest.raises(ValueError, match=r"removes every pixel of a 2x2 image at 0\.9"):
        road(Linear4(), ONES, SAL, fractions=(0.5, 0.9))
    with pytest.raises(ValueError, match=r"'order' parameter of road must be one of"):
        road(model, X3, HEAT3, order="MoRF")
    with pytest.raises(ValueError, match=r"'noise' parameter of road must be a float"):
        road(model, X3, HEAT3, noise=-1)
    with pytest.raises(ValueError, match=r"'batch_size' parameter of road"):
        road(model, X3, HEAT3, batch_size=0)
    with pytest.raises(ValueError, match=r"'random_state' parameter of road"):
        road(model, X3, HEAT3, random_state=1.5)
    with pytest.raises(ValueError, match=r"maps with N=\d+ \(one per image\)"):
        road(model, X3.expand(2, -1, -1, -1), HEAT3)
    with pytest.raises(TypeError, match=r"'model' parameter"):
        road(lambda t: t, X3, HEAT3)


@pytest.mark.filterwarnings("ignore:__array_wrap__:DeprecationWarning")  # their np.argwhere
def test_road_matches_pytorch_grad_cam():
    pgc = pytest.importorskip("pytorch_grad_cam.metrics.road")
    from pytorch_grad_cam.utils.model_targets import (
        ClassifierOutputSoftmaxTarget,
        ClassifierOutputTarget,
    )

    class NoNoise(pgc.NoisyLinearImputer):  # their noise comes from the global RNG
        def __init__(self) -> None:
            super().__init__(noise=0.0)

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(400, 5)
    ).eval()
    # 10x10 images: their percentile thresholds then remove exactly 10%, ..., 90%
    x = torch.randn(3, 3, 10, 10)
    heat = torch.rand(3, 10, 10)  # no ties
    classes = model(x).argmax(1).tolist()
    masks = torch.rand(3, 10, 10) < 0.5
    theirs = torch.stack([NoNoise()(x[i], (~masks[i]).float()) for i in range(3)])
    torch.testing.assert_close(noisy_linear_imputation(x, masks, noise=0.0), theirs)
    mp = pytest.MonkeyPatch()
    mp.setattr(pgc, "NoisyLinearImputer", NoNoise)
    try:
        for prob, make in ((True, ClassifierOutputSoftmaxTarget), (False, ClassifierOutputTarget)):
            ours = road(model, x, heat, noise=0.0, probability=prob)
            targets = [make(c) for c in classes]
            combined = pgc.ROADCombined()(x, heat.numpy(), targets, model)
            torch.testing.assert_close(ours.score, torch.from_numpy(combined))
            with torch.no_grad():
                intact = torch.stack([t(o) for t, o in zip(targets, model(x), strict=True)])
            for j, p in enumerate(range(10, 100, 10)):
                # their percentile p keeps p% of the pixels: our fraction 1 - p / 100
                morf = pgc.ROADMostRelevantFirst(p)(x, heat.numpy(), targets, model)
                lerf = pgc.ROADLeastRelevantFirst(p)(x, heat.numpy(), targets, model)
                col = 8 - j
                torch.testing.assert_close(ours.morf[:, col] - intact, torch.from_numpy(morf))
                torch.testing.assert_close(ours.lerf[:, col] - intact, torch.from_numpy(lerf))
    finally:
        mp.undo()


# --------------------------------------------------------------------------------------
# targets: one scoring path (featviz._scoring) for every metric
# --------------------------------------------------------------------------------------
from featviz.targets import (  # noqa: E402
    BoxTarget,
    ClassesTarget,
    ClassTarget,
    ProbabilityTarget,
    SegmentationTarget,
)


def _small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))


def _results(name: str, model: nn.Module, x, sal, target, **kw) -> list[torch.Tensor]:
    """The tensors a metric returns, for exact comparisons."""
    if name in ("deletion_auc", "insertion_auc"):
        fn = deletion_auc if name == "deletion_auc" else insertion_auc
        res = fn(model, x, sal, target, steps=4, batch_size=3, **kw)
        return [res.auc, res.curve]
    if name == "road":
        res = road(model, x, sal, target, fractions=(0.25, 0.5), batch_size=3, **kw)
        return [res.score, res.morf, res.lerf]
    fn = average_drop if name == "average_drop" else increase_in_confidence
    return [fn(model, x, sal, target, batch_size=2, aggregate="none")]


MODEL_METRICS = ["deletion_auc", "insertion_auc", "road", "average_drop", "increase_in_confidence"]


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("name", MODEL_METRICS)
def test_class_target_and_callable_score_exactly_as_an_int(name):
    model, x = _small(), torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    sal = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(2))
    ref = _results(name, model, x, sal, 1)
    assert _same(_results(name, model, x, sal, ClassTarget(1)), ref)
    assert _same(_results(name, model, x, sal, ProbabilityTarget(1)), ref)
    # a callable's scores are used as it returns them: the probability, by hand
    assert _same(_results(name, model, x, sal, lambda o: o.softmax(1)[:, 1]), ref)
    # the predicted class is fixed on the intact images, as the same classes given
    classes = model(x).argmax(1).tolist()
    assert _same(_results(name, model, x, sal, None), _results(name, model, x, sal, classes))
    assert _same(
        _results(name, model, x, sal, ClassTarget(classes)), _results(name, model, x, sal, None)
    )
    if name in ("deletion_auc", "insertion_auc", "road"):
        logit = _results(name, model, x, sal, 1, probability=False)
        assert not _same(logit, ref)
        assert _same(_results(name, model, x, sal, ClassTarget(1), probability=False), logit)
        assert _same(_results(name, model, x, sal, lambda o: o[:, 1], probability=False), logit)
        # ProbabilityTarget is a probability whatever `probability` says
        assert _same(_results(name, model, x, sal, ProbabilityTarget(1), probability=False), ref)
        # ClassesTarget sums its classes' logits (probabilities with probability=True)
        two = _results(name, model, x, sal, ClassesTarget([0, 2]), probability=False)
        by_hand = _results(name, model, x, sal, lambda o: o[:, [0, 2]].sum(1), probability=False)
        assert _same(two, by_hand)


class FakeDetector(nn.Module):
    """One detection per image, torchvision-style: box (0, 0, 2, 2), label 1, score =
    the mean of the image's top-left 2x2 pixels."""

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [
            {
                "boxes": torch.tensor([[0.0, 0.0, 2.0, 2.0]]),
                "labels": torch.tensor([1]),
                "scores": img[:, :2, :2].mean()[None],
            }
            for img in x
        ]


def test_box_target_on_a_detector_scores_in_deletion_auc():
    x = torch.ones(1, 1, 4, 4)
    target = BoxTarget(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), classes=1)
    inside = torch.zeros(1, 4, 4)
    inside[0, :2, :2] = 1.0  # the box's pixels first: the score drops at once
    res = deletion_auc(FakeDetector(), x, inside, target, steps=4)
    # 0, 4, 8, 12, 16 pixels removed: the box's 4 go at the first step
    torch.testing.assert_close(res.curve, torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(res.auc, torch.tensor([0.125]))
    outside = 1.0 - inside  # the box's pixels last: the score stays until the end
    res = deletion_auc(FakeDetector(), x, outside, target, steps=4)
    torch.testing.assert_close(res.curve, torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]]))
    torch.testing.assert_close(res.auc, torch.tensor([0.875]))
    # a detector has no class logits: a class target says what to pass
    with pytest.raises(ValueError, match="BoxTarget"):
        deletion_auc(FakeDetector(), x, inside, 1)


def test_box_target_confidence_in_average_drop_is_its_score():
    x = torch.ones(2, 1, 4, 4)
    target = BoxTarget(top_k=1)
    half = torch.full((2, 4, 4), 0.5)
    half[1, :2, :2] = 1.0  # image 1 keeps the box's pixels: its score stays 1
    # image 0: Y = 1 (the detection's score), O = 0.5 -> a 50 % drop; image 1: no drop
    per = average_drop(FakeDetector(), x, half, target, aggregate="none")
    torch.testing.assert_close(per, torch.tensor([50.0, 0.0]))
    brighter = torch.ones(2, 4, 4)
    inc = increase_in_confidence(FakeDetector(), x * 0.5, brighter * 2, target, aggregate="none")
    torch.testing.assert_close(inc, torch.tensor([100.0, 100.0]))
    # a score <= 0 is no confidence to drop from: term 0, with a warning naming the score
    with pytest.warns(RuntimeWarning, match=r"score 0 or less on images \[0, 1\]"):
        per = average_drop(FakeDetector(), x * 0, half, target, aggregate="none")
    assert per.tolist() == [0.0, 0.0]


def test_per_image_targets_follow_their_images_in_mixed_batches():
    # a segmenter: class 1's logits are 2x the image; one mask per image
    class Seg(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": torch.cat([x, 2 * x], 1)}

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 1, 4, 4, generator=gen)
    sal = torch.rand(3, 4, 4, generator=gen)
    masks = torch.rand(3, 4, 4, generator=gen) > 0.5
    both = deletion_auc(Seg(), x, sal, SegmentationTarget(1, masks), steps=4, batch_size=4)
    for i in range(3):  # batches of 4 mix the images' steps: each keeps its own mask
        one = deletion_auc(
            Seg(), x[i : i + 1], sal[i : i + 1], SegmentationTarget(1, masks[i]), steps=4
        )
        torch.testing.assert_close(both.curve[i], one.curve[0])
    first = (2 * x[:, 0] * masks).sum((1, 2))
    torch.testing.assert_close(both.curve[:, 0], first)


@pytest.mark.parametrize(
    "form",
    [
        lambda m: m,  # (N, H, W) tensor
        lambda m: m[:, None],  # (N, 1, H, W), as overlay and explore take it
        lambda m: m.numpy(),
        lambda m: m[:, None].numpy().astype(np.float16),
        lambda m: m.bfloat16(),
    ],
)
def test_localisation_metrics_take_every_heatmap_form_alike(form):
    maps = torch.tensor([[[0.0, 1.0], [0.2, 0.0]], [[0.5, 0.0], [0.0, 0.25]]])
    boxes = torch.tensor([[1, 0, 2, 1], [1, 1, 2, 2]])  # (x0, y0, x1, y1), exclusive ends
    assert pointing_game(form(maps), boxes) == 0.5  # image 0 hits, image 1 misses
    # float16/bfloat16 hold 0.2 to 3 significant digits
    assert energy_in_box(form(maps), boxes) == pytest.approx((1 / 1.2 + 0.25 / 0.75) / 2, rel=1e-3)


# -- baselines ------------------------------------------------------------------------------
def test_baseline_maps_by_hand():
    from featviz.metrics import baseline_maps

    # a vertical step edge: Sobel x = 4 on both sides of it, 0 at the (reflected) borders
    step = torch.tensor([0.0, 0.0, 1.0, 1.0]).expand(1, 3, 4, 4)
    edges = baseline_maps(step, "edges")
    torch.testing.assert_close(edges, torch.tensor([0.0, 1.0, 1.0, 0.0]).expand(1, 4, 4))
    assert baseline_maps(torch.ones(2, 3, 4, 4), "edges").abs().max() == 0  # nothing to see
    # centred Gaussian, sigma = min(H, W) / 4 = 0.75 on a 3 x 3 image
    g = baseline_maps(torch.zeros(2, 1, 3, 3), "gaussian")
    assert g.shape == (2, 3, 3) and g[0, 1, 1] == 1.0
    assert g[1, 0, 0].item() == pytest.approx(math.exp(-2 / (2 * 0.75**2)))
    assert g[0, 0, 1].item() == pytest.approx(math.exp(-1 / (2 * 0.75**2)))
    r = baseline_maps(torch.zeros(3, 1, 5, 6), "random", random_state=3)
    assert r.shape == (3, 5, 6) and 0 <= r.min() and r.max() < 1
    assert torch.equal(r, baseline_maps(torch.zeros(3, 1, 5, 6), "random", random_state=3))
    assert not torch.equal(r, baseline_maps(torch.zeros(3, 1, 5, 6), "random", random_state=4))
    with pytest.raises(ValueError, match="'kind' parameter of baseline_maps"):
        baseline_maps(step, "sobel")


def test_compare_baselines_scores_each_map_in_the_metrics_direction():
    from featviz.metrics import baseline_maps, compare_baselines

    model = Linear4()
    images = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[2.0, 0.5], [1.0, 3.0]]]])
    heatmaps = torch.cat([SAL, SAL])
    table = compare_baselines(
        deletion_auc, images, heatmaps, model=model, target=0, steps=4, probability=False
    )
    assert list(table.index) == ["heatmaps", "random", "edges", "gaussian"]
    for name in table.index:
        maps = heatmaps if name == "heatmaps" else baseline_maps(images, name)
        auc = deletion_auc(model, images, maps, 0, steps=4, probability=False).auc.mean()
        assert table.loc[name, "score"] == pytest.approx(auc.item())
        # lower is better for deletion: margin = baseline score - heatmaps score
        assert table.loc[name, "margin"] == pytest.approx(
            table.loc[name, "score"] - table.loc["heatmaps", "score"]
        )
    margin = table.loc["edges", "margin"]
    word = "beat" if margin > 0 else "trail"
    assert table.loc["edges", "verdict"] == f"heatmaps {word} edges by {abs(margin):.3g}"
    # localisation metric: no images parameter, higher is better, aggregate="none" passed on
    boxes = torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2]])
    hits = compare_baselines(pointing_game, images, heatmaps, kinds=["gaussian"], boxes=boxes)
    assert hits.loc["heatmaps", "score"] == 1.0  # SAL's maximum is the bottom-right pixel
    # a 2 x 2 centred Gaussian is constant: no maximum, a miss (higher is better)
    assert hits.loc["gaussian", "score"] == 0.0 and hits.loc["gaussian", "margin"] == 1.0
    assert hits.loc["gaussian", "verdict"] == "heatmaps beat gaussian by 1"
    with pytest.raises(ValueError, match="'higher_is_better' parameter"):
        compare_baselines(lambda heatmaps: heatmaps.mean((1, 2)), images, heatmaps)
    custom = compare_baselines(
        lambda heatmaps: heatmaps.mean((1, 2)), images, heatmaps, higher_is_better=True
    )
    assert custom.loc["gaussian", "margin"] == pytest.approx(
        SAL.mean().item() - baseline_maps(images, "gaussian").mean().item()
    )


def test_one_mask_rule_soft_masks_keep_their_object():
    # issue 22: a soft mask (0.9 in, 0.01 out) counted every maximum as a hit
    maps = torch.zeros(2, 4, 4)
    maps[0, 0, 0] = 1.0  # outside the object
    maps[1, 3, 3] = 1.0  # inside it
    soft = torch.full((2, 4, 4), 0.01)
    soft[:, 2:, 2:] = 0.9
    hard = soft >= 0.5
    assert pointing_game(maps, masks=soft, aggregate="none").tolist() == [False, True]
    assert pointing_game(maps, masks=soft) == pointing_game(maps, masks=hard) == 0.5
    assert energy_in_box(maps, masks=soft.numpy()) == energy_in_box(maps, masks=hard) == 0.5


@pytest.mark.parametrize(
    "box", [[2, 2, 2, 4], [3, 1, 1, 3], [10, 10, 12, 12], [-5, 0, 0, 4]]
)  # empty width, inverted, off the map, left of the map
def test_boxes_without_pixels_are_refused_not_a_silent_miss(box):
    maps = torch.rand(1, 4, 4)
    for metric in (pointing_game, energy_in_box):
        with pytest.raises(ValueError, match=r"'boxes' .* empty or off-map .* row 0"):
            metric(maps, torch.tensor([box]))


@pytest.mark.parametrize("tolerance", ["a", None, True, -1, float("nan")])
def test_pointing_game_tolerance_is_a_number_of_pixels(tolerance):
    with pytest.raises(ValueError, match=r"'tolerance' parameter of pointing_game must be a num"):
        pointing_game(torch.rand(1, 4, 4), torch.tensor([[0, 0, 2, 2]]), tolerance=tolerance)
