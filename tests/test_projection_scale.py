"""Projections at scale: the streamed PCA, bounded memory, and t-SNE/UMAP fitted on a sample."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from featviz.projection import _methods as M
from featviz.projection import _sources as S
from featviz.projection import project
from featviz.projection._common import _subsample


def _low_rank(n: int, d: int, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """Four components of clearly different variance, noise, and an offset of 5."""
    rng = np.random.default_rng(seed)
    scales = np.array([10.0, 6.0, 3.0, 2.0])[:, None]
    x = rng.normal(size=(n, 4)) @ (rng.normal(size=(4, d)) * scales)
    return (x + 0.3 * rng.normal(size=(n, d)) + 5.0).astype(dtype)


def _memmap(tmp_path: Path, x: np.ndarray) -> np.memmap:
    path = tmp_path / "f.npy"
    np.save(path, x)
    return np.load(path, mmap_mode="r")


def _clusters(n: int = 600, d: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, d)) * 4
    y = rng.integers(0, 4, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


# -- the streamed PCA equals scikit-learn's ---------------------------------------------------


@pytest.mark.parametrize(
    ("n", "d", "k", "dtype"),
    [(1500, 120, 2, np.float32), (1500, 120, 3, np.float64), (200, 900, 2, np.float32)],
)
def test_streamed_pca_equals_sklearn_pca(tmp_path, n, d, k, dtype):
    from sklearn.decomposition import PCA

    x = _low_rank(n, d, dtype=dtype)
    proj = project(_memmap(tmp_path, x), method="pca", n_components=k, max_memory=1, score=False)
    assert proj.engine == "streamed"
    ref = PCA(n_components=k, svd_solver="full")
    z = ref.fit_transform(x.astype(np.float64))
    # same signs as sklearn (its rule: the largest loading of each component is positive)
    scale = np.abs(z).max()
    tol = 1e-5  # the iteration stops once the variances are exact to 1e-5 (S._EIGEN_TOL)
    np.testing.assert_allclose(proj.embedding, z, atol=tol * scale)
    np.testing.assert_allclose(
        proj.explained_variance_ratio, ref.explained_variance_ratio_, rtol=tol
    )
    assert proj.embedding.dtype == dtype


def test_streamed_pca_is_deterministic_and_leaves_the_input(tmp_path):
    x = _low_rank(800, 60)
    mm = _memmap(tmp_path, x)
    a = project(mm, method="pca", max_memory=1, random_state=3, score=False)
    b = project(mm, method="pca", max_memory=1, random_state=3, score=False)
    c = project(mm, method="pca", max_memory=1, random_state=4, score=False)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    np.testing.assert_allclose(a.embedding, c.embedding, atol=1e-4 * np.abs(a.embedding).max())
    np.testing.assert_array_equal(np.asarray(mm), x)


def test_arrays_from_the_size_threshold_on_are_streamed(monkeypatch):
    from sklearn.decomposition import PCA

    x = _low_rank(700, 50)
    before = x.copy()
    assert project(x, method="pca", score=False).engine == "sklearn"
    monkeypatch.setattr(S, "STREAMED_PCA_MIN_BYTES", x.nbytes)
    proj = project(x, method="pca", score=False)
    assert proj.engine == "streamed"
    z = PCA(2, svd_solver="full").fit_transform(x.astype(np.float64))
    np.testing.assert_allclose(proj.embedding, z, atol=1e-5 * np.abs(z).max())
    np.testing.assert_array_equal(x, before)  # never centred in place
    # engine="sklearn" keeps scikit-learn's PCA; too many components for a sketch too
    assert project(x, method="pca", engine="sklearn", score=False).engine == "sklearn"
    assert project(x, method="pca", n_components=25, score=False).engine == "sklearn"


def test_streamed_tsne_pre_step_keeps_pca_dims(tmp_path):
    x, y = _clusters(n=400, d=200)
    proj = project(_memmap(tmp_path, x), labels=y, max_memory=1, progress=False, n_jobs=1)
    assert proj.params["pca_dims"] == 50
    assert proj.explained_variance_ratio.shape == (50,)
    assert proj.quality["knn_accuracy"] >= 0.95


def test_streamed_pca_names_bad_and_identical_rows(tmp_path):
    x = _low_rank(1200, 30)
    x[[5, 1100]] = np.nan
    with pytest.raises(ValueError, match=r"'features'.*2 row\(s\).*rows 5, 1100\)"):
        project(_memmap(tmp_path, x), method="pca", max_memory=1)
    same = np.full((900, 30), 2.5, dtype=np.float32)
    path = tmp_path / "same.npy"
    np.save(path, same)
    with pytest.raises(ValueError, match=r"'features'.*900 identical rows"):
        project(np.load(path, mmap_mode="r"), method="pca", max_memory=1)


# -- bounded memory ----------------------------------------------------------------------------


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    except OSError:
        return False
    return True


def _rss(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)  # pragma: no cover


def test_streamed_pca_memory_is_bounded_by_the_block_not_the_data(tmp_path):
    n, d = 50_000, 1000  # 200 MB of float32
    path = tmp_path / "big.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    for start in range(0, n, 5000):
        out[start : start + 5000] = rng.standard_normal((5000, d), dtype=np.float32)
    out.flush()
    del out
    mm = np.load(path, mmap_mode="r")
    block = max(S._BLOCK_ROWS, S._BLOCK_BYTES // (d * 4)) * d * 4
    scores = n * (2 + S._OVERSAMPLE) * 4
    reset = _reset_peak_rss()
    rss_before = _rss("VmRSS:")
    tracemalloc.start()
    try:
        proj = project(mm, method="pca", score=False, max_memory=1)  # over the budget
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert proj.engine == "streamed"
    # allocations: two blocks (one read, one centred) + the (N, k + 10) scores + small change
    assert peak < 2 * block + 2 * scores + 8 * 2**20, (peak, block, scores)
    assert peak < mm.nbytes / 4
    if reset:  # the mapped pages are released block by block: RSS never holds the file
        assert _rss("VmHWM:") - rss_before < mm.nbytes / 2


# -- t-SNE and UMAP fitted on a sample, the rest placed ---------------------------------------


def test_tsne_fit_sample_places_the_rest():
    x, y = _clusters()
    kw = {"labels": y, "fit_sample": 200, "engine": "opentsne", "n_jobs": 1, "progress": False}
    a = project(x, **kw)
    assert a.embedding.shape == (600, 2)
    assert np.isfinite(a.embedding).all()
    assert (a.params["n_fitted"], a.params["n_placed"]) == (200, 400)
    assert a.fitted is not None and a.fitted.dtype == bool and a.fitted.sum() == 200
    expected = np.sort(np.random.default_rng([0, 0xF17]).choice(600, 200, replace=False))
    np.testing.assert_array_equal(np.flatnonzero(a.fitted), expected)
    b = project(x, **kw)
    np.testing.assert_array_equal(a.embedding, b.embedding)  # seeded: the same map
    c = project(x, **{**kw, "random_state": 1})
    assert not np.array_equal(a.fitted, c.fitted)
    assert a.quality["knn_accuracy"] >= 0.95  # placed rows land in their class


def test_held_out_trustworthiness_is_scored_on_placed_rows_as_documented():
    from sklearn.manifold import trustworthiness

    x, y = _clusters()
    proj = project(x, labels=y, fit_sample=150, engine="opentsne", n_jobs=1, progress=False)
    placed = np.flatnonzero(~proj.fitted)
    assert placed.size == 450
    idx = placed[_subsample(placed.size, 0)]  # the scoring subsample, drawn among placed rows
    expected = trustworthiness(x[idx], proj.embedding[idx], n_neighbors=5)
    assert proj.quality["trustworthiness_placed"] == pytest.approx(expected, abs=1e-12)
    assert proj.quality["n_scored_placed"] == 450
    full = project(x, labels=y, fit_sample=None, engine="opentsne", n_jobs=1, progress=False)
    assert full.fitted is None and "trustworthiness_placed" not in full.quality
    assert (full.params["n_fitted"], full.params["n_placed"]) == (600, 0)


def test_fit_sample_auto_above_the_threshold(monkeypatch):
    x, y = _clusters(n=500)
    monkeypatch.setattr(M, "FIT_SAMPLE_MIN_N", 400)
    monkeypatch.setattr(M, "FIT_SAMPLE_SIZE", 120)
    proj = project(x, labels=y, n_jobs=1, progress=False, score=False)
    assert proj.engine == "opentsne"
    assert (proj.params["n_fitted"], proj.params["n_placed"]) == (120, 380)
    small = project(x[:300], n_jobs=1, progress=False, score=False)  # 300 <= 400: all rows
    assert small.fitted is None and small.params["n_placed"] == 0
    assert project(x, fit_sample=10_000, n_jobs=1, progress=False, score=False).fitted is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fit_sample": 3}, r"'fit_sample'.*\[4, inf\)\. Got 3"),
        ({"fit_sample": "half"}, r"'fit_sample'.*'auto', None or an int\. Got 'half'"),
        ({"fit_sample": 50, "method": "pca"}, r"'fit_sample'.*method='pca' uses every row"),
        ({"fit_sample": 50, "engine": "sklearn"}, r"'fit_sample'.*needs engine='opentsne'"),
    ],
)
def test_fit_sample_bad_values(kwargs, match):
    x, _ = _clusters(n=100)
    with pytest.raises(ValueError, match=match):
        project(x, progress=False, **kwargs)


def test_umap_fit_sample_places_the_rest():
    pytest.importorskip("umap")
    x, _ = _clusters(n=300)
    proj = project(x, method="umap", fit_sample=120, progress=False, score=False)
    assert proj.embedding.shape == (300, 2)
    assert np.isfinite(proj.embedding).all()
    assert (proj.params["n_fitted"], proj.params["n_placed"]) == (120, 180)
    assert proj.fitted.sum() == 120
