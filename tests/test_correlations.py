"""Tests for featviz.correlations: exact matrices, hand-made threshold cases, drawn objects."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from featviz.correlations import (
    correlation,
    plot_correlation,
    plot_correlation_maps,
    threshold_labels,
)

# --------------------------------------------------------------------------- correlation

X3 = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]])


def test_pearson_exact_small_example():
    # col 0 centred (-1, 0, 1), col 1 centred (-7/3, -1/3, 8/3):
    # cov = 15/3 / 2 = 2.5, var0 = 1, var1 = 114/9 / 2
    r = 2.5 / np.sqrt(114 / 18)
    out = correlation(X3)
    np.testing.assert_allclose(out, [[1.0, r], [r, 1.0]], rtol=0, atol=1e-15)
    np.testing.assert_allclose(out, np.corrcoef(X3.T), atol=1e-15)
    assert out.dtype == np.float64


def test_spearman_average_ties_by_hand():
    x = np.array([[1.0, 1.0], [2.0, 1.0], [2.0, 3.0], [3.0, 2.0]])
    ranks = np.array([[1.0, 1.5], [2.5, 1.5], [2.5, 4.0], [4.0, 3.0]])  # average ties
    expected = np.corrcoef(ranks.T)
    out = correlation(x, method="spearman")
    np.testing.assert_allclose(out, expected, atol=1e-15)
    # centred ranks (-1.5, 0, 0, 1.5) and (-1, -1, 1.5, 0.5): 2.25 / sqrt(4.5 * 4.5) = 0.5
    np.testing.assert_allclose(out[0, 1], 0.5, atol=1e-15)


def test_cosine_and_covariance_exact():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_allclose(correlation(x, method="cosine"), [[1, 0.5], [0.5, 1]], atol=1e-15)
    # covariance with ddof=1: var = 1/3 each, cov = -1/6
    np.testing.assert_allclose(
        correlation(x, method="covariance"), [[1 / 3, -1 / 6], [-1 / 6, 1 / 3]], atol=1e-15
    )


@pytest.mark.parametrize("method", ["pearson", "spearman", "cosine", "covariance"])
def test_matches_references_with_ties(method):
    import pandas as pd
    from scipy import stats

    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(40, 6)), 1)  # rounding creates ties for spearman
    df = pd.DataFrame(x)
    if method == "pearson":
        ref = df.corr().to_numpy()
    elif method == "spearman":
        ref = df.corr("spearman").to_numpy()
        np.testing.assert_allclose(ref, stats.spearmanr(x).statistic, atol=1e-12)
    elif method == "covariance":
        ref = np.cov(x, rowvar=False)
    else:
        unit = x / np.linalg.norm(x, axis=0)
        ref = unit.T @ unit
    np.testing.assert_allclose(correlation(x, method=method), ref, atol=1e-12)
    np.testing.assert_allclose(correlation(x.T, method=method, axis=1), ref, atol=1e-12)


def test_constant_column_gives_zero_and_warns():
    x = np.array([[1.0, 5.0, 2.0], [2.0, 5.0, 1.0], [4.0, 5.0, 0.0]])
    with pytest.warns(RuntimeWarning, match=r"1 of the 3 variables are constant \(columns 1\)"):
        out = correlation(x)
    assert not np.isnan(out).any()
    np.testing.assert_array_equal(out[1], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(out[:, 1], [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(np.diag(out), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(out[0, 2], np.corrcoef(x[:, 0], x[:, 2])[0, 1])
    with pytest.warns(RuntimeWarning, match=r"rows 1"):
        correlation(x.T, axis=1, method="spearman")


def test_constant_fraction_column_detected_exactly():
    # 0.1 repeated: centring leaves ~1e-17 residue; still reported as constant, no NaN/huge values
    x = np.array([[0.1, 1.0], [0.1, 2.0], [0.1, 4.0]])
    with pytest.warns(RuntimeWarning, match="columns 0"):
        out = correlation(x)
    np.testing.assert_array_equal(out, [[0.0, 0.0], [0.0, 1.0]])


def test_cosine_warns_only_for_zero_columns_and_covariance_never():
    x = np.array([[0.0, 3.0, 1.0], [0.0, 3.0, 2.0]])
    with pytest.warns(RuntimeWarning, match=r"all-zero \(columns 0\)"):
        out = correlation(x, method="cosine")
    np.testing.assert_allclose(out[1, 2], 3 / np.sqrt(5) / np.sqrt(2) / np.sqrt(1), atol=1e-15)
    np.testing.assert_array_equal(np.diag(out), [0.0, 1.0, 1.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cov = correlation(x, method="covariance")
    np.testing.assert_array_equal(cov[0], [0.0, 0.0, 0.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_input_raises_with_count_and_position(bad):
    x = np.arange(12.0).reshape(4, 3)
    x[1, 0] = bad
    x[3, 2] = bad
    with pytest.raises(ValueError, match=r"2 non-finite value\(s\).*row 1, column 0"):
        correlation(x)
    with pytest.raises(ValueError, match="row 1, column 0"):
        correlation(torch.from_numpy(x))


def test_tensor_in_tensor_out_dtype_device_and_inputs_untouched():
    x = torch.tensor(X3, dtype=torch.float32, requires_grad=True)
    before = x.detach().clone()
    out = correlation(x)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32 and out.device == x.device and out.shape == (2, 2)
    assert not out.requires_grad
    np.testing.assert_allclose(out.numpy(), np.corrcoef(X3.T), atol=1e-6)
    assert torch.equal(x.detach(), before) and x.grad is None
    assert correlation(x.double()).dtype == torch.float64
    assert correlation(torch.tensor([[1, 2], [2, 1], [3, 3]])).dtype == torch.float32
    half = correlation(x.detach().half(), method="spearman")
    assert half.dtype == torch.float16
    assert correlation(X3.astype(np.float32)).dtype == np.float32
    listed = correlation([[1, 2], [2, 4], [3, 7]])
    assert isinstance(listed, np.ndarray) and listed.dtype == np.float64
    arr = X3.copy()
    correlation(arr, method="spearman")
    np.testing.assert_array_equal(arr, X3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensor_stays_on_device():
    x = torch.tensor(X3, device="cuda")
    for method in ("pearson", "spearman", "cosine", "covariance"):
        out = correlation(x, method=method)
        assert out.device == x.device
        np.testing.assert_allclose(out.cpu().numpy(), correlation(X3, method=method), atol=1e-12)


def test_correlation_argument_errors():
    with pytest.raises(ValueError, match=r"'method' parameter of correlation must be one of"):
        correlation(X3, method="kendall")
    with pytest.raises(ValueError, match=r"'axis' parameter of correlation must be 0 or 1"):
        correlation(X3, axis=2)
    with pytest.raises(ValueError, match=r"must be 2-D \(N, K\). Got shape \(3,\)"):
        correlation(np.ones(3))
    with pytest.raises(ValueError, match="at least 2 observation"):
        correlation(np.ones((1, 3)))
    with pytest.raises(TypeError, match="numeric"):
        correlation(np.array([["a", "b"], ["c", "d"]]))
    correlation(np.array([[1.0, 2.0]]), method="cosine")  # one observation is enough


# --------------------------------------------------------------------------- threshold labels

# max 4, min 0 -> midpoint 2; column means (2/3, 8/3, 2); row means (5/3, 3, 2/3)
M = np.array([[0.0, 4.0, 1.0], [2.0, 4.0, 3.0], [0.0, 0.0, 2.0]])
NAMES = ["cat", "dog", "car"]


def test_midpoint_rule_and_tie_is_not_selected():
    assert threshold_labels(M) == [1]  # column 2 has mean exactly 2.0: strictly greater only
    assert threshold_labels(M, NAMES) == ["dog"]
    assert threshold_labels(M, threshold=1.9) == [1, 2]
    assert threshold_labels(M, threshold=2.0) == [1]
    assert threshold_labels(M, threshold=-1) == [0, 1, 2]
    assert threshold_labels(np.full((3, 3), 0.5)) == []


def test_axis_1_scores_rows():
    assert threshold_labels(M, axis=1) == [1]
    assert threshold_labels(M, ["r0", "r1", "r2"], axis=1, threshold=1.0) == ["r0", "r1"]
    wide = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # (2, 3): row means 1/3, 1; midpoint 0.5
    assert threshold_labels(wide, ["a", "b"], axis=1) == ["b"]


def test_reduce_max_and_sum():
    assert threshold_labels(M, statistic="max") == [1, 2]  # maxima (2, 4, 3) > 2
    assert threshold_labels(M, statistic="sum", threshold=6) == [1]  # sums (2, 8, 6)
    assert threshold_labels(M, statistic="sum", threshold=5.5) == [1, 2]


def test_quantile_threshold():
    assert threshold_labels(M, quantile=0.5) == [1]  # median 2 (col 2), strictly greater
    assert threshold_labels(M, quantile=0.0) == [1, 2]
    assert threshold_labels(M, quantile=1.0) == []
    # linear interpolation like numpy: q=0.25 between 2/3 and 2 -> 4/3
    assert threshold_labels(M, quantile=0.25) == [1, 2]


def test_stack_gives_one_list_per_matrix():
    stack = np.stack([M, -M, M.T])
    # -M: midpoint -2, column means (-2/3, -8/3, -2) -> only column 0
    # M.T: column means are M's row means (5/3, 3, 2/3) -> column 1
    assert threshold_labels(stack) == [[1], [0], [1]]
    assert threshold_labels(stack, NAMES) == [["dog"], ["cat"], ["dog"]]
    assert threshold_labels(torch.from_numpy(stack).float(), NAMES) == [["dog"], ["cat"], ["dog"]]
    assert threshold_labels(stack, threshold=0.0) == [[0, 1, 2], [], [0, 1, 2]]


def test_names_wrong_length_names_both_lengths():
    with pytest.raises(ValueError, match=r"got 2 names for a matrix with 3 columns"):
        threshold_labels(M, ["a", "b"])
    with pytest.raises(ValueError, match=r"got 3 names for a matrix with 2 rows"):
        threshold_labels(np.ones((2, 3)), ["a", "b", "c"], axis=1)
    with pytest.raises(TypeError, match="not a string"):
        threshold_labels(M, "abc")


def test_nan_raises_with_position():
    bad = M.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"1 non-finite value\(s\).*row 1, column 2"):
        threshold_labels(bad)
    with pytest.raises(ValueError, match=r"matrix 1, row 1, column 2"):
        threshold_labels(np.stack([M, bad]))


def test_threshold_label_argument_errors():
    with pytest.raises(ValueError, match="mutually exclusive"):
        threshold_labels(M, threshold=0.5, quantile=0.5)
    with pytest.raises(ValueError, match=r"'quantile' parameter .* range \[0, 1\]. Got 1.5"):
        threshold_labels(M, quantile=1.5)
    with pytest.raises(ValueError, match="'threshold' parameter"):
        threshold_labels(M, threshold=float("nan"))
    with pytest.raises(ValueError, match="'statistic' parameter"):
        threshold_labels(M, statistic="median")
    # `reduce` pools activations elsewhere; here it was this score's old name
    with pytest.warns(FutureWarning, match="'reduce' parameter of threshold_labels is renamed"):
        assert threshold_labels(M, reduce="max") == [1, 2]
    with pytest.raises(ValueError, match=r"2-D \(R, K\) or a 3-D stack"):
        threshold_labels(np.ones(4))


# --------------------------------------------------------------------------- plot_correlation


def test_plot_draws_labels_values_and_annotations():
    import matplotlib.pyplot as plt

    mat = np.array([[1.0, -0.5, 0.25], [-0.5, 1.0, 0.0], [0.25, 0.0, 1.0]])
    ax = plot_correlation(torch.tensor(mat), ["a", "b", "c"], annot=True, vmin=-1, vmax=1)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    mesh = ax.collections[0]
    np.testing.assert_array_equal(np.asarray(mesh.get_array()).reshape(3, 3), mat)
    assert mesh.get_clim() == (-1, 1)
    assert [t.get_text() for t in ax.texts] == [f"{v:.2f}" for v in mat.ravel()]
    assert ax.get_title() == "Correlation"
    assert ax.figure in [plt.figure(n) for n in plt.get_fignums()]


def test_clip_negative_reproduces_product_without_negative_zero():
    mat = np.array([[1.0, -0.5], [-0.25, 0.75]])
    ax = plot_correlation(mat, annot=True, fmt=".1f", clip_negative=True)
    values = np.asarray(ax.collections[0].get_array()).reshape(2, 2)
    np.testing.assert_array_equal(values, mat * (mat >= 0))
    assert not np.signbit(values).any()
    assert [t.get_text() for t in ax.texts] == ["1.0", "0.0", "0.0", "0.8"]
    np.testing.assert_array_equal(mat, [[1.0, -0.5], [-0.25, 0.75]])  # input untouched


def test_mask_upper_and_custom():
    mat = np.arange(9.0).reshape(3, 3)
    arr = ax_array(plot_correlation(mat, mask="upper"))
    np.testing.assert_array_equal(np.ma.getmaskarray(arr), np.triu(np.ones((3, 3), bool), k=1))
    custom = np.zeros((3, 3), bool)
    custom[2, 0] = True
    arr = ax_array(plot_correlation(mat, mask=custom))
    np.testing.assert_array_equal(np.ma.getmaskarray(arr), custom)
    with pytest.raises(ValueError, match=r"'mask' parameter .* shape \(3, 3\)"):
        plot_correlation(mat, mask=np.zeros((2, 2), bool))
    with pytest.raises(ValueError, match="'upper', 'lower'"):
        plot_correlation(mat, mask="diag")


def ax_array(ax):
    arr = ax.collections[0].get_array()
    return arr.reshape(3, 3)


def test_non_square_with_row_names_and_given_axes():
    from matplotlib.figure import Figure

    fig = Figure()
    ax = fig.add_subplot()
    mat = np.arange(6.0).reshape(2, 3)
    out = plot_correlation(mat, ["x", "y", "z"], row_names=["r1", "r2"], ax=ax, title="T")
    assert out is ax
    assert [t.get_text() for t in ax.get_xticklabels()] == ["x", "y", "z"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["r1", "r2"]
    assert ax.get_title() == "T"
    ax2 = plot_correlation(mat)
    assert [t.get_text() for t in ax2.get_yticklabels()] == ["0", "1"]
    with pytest.raises(ValueError, match=r"got 2 names for a matrix with 3 columns"):
        plot_correlation(mat, ["x", "y"])
    with pytest.raises(ValueError, match=r"got 3 names for a matrix with 2 rows"):
        plot_correlation(mat, ["x", "y", "z"], row_names=["a", "b", "c"])


def test_does_not_draw_on_current_figure():
    import matplotlib.pyplot as plt

    current = plt.figure()
    ax = plot_correlation(np.eye(3))
    assert ax.figure is not current
    assert current.axes == []
    n = len(plt.get_fignums())
    plot_correlation(np.eye(3), ax=current.add_subplot())
    assert len(plt.get_fignums()) == n  # nothing new when ax is given


def test_80_classes_readable():
    names = [f"class_{i:02d}" for i in range(80)]
    mat = np.random.default_rng(0).random((80, 80))
    ax = plot_correlation(mat, names)
    xt = [t.get_text() for t in ax.get_xticklabels()]
    yt = [t.get_text() for t in ax.get_yticklabels()]
    assert len(xt) == len(yt) == 40  # every 2nd name
    assert xt[:3] == ["class_00", "class_02", "class_04"]
    assert ax.get_xticklabels()[0].get_rotation() == 90
    assert ax.get_yticklabels()[0].get_rotation() == 0
    big = ax.figure.get_size_inches()
    small = plot_correlation(np.eye(4), list("abcd")).figure.get_size_inches()
    assert big[0] > 2 * small[0] and big[1] > 2 * small[1]
    assert np.asarray(ax.collections[0].get_array()).size == 6400
    few = plot_correlation(np.eye(3), ["circle", "square", "triangle"])
    assert few.get_xticklabels()[0].get_rotation() == 0


def test_plot_rejects_bad_matrix():
    with pytest.raises(ValueError, match=r"2-D \(R, K\)"):
        plot_correlation(np.ones((2, 2, 2)))


# --------------------------------------------------------------------------- plot_correlation_maps


def _stack():
    return np.stack([M, -M, M.T]) / 4


def test_maps_write_valid_pngs_with_label_titles(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    before = plt.get_fignums()
    stack = _stack()
    paths = plot_correlation_maps(stack, NAMES, tmp_path / "maps", progress=False, annot=True)
    assert [p.name for p in paths] == ["map_000.png", "map_001.png", "map_002.png"]
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == [p.name for p in paths]
    labels = threshold_labels(stack, NAMES)
    assert labels == [["dog"], ["cat"], ["dog"]]
    for b, p in enumerate(paths):
        with Image.open(p) as im:
            im.verify()
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100
            title = im.text["Title"]
        assert title.startswith(f"Correlation {b}\n")
        assert title.endswith(": " + ", ".join(labels[b]))
    assert plt.get_fignums() == before  # no pyplot figures left behind


def test_maps_refuse_overwrite_and_write_nothing(tmp_path):
    existing = tmp_path / "map_001.png"
    existing.write_bytes(b"old bytes")
    with pytest.raises(FileExistsError, match=r"1 of the 3 files .*map_001.png"):
        plot_correlation_maps(_stack(), NAMES, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map_001.png"]
    assert existing.read_bytes() == b"old bytes"
    paths = plot_correlation_maps(_stack(), NAMES, tmp_path, progress=False, overwrite=True)
    assert existing.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(paths) == 3 and not list(tmp_path.glob(".*tmp*"))


def test_maps_options_and_errors(tmp_path):
    paths = plot_correlation_maps(
        _stack()[:2],
        None,
        tmp_path,
        image_format="svg",
        prefix="att",
        progress=False,
        threshold=0.0,
    )
    assert [p.name for p in paths] == ["att_000.svg", "att_001.svg"]
    assert "above 0: 0, 1, 2" in paths[0].read_text()
    with pytest.raises(ValueError, match="'image_format' parameter"):
        plot_correlation_maps(_stack(), NAMES, tmp_path, image_format="bmpx", progress=False)
    # `fmt` is the annotation format of plot_correlation; the file format's old name warns
    with pytest.warns(FutureWarning, match="'fmt' parameter of plot_correlation_maps is renamed"):
        old = plot_correlation_maps(_stack()[:1], None, tmp_path / "old", fmt="svg", progress=False)
    assert [p.name for p in old] == ["map_000.svg"]
    with pytest.raises(ValueError, match=r"3-D \(B, R, K\)"):
        plot_correlation_maps(M, NAMES, tmp_path, progress=False)
    bad = _stack()
    bad[2, 0, 0] = np.nan
    with pytest.raises(ValueError, match="matrix 2, row 0, column 0"):
        plot_correlation_maps(bad, NAMES, tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="got 2 names"):
        plot_correlation_maps(_stack(), NAMES[:2], tmp_path / "new", progress=False)


# ------------------------------------------------------------- ties and magnitudes (issue 14)

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


# (value, rows): the float64 mean of these rows differs from the value in the last bit
@pytest.mark.parametrize(
    ("value", "rows"), [(0.1, 3), (1 / 3, 10), (-7.3, 7), (0.7, 6), (1e-300, 7), (3e38, 7)]
)
@pytest.mark.parametrize("statistic", ["mean", "max"])  # sums are not on the values' scale
@pytest.mark.parametrize("axis", [0, 1])
def test_threshold_labels_all_equal_matrix_selects_nothing(value, rows, statistic, axis):
    m = np.full((rows, rows), value)
    assert threshold_labels(m, statistic=statistic, axis=axis) == []
    assert threshold_labels(np.stack([m, m]), statistic=statistic, axis=axis) == [[], []]
    assert threshold_labels(torch.tensor(m, dtype=torch.float32), axis=axis) == []
    # a real difference is still seen
    m2 = m.copy()
    m2[:, 1] = value + max(abs(value), 1.0)
    assert 1 in threshold_labels(m2, statistic=statistic)


@settings(max_examples=60, deadline=None)
@given(
    value=st.floats(-(2.0**100), 2.0**100, allow_nan=False, width=32),
    rows=st.integers(1, 40),
    cols=st.integers(1, 8),
    dtype=st.sampled_from([np.float16, np.float32, np.float64]),
)
def test_threshold_labels_constant_matrix_any_dtype_selects_nothing(value, rows, cols, dtype):
    with np.errstate(over="ignore"):
        m = np.full((rows, cols), value, dtype=dtype)
    if not np.isfinite(m).all():
        return
    assert threshold_labels(m) == []
    assert threshold_labels(m, axis=1) == []
    assert threshold_labels(m, threshold=float(m[0, 0])) == []


@pytest.mark.parametrize("scale", [1e20, 1e30, 1e-20, 1e-30])
@pytest.mark.parametrize("method", ["pearson", "spearman", "cosine"])
def test_correlation_large_or_tiny_float32_keeps_real_columns(scale, method):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 3))
    base[:, 2] = base[:, 0] * 2 + 0.1 * base[:, 1]
    want = correlation(base, method=method)
    t = torch.tensor(base * scale, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no column is called constant
        got = correlation(t, method=method)
    assert torch.isfinite(got).all()
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5)


def test_covariance_large_float32_scaled_back():
    x = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]])
    want = np.cov(x.T)
    got = correlation(torch.tensor(x * 1e15, dtype=torch.float32), method="covariance")
    np.testing.assert_allclose(got.numpy() / 1e30, want, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(
        st.floats(-(2.0**20), 2.0**20, allow_nan=False, width=32), min_size=6, max_size=6
    ),
    dtype=st.sampled_from([torch.float16, torch.float32, torch.float64]),
)
def test_correlation_never_nan_and_within_bounds(values, dtype):
    x = torch.tensor(values, dtype=torch.float64).reshape(3, 2).to(dtype)
    if not torch.isfinite(x).all():
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = correlation(x)
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    assert bool((out.abs() <= 1).all())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_correlation_and_threshold_refuse_non_finite(bad):
    m = np.ones((3, 2))
    m[1, 0] = bad
    with pytest.raises(ValueError, match="'x' parameter of correlation"):
        correlation(m)
    with pytest.raises(ValueError, match="'matrix' parameter of threshold_labels"):
        threshold_labels(m)
