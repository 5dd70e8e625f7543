"""Tests of featviz.projection: project (PCA/t-SNE/UMAP), quality figures and plots."""

from __future__ import annotations

import subprocess
import sys
import warnings

import matplotlib
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from featviz.projection import Projection, plot_layer_projections, plot_projection, project
from featviz.projection import _common as K
from featviz.projection import _core as C
from featviz.projection import _methods as M
from featviz.projection import _quality as Q
from featviz.projection import _sources as S

# featviz itself must not use the deprecated names Projection.embedding_ / ..._ratio_
pytestmark = pytest.mark.filterwarnings("error::FutureWarning")


def _clusters(n=300, d=64, c=5, spread=4.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, d)) * spread
    y = np.arange(n) % c
    x = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def clusters():
    return _clusters()


@pytest.fixture(scope="module")
def tsne_proj(clusters):
    x, y = clusters
    names = np.array(["a", "b", "c", "d", "e"], dtype=object)[y]
    return project(x, labels=names, progress=False)


# -- t-SNE: determinism and quality ------------------------------------------------------------


def test_tsne_is_deterministic_and_separates_clusters(clusters, tsne_proj):
    x, y = clusters
    again = project(x, labels=y, progress=False)
    assert tsne_proj.engine == "sklearn"  # N=300 < OPENTSNE_MIN_N
    np.testing.assert_array_equal(tsne_proj.embedding, again.embedding)
    q = tsne_proj.quality
    assert q["knn_accuracy"] >= 0.95
    assert q["trustworthiness"] >= 0.9
    assert q["knn_space"] == "pca-50"  # D=64 > pca_dims=50: t-SNE saw the PCA-50 features
    assert q["trustworthiness_space"] == "input (D=64)"
    assert q["n_scored"] == 300
    assert tsne_proj.params["pca_dims"] == 50
    assert tsne_proj.explained_variance_ratio.shape == (50,)
    assert tsne_proj.embedding.shape == (300, 2)
    assert tsne_proj.seconds > 0


def test_quality_matches_sklearn_and_hand_knn(clusters, tsne_proj):
    from sklearn.manifold import trustworthiness

    x, y = clusters
    # N <= 2000: the "subsample" is every row, so trustworthiness is sklearn's on all rows
    expected = trustworthiness(x, tsne_proj.embedding, n_neighbors=5)
    assert tsne_proj.quality["trustworthiness"] == pytest.approx(expected, abs=1e-12)
    assert tsne_proj.quality["knn_accuracy"] == Q._knn_accuracy(tsne_proj.embedding, y, 10, None)


def test_knn_accuracy_by_hand():
    # 1-NN on a line: 0->1 ok, 1->0 ok, 3->1 wrong, 10->12 ok, 12->13 wrong, 13->12 wrong
    pts = np.array([[0.0], [1.0], [3.0], [10.0], [12.0], [13.0]])
    codes = np.array([0, 0, 1, 1, 1, 0])
    assert Q._knn_accuracy(pts, codes, 1, None) == 0.5
    # 2-NN: ties go to the nearer neighbour's class. 0:{1,3}->0 ok; 1:{0,3}->0 ok;
    # 3:{1,0}->0 wrong; 10:{12,13}->1 ok (nearer 12); 12:{13,10}->0 wrong; 13:{12,10}->1 wrong
    assert Q._knn_accuracy(pts, codes, 2, None) == 0.5
    # a duplicate of the query listed before it: the query itself is still dropped
    # (0 -> 1 wrong, 1 -> 0 wrong, 5 -> 6 ok, 6 -> 5 ok)
    dup = np.array([[0.0], [0.0], [5.0], [6.0]])
    assert Q._knn_accuracy(dup, np.array([0, 1, 1, 1]), 1, None) == 0.5


# -- PCA ---------------------------------------------------------------------------------------


def test_pca_matches_sklearn_exactly(clusters):
    from sklearn.decomposition import PCA

    x, y = clusters
    proj = project(x, method="pca", labels=y, progress=False)
    ref = PCA(n_components=2, random_state=0)
    z = ref.fit_transform(x)
    np.testing.assert_array_equal(proj.explained_variance_ratio, ref.explained_variance_ratio_)
    np.testing.assert_array_equal(proj.embedding, z)
    assert proj.engine == "sklearn"
    assert proj.params["pca_dims"] is None
    assert proj.quality["knn_space"] == "input (D=64)"


def test_tsne_pre_step_is_sklearn_pca(clusters, tsne_proj):
    from sklearn.decomposition import PCA

    x, _ = clusters
    ref = PCA(n_components=50, random_state=0).fit(x)
    evr = tsne_proj.explained_variance_ratio
    np.testing.assert_array_equal(evr, ref.explained_variance_ratio_)


def test_no_pre_step_when_d_small(clusters):
    x, y = clusters
    proj = project(x[:, :8], labels=y, progress=False, score=False)
    assert proj.explained_variance_ratio is None
    assert proj.params["pca_dims"] is None
    assert proj.quality == {}


def test_tensor_input_is_flattened_and_left_alone(clusters):
    x, _ = clusters
    t = torch.from_numpy(x[:100].copy()).reshape(100, 4, 4, 4)
    before = t.clone()
    a = project(t, method="pca", progress=False)
    b = project(x[:100], method="pca", progress=False)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert torch.equal(t, before)


def test_converted_input_scored_on_unchanged_rows(clusters):
    from sklearn.decomposition import PCA
    from sklearn.manifold import trustworthiness

    x, _ = clusters
    xi = np.round(x * 10).astype(np.int32)  # converted to an owned float32 copy, centred in place
    before = xi.copy()
    proj = project(xi, method="pca", progress=False)
    np.testing.assert_array_equal(xi, before)
    ref = PCA(2, random_state=0).fit(xi.astype(np.float32))
    np.testing.assert_array_equal(proj.explained_variance_ratio, ref.explained_variance_ratio_)
    expected = trustworthiness(xi.astype(np.float32), proj.embedding, n_neighbors=5)
    assert proj.quality["trustworthiness"] == pytest.approx(expected, abs=1e-12)


def test_normalize_gives_exact_unit_range(clusters):
    x, _ = clusters
    proj = project(x, method="pca", n_components=3, normalize=True, progress=False)
    np.testing.assert_array_equal(proj.embedding.min(axis=0), [0, 0, 0])
    np.testing.assert_array_equal(proj.embedding.max(axis=0), [1, 1, 1])
    # a constant axis maps to 0
    flat = M._min_max(np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]]))
    np.testing.assert_array_equal(flat, [[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]])


def test_frame_columns_labels_and_index(clusters, tsne_proj):
    x, _ = clusters
    f = tsne_proj.frame
    assert list(f.columns) == ["x", "y", "label", "index"]
    np.testing.assert_array_equal(f["x"], tsne_proj.embedding[:, 0])
    np.testing.assert_array_equal(f["y"], tsne_proj.embedding[:, 1])
    assert list(f["label"][:6]) == ["a", "b", "c", "d", "e", "a"]
    np.testing.assert_array_equal(f["index"], np.arange(300))
    p3 = project(x, method="pca", n_components=3, progress=False)
    assert list(p3.frame.columns) == ["x", "y", "z", "label", "index"]
    assert p3.frame["label"].isna().all()
    assert "knn_accuracy" not in p3.quality


# -- memory-mapped input -----------------------------------------------------------------------


def _low_rank(n, d, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.array([10.0, 6.0, 3.0, 2.0])[:, None]
    basis = rng.normal(size=(4, d)) * scales
    coef = rng.normal(size=(n, 4))
    return (coef @ basis + 0.3 * rng.normal(size=(n, d)) + 1.0).astype(np.float32)


@pytest.mark.parametrize("engine", ["auto", "sklearn"])
def test_memmap_over_budget_is_streamed_and_matches_pca(tmp_path, engine):
    from sklearn.decomposition import PCA

    x = _low_rank(1500, 120)
    path = tmp_path / "feats.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    proj = project(mm, method="pca", max_memory=1, progress=False, engine=engine)
    # auto: featviz's streamed PCA; engine="sklearn" keeps IncrementalPCA in chunks
    assert proj.engine == ("streamed" if engine == "auto" else "sklearn-incremental")
    ref = PCA(n_components=2, random_state=0)
    z = ref.fit_transform(x)
    evr = proj.explained_variance_ratio
    np.testing.assert_allclose(evr, ref.explained_variance_ratio_, rtol=1e-3)
    for i in range(2):  # the same components up to sign
        assert abs(np.corrcoef(proj.embedding[:, i], z[:, i])[0, 1]) > 0.9999
    assert proj.quality["trustworthiness_space"] == "input (D=120)"
    # a big enough budget reads it at once with the exact solver
    whole = project(mm, method="pca", progress=False)
    assert whole.engine == "sklearn"
    np.testing.assert_array_equal(whole.embedding, z)
    np.testing.assert_array_equal(np.load(path), x)  # file untouched


def test_memmap_tsne_pre_step_is_incremental(tmp_path):
    x, y = _clusters(n=200, d=80)
    path = tmp_path / "f.npy"
    np.save(path, x)
    proj = project(np.load(path, mmap_mode="r"), labels=y, max_memory=1, progress=False)
    assert proj.params["pca_dims"] == 50
    assert proj.explained_variance_ratio.shape == (50,)
    assert proj.quality["knn_accuracy"] >= 0.95


def test_memmap_nan_rows_reported(tmp_path):
    x = _low_rank(600, 30)
    x[[7, 400, 401]] = np.nan
    x[599, 3] = np.inf
    path = tmp_path / "bad.npy"
    np.save(path, x)
    with pytest.raises(ValueError, match=r"'features'.*4 row\(s\).*rows 7, 400, 401, 599\)"):
        project(np.load(path, mmap_mode="r"), method="pca", max_memory=1, progress=False)


def test_rechunker_never_emits_a_small_last_chunk():
    rc = S._Rechunker(5)
    out = []
    for b in (3, 4, 2, 7, 1):
        out += [c.shape[0] for c in rc.push(np.zeros((b, 2)))]
    out += [c.shape[0] for c in rc.finish()]
    assert out == [5, 5, 7]  # 17 rows: 5, 5, then 5 + the 2 left over


# -- streamed datasets -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_shapes():
    from featviz.datasets import Shapes

    return Shapes(600, size=16, random_state=3)


def test_dataset_streaming_pca_matches_in_memory(small_shapes):
    from sklearn.decomposition import PCA

    images, labels = small_shapes.tensors()
    flat = images.reshape(len(images), -1).numpy()
    proj = project(small_shapes, method="pca", progress=False, batch_size=100)
    assert proj.engine == "sklearn-incremental"
    assert proj.embedding.shape == (600, 2)
    ref = PCA(n_components=2).fit(flat)
    evr = proj.explained_variance_ratio
    np.testing.assert_allclose(evr, ref.explained_variance_ratio_, rtol=2e-2)
    z = ref.transform(flat)
    for i in range(2):
        assert abs(np.corrcoef(proj.embedding[:, i], z[:, i])[0, 1]) > 0.99
    # labels come from the items, as class names
    expected = [small_shapes.classes[i] for i in labels.tolist()]
    assert proj.frame["label"].tolist() == expected
    # trustworthiness is measured against the raw pixels, kept for the subsample in pass 2
    assert proj.quality["trustworthiness_space"] == "input (D=768)"
    from sklearn.manifold import trustworthiness

    expected = trustworthiness(flat, proj.embedding, n_neighbors=5)  # N=600: all rows
    assert proj.quality["trustworthiness"] == pytest.approx(expected, abs=1e-12)
    # a DataLoader over the same dataset gives the same result
    loader = DataLoader(small_shapes, batch_size=64, shuffle=False)
    again = project(loader, method="pca", progress=False)
    np.testing.assert_allclose(again.embedding, proj.embedding, rtol=1e-4, atol=1e-4)


def test_dataset_streaming_tsne(small_shapes):
    sub = torch.utils.data.Subset(small_shapes, range(150))
    proj = project(sub, progress=False, perplexity=20)
    assert proj.embedding.shape == (150, 2)
    assert proj.params["pca_dims"] == 50
    assert proj.explained_variance_ratio.shape == (50,)
    # Subset has no .classes: labels stay integers
    assert proj.frame["label"].tolist() == small_shapes.labels[:150].tolist()


def test_stream_of_plain_tensors_and_shuffle_warning():
    x, _ = _clusters(n=80, d=10)
    ds = TensorDataset(torch.from_numpy(x))
    proj = project(ds, method="pca", progress=False)
    assert proj.labels is None
    from sklearn.decomposition import PCA

    ref = PCA(2).fit(x)
    evr = proj.explained_variance_ratio
    np.testing.assert_allclose(evr, ref.explained_variance_ratio_, rtol=1e-5)
    with pytest.warns(UserWarning, match="shuffles"):
        project(DataLoader(ds, batch_size=16, shuffle=True), method="pca", progress=False)


class _Bad(Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, i):
        v = torch.ones(4)
        if i in (2, 9):
            v[1] = float("nan")
        return v, 0


def test_stream_nan_rows_reported():
    with pytest.raises(ValueError, match=r"2 row\(s\).*rows 2, 9\)"):
        project(_Bad(), method="pca", progress=False, batch_size=3)


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"features": np.zeros((1, 5))}, r"'features'.*at least 2 rows.*N=1"),
        ({"features": np.zeros(5)}, r"'features'.*\(N, D\).*Got shape \(5,\)"),
        ({"features": [["a", "b"], ["c", "d"]]}, r"'features'.*numbers"),
        ({"method": "lda"}, r"'method' parameter of project must be one of"),
        ({"n_components": 0}, r"'n_components'.*\[1, inf\). Got 0 instead"),
        ({"n_components": 4}, r"'n_components'.*\[1, 3\] for method='tsne'"),
        ({"method": "pca", "n_components": 11}, r"'n_components'.*<= min\(N, D\) = 10"),
        ({"engine": "opentsne", "method": "pca"}, r"'engine'.*\['auto', 'sklearn'\]"),
        ({"engine": "fast"}, r"'engine' parameter of project must be one of"),
        ({"perplexity": 0}, r"'perplexity'.*\(0, inf\)"),
        ({"pca_dims": 0}, r"'pca_dims'.*\[1, inf\)"),
        ({"labels": [0, 1, 2]}, r"'labels'.*N=40 labels, one per item\. Got ndarray of shape"),
        ({"labels": np.zeros((40, 2))}, r"'labels'.*shape \(40, 2\)"),
    ],
)
def test_bad_input_messages(kwargs, match):
    x = np.random.default_rng(0).normal(size=(40, 10))
    args = {"features": x, "progress": False, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        project(**args)


def test_object_features_type_error():
    with pytest.raises(TypeError, match="'features'"):
        project(object(), progress=False)


def test_nan_and_inf_rows_named():
    x = np.random.default_rng(0).normal(size=(50, 6))
    for r in (3, 11, 12, 20, 30, 44):
        x[r, r % 6] = np.nan if r % 2 else np.inf
    msg = r"6 row\(s\) with NaN or inf.*rows 3, 11, 12, 20, 30, \.\.\.\)"
    with pytest.raises(ValueError, match=msg):
        project(x, method="pca", progress=False)


def test_small_n_lowers_perplexity_with_warning(clusters):
    x, y = clusters
    msg = r"perplexity=30 needs N > 90 points but N=20; using perplexity=6.33"
    with pytest.warns(UserWarning, match=msg):
        proj = project(x[:20], labels=y[:20], progress=False)
    assert proj.params["perplexity"] == pytest.approx(19 / 3)
    assert proj.embedding.shape == (20, 2)


def test_missing_extras_name_the_fast_extra(monkeypatch, clusters):
    x, _ = clusters
    monkeypatch.setitem(sys.modules, "umap", None)
    monkeypatch.setitem(sys.modules, "openTSNE", None)
    with pytest.raises(ImportError, match=r"featviz\[fast\]"):
        project(x[:50], method="umap", progress=False)
    with pytest.raises(ImportError, match=r"featviz\[fast\].*openTSNE"):
        project(x[:50], engine="opentsne", perplexity=5, progress=False)


# -- optional engines --------------------------------------------------------------------------


def test_opentsne_engine_deterministic_and_auto_choice(clusters, monkeypatch):
    pytest.importorskip("openTSNE")
    x, y = clusters
    a = project(x, labels=y, engine="opentsne", progress=False)
    b = project(x, labels=y, engine="opentsne", progress=False)
    assert a.engine == "opentsne"
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert a.quality["knn_accuracy"] >= 0.95
    assert a.quality["trustworthiness"] >= 0.9
    monkeypatch.setattr(M, "OPENTSNE_MIN_N", 40)
    # n_jobs=1: threads only slow such tiny runs down (badly on a busy machine)
    small = project(x[:30], perplexity=5, progress=False, score=False, n_jobs=1)
    assert small.engine == "sklearn"  # 30 < 40
    auto = project(x[:40], perplexity=5, progress=False, score=False, n_jobs=1)
    assert auto.engine == "opentsne"
    monkeypatch.setattr(M, "_has_opentsne", lambda: False)
    fallback = project(x[:40], perplexity=5, progress=False, score=False, n_jobs=1)
    assert fallback.engine == "sklearn"


def test_umap_deterministic(clusters):
    pytest.importorskip("umap")
    x, y = clusters
    a = project(x, method="umap", labels=y, progress=False)
    b = project(x, method="umap", labels=y, progress=False)
    assert a.engine == "umap-learn"
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert a.quality["knn_accuracy"] >= 0.95


# -- plots -------------------------------------------------------------------------------------


def test_plot_projection_draws_every_point_with_legend_and_title(tsne_proj):
    ax = plot_projection(tsne_proj)
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert offsets.shape == (300, 2)
    np.testing.assert_allclose(np.sort(offsets[:, 0]), np.sort(tsne_proj.embedding[:, 0]))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c", "d", "e"]
    title = ax.get_title()
    assert title.startswith("t-SNE (sklearn), N=300, ")
    assert f"trustworthiness {tsne_proj.quality['trustworthiness']:.3f}" in title
    assert f"10-NN acc. {tsne_proj.quality['knn_accuracy']:.3f}" in title


def test_plot_projection_on_given_axes_array_and_options(tsne_proj):
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    out = plot_projection(tsne_proj.embedding, labels=np.arange(300) % 2, ax=ax, title="mine")
    assert out is ax
    assert ax.get_title() == "mine"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1"]
    ax2 = plot_projection(tsne_proj, legend=False, hue="index", s=3)
    assert ax2.get_legend() is None
    assert ax2.collections[0].get_sizes()[0] == 3
    with pytest.raises(ValueError, match=r"'hue'.*column"):
        plot_projection(tsne_proj, hue="colour")
    with pytest.raises(ValueError, match=r"'labels'.*N=300"):
        plot_projection(tsne_proj, labels=[1, 2])
    with pytest.raises(ValueError, match=r"'projection_or_array'.*2 or 3"):
        plot_projection(np.zeros((5, 4)))


def test_plot_projection_3d(clusters):
    import matplotlib.pyplot as plt

    x, y = clusters
    proj = project(x, method="pca", n_components=3, labels=y, progress=False)
    ax = plot_projection(proj)
    assert ax.name == "3d"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 300
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2", "3", "4"]
    assert ax.get_title().startswith("PCA (sklearn), N=300")
    _, flat = plt.subplots()
    with pytest.raises(ValueError, match=r"'ax'.*3-D"):
        plot_projection(proj, ax=flat)


def test_plot_layer_projections_one_sample():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    feats = {"early": rng.normal(size=(3, 4, 5, 5)), "late": torch.randn(3, 8, 3, 3)}
    ax = plot_layer_projections(feats, sample=1)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 25 + 9
    pts = feats["early"][1].reshape(4, -1).T
    evr = PCA(2, random_state=0).fit(pts).explained_variance_ratio_.sum()
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[0] == f"early (EVR {evr:.2f})"
    assert texts[1].startswith("late (EVR ")
    assert "sample 1" in ax.get_title()
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert offsets.min() == 0 and offsets.max() == 1  # each layer scaled to [0, 1]


def test_plot_layer_projections_across_images_and_errors():
    rng = np.random.default_rng(0)
    feats = {"a": rng.normal(size=(30, 4, 2, 2)), "b": rng.normal(size=(30, 6))}
    ax = plot_layer_projections(feats, labels=np.arange(30) % 3)
    assert sum(len(c.get_offsets()) for c in ax.collections) == 60
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("a (EVR ") for t in texts) and "label" in texts
    assert "30 images" in ax.get_title()
    with pytest.raises(ValueError, match=r"layer 'b'.*spatial"):
        plot_layer_projections(feats, sample=0)
    with pytest.raises(ValueError, match=r"'sample'.*30 samples"):
        plot_layer_projections({"a": feats["a"]}, sample=30)
    with pytest.raises(ValueError, match=r"same images.*'a': 30, 'c': 5"):
        plot_layer_projections({"a": feats["a"], "c": feats["a"][:5]})
    with pytest.raises(ValueError, match=r"'labels'.*sample=None"):
        plot_layer_projections({"a": feats["a"]}, sample=0, labels=[1])
    with pytest.raises(ValueError, match="non-empty"):
        plot_layer_projections({})


def test_repr_and_len(tsne_proj):
    r = repr(tsne_proj)
    assert r.startswith("Projection(method='tsne', engine='sklearn', shape=(300, 2)")
    assert "knn_accuracy=" in r
    assert len(tsne_proj) == 300
    assert isinstance(tsne_proj, Projection)


def test_import_stays_light():
    code = (
        "import sys, featviz.projection\n"
        "heavy = [m for m in ('sklearn', 'matplotlib', 'pandas', 'seaborn', 'openTSNE', 'umap')"
        " if m in sys.modules]\n"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_stray_warnings_for_normal_use(clusters):
    x, y = clusters
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        project(x[:100], method="pca", labels=y[:100], progress=False)


# -- plots: drawn artists pinned (offsets, colours, sizes, legends, titles) ---------------------


def _hand_projection(method="tsne", emb=None, labels=None, evr=None, quality=None, seconds=1.25):
    emb = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0], [2.0, 2.0]]) if emb is None else emb
    return Projection(
        emb,
        C._make_frame(emb, labels),
        method,
        "sklearn",
        seconds,
        evr,
        {} if quality is None else quality,
        labels,
        {},
    )


def _rgb(colors):
    return [tuple(round(float(v), 4) for v in c[:3]) for c in colors]


def test_plot_projection_2d_artists_pinned():
    import seaborn as sns

    labels = np.array(["b", "a", "b", "a"], dtype=object)
    quality = {"trustworthiness": 0.9, "knn_accuracy": 0.75, "knn_accuracy_input": None}
    proj = _hand_projection(labels=labels, quality=quality)
    ax = plot_projection(proj)
    (points,) = ax.collections
    np.testing.assert_array_equal(points.get_offsets(), proj.frame[["x", "y"]].to_numpy())
    blue, orange = _rgb(sns.color_palette()[:2])
    # the class palette (issue 23.3): classes by index, text labels sorted, so "a" is
    # class 0 (blue) and "b" class 1 (orange), whatever order they appear in
    assert _rgb(points.get_facecolors()) == [orange, blue, orange, blue]
    assert points.get_sizes().tolist() == [40.0]  # clip(3000 / 4, 2, 40)
    assert points.get_linewidths().tolist() == [0]
    assert ax.get_title() == (
        "t-SNE (sklearn), N=4, 1.2 s\ntrustworthiness 0.900, 10-NN acc. 0.750 (input n/a)"
    )
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x", "y")
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "label"
    assert [t.get_text() for t in legend.get_texts()] == ["a", "b"]
    assert legend.markerscale == 1.0
    # no labels: one colour, no legend, the array title
    bare = plot_projection(proj.embedding, s=7)
    assert bare.get_legend() is None
    assert len({tuple(c) for c in _rgb(bare.collections[0].get_facecolors())}) == 1
    assert bare.collections[0].get_sizes().tolist() == [7.0]
    assert bare.get_title() == "embedding, N=4"


def test_plot_projection_hue_and_style_columns_pinned():
    labels = np.array(["b", "a", "b", "a"], dtype=object)
    ax = plot_projection(_hand_projection(labels=labels), hue="index", style="label")
    (points,) = ax.collections
    # index is numeric: a sequential colour per point, darker for larger values
    lightness = points.get_facecolors()[:, :3].sum(axis=1)
    assert np.all(np.diff(lightness) < 0)
    # style: "b" gets the first marker (a circle, 26 vertices), "a" the second (13)
    assert [p.vertices.shape[0] for p in points.get_paths()] == [26, 13, 26, 13]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["index", "0", "1", "2", "3", "label", "b", "a"]
    with pytest.raises(ValueError, match=r"'style'.*one value per point \(N=4\)"):
        plot_projection(_hand_projection(labels=labels), style=[1, 2])


def test_plot_projection_3d_artists_pinned():
    import seaborn as sns

    emb = np.array([[0.0, 0.0, 1.0], [1.0, 2.0, 0.0], [3.0, 1.0, 2.0], [2.0, 2.0, 3.0]])
    labels = np.array([2, 1, 2, 1])
    proj = _hand_projection("pca", emb, labels, evr=np.array([0.5, 0.25, 0.125]), seconds=0.5)
    ax = plot_projection(proj, style=np.array(["u", "u", "v", "v"]))
    # one collection per (label, style) pair; numeric labels sorted
    got = [(c.get_label(), [a.tolist() for a in c._offsets3d]) for c in ax.collections]
    assert got == [
        ("1, u", [[1.0], [2.0], [0.0]]),
        ("1, v", [[2.0], [2.0], [3.0]]),
        ("2, u", [[0.0], [0.0], [1.0]]),
        ("2, v", [[3.0], [1.0], [2.0]]),
    ]
    # class palette (issue 23.3): class 1 is tab10 colour 1 (orange), class 2 colour 2
    orange, green = _rgb(sns.color_palette()[1:3])
    assert [_rgb(c.get_facecolors())[0] for c in ax.collections] == [
        orange,
        orange,
        green,
        green,
    ]
    assert all(c.get_sizes().tolist() == [40.0] for c in ax.collections)
    assert ax.get_title() == "PCA (sklearn), N=4, 0.5 s\nEVR 0.875"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_zlabel()) == ("x", "y", "z")
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "label, style"
    assert [t.get_text() for t in legend.get_texts()] == ["1, u", "1, v", "2, u", "2, v"]


def test_plot_projection_3d_continuous_hue_is_one_scatter():
    emb = np.random.default_rng(0).normal(size=(30, 3))
    ax = plot_projection(emb, hue=np.linspace(0.0, 1.0, 30))
    (points,) = ax.collections
    np.testing.assert_array_equal(np.array(points._offsets3d).T, emb)
    assert ax.get_legend() is None
    assert ax.get_title() == "embedding, N=30"


def test_plot_layer_projections_artists_pinned():
    import seaborn as sns

    rng = np.random.default_rng(0)
    feats = {"early": rng.normal(size=(3, 4, 10, 10)), "late": rng.normal(size=(3, 8, 10, 10))}
    ax = plot_layer_projections(feats, sample=1)
    (points,) = ax.collections
    expected = [
        project(
            feats[k][1].reshape(feats[k].shape[1], -1).T,
            method="pca",
            normalize=True,
            progress=False,
            score=False,
        )
        for k in feats
    ]
    np.testing.assert_array_equal(
        points.get_offsets(), np.concatenate([p.embedding for p in expected])
    )
    blue, orange = _rgb(sns.color_palette()[:2])
    assert _rgb(points.get_facecolors()) == [blue] * 100 + [orange] * 100
    assert points.get_alpha() == 0.7
    assert points.get_sizes().tolist() == [30.0]  # clip(6000 / 200, 4, 40)
    evrs = [float(np.sum(p.explained_variance_ratio)) for p in expected]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        f"early (EVR {evrs[0]:.2f})",
        f"late (EVR {evrs[1]:.2f})",
    ]
    assert legend.markerscale == 2.0
    assert ax.get_title() == "PCA of 2 layers, sample 1: 100 positions in the first layer"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("component 1 (scaled)", "component 2 (scaled)")


def test_plot_layer_projections_images_with_labels_pinned():
    rng = np.random.default_rng(1)
    feats = {"a": rng.normal(size=(6, 4, 2, 2)), "b": rng.normal(size=(6, 3))}
    ax = plot_layer_projections(feats, labels=np.array([0, 1, 0, 1, 0, 1]), method="tsne")
    (points,) = ax.collections
    assert points.get_offsets().shape == (12, 2)
    # labels are marker styles: 0 a circle (26 vertices), 1 a cross (13)
    assert [p.vertices.shape[0] for p in points.get_paths()] == [26, 13] * 6
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == ["layer", "a", "b", "label", "0", "1"]  # no PCA pre-step: no EVR
    assert ax.get_title() == "t-SNE of 2 layers, 6 images"


# -- Projection is a plain record; the old estimator-style names still work ---------------------


def test_old_field_names_warn_and_alias_the_new_ones():
    proj = _hand_projection("pca", evr=np.array([0.5, 0.25]))
    with pytest.warns(FutureWarning, match=r"Projection\.embedding_ is deprecated.*\.embedding"):
        assert proj.embedding_ is proj.embedding
    with pytest.warns(FutureWarning, match=r"explained_variance_ratio_ is deprecated"):
        assert proj.explained_variance_ratio_ is proj.explained_variance_ratio
    new = np.zeros((4, 2))
    with pytest.warns(FutureWarning, match="embedding_"):
        proj.embedding_ = new
    assert proj.embedding is new
    with pytest.warns(FutureWarning, match="explained_variance_ratio_"):
        proj.explained_variance_ratio_ = None
    assert proj.explained_variance_ratio is None
    import dataclasses

    fields = [f.name for f in dataclasses.fields(Projection)]
    assert fields == [
        "embedding",
        "frame",
        "method",
        "engine",
        "seconds",
        "explained_variance_ratio",
        "quality",
        "labels",
        "params",
        "fitted",  # which rows t-SNE/UMAP was fitted on (fit_sample); None: all
    ]


# -- the method table is the one place that knows a method ------------------------------------


def test_a_new_row_in_the_method_table_is_a_new_method(monkeypatch, clusters):
    def flip(red, s):
        return K._Embedding(-np.asarray(red.data)[:, : s.k], "hand", {"flipped": True})

    row = M._Method("Flip", ("auto", "hand"), flip, True, 5, " (hand rule)", 2, False)
    monkeypatch.setitem(M._METHODS, "flip", row)
    x, _ = clusters
    proj = project(x, method="flip", engine="hand", progress=False, score=False)
    ref = project(x, method="pca", n_components=50, progress=False, score=False)
    np.testing.assert_array_equal(proj.embedding, -ref.embedding[:, :2])  # after the pre-step
    assert (proj.engine, proj.params["flipped"], proj.params["pca_dims"]) == ("hand", True, 50)
    assert plot_projection(proj).get_title().startswith("Flip (hand), N=300")
    with pytest.raises(ValueError, match=r"'engine'.*\['auto', 'hand'\] for method='flip'"):
        project(x, method="flip", engine="sklearn", progress=False)
    with pytest.raises(ValueError, match=r"'n_components'.*\[1, 2\] for method='flip'"):
        project(x, method="flip", n_components=3, progress=False)
    with pytest.raises(ValueError, match=r"at least 5 rows \(N >= 5\) for method='flip' \(hand"):
        project(x[:4], method="flip", progress=False)
    with pytest.raises(
        ValueError, match=r"'engine'.*\['auto', 'sklearn', 'opentsne', 'umap', 'hand'"
    ):
        project(x, engine="none", progress=False)


# -- degenerate input: a clear ValueError before any library runs ------------------------------


def _rows(n=40, d=6, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def _ramp():
    return np.arange(240.0).reshape(40, 6)


def _near_constant_f32():
    x = np.full((40, 4), 1000.0, dtype=np.float32)
    x[::2, 0] = np.nextafter(np.float32(1000), np.float32(2000))  # one float32 step apart
    return x


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # identical rows: zero variance, for every method (t-SNE: see the subprocess test)
        ({"features": np.ones((40, 6)), "method": "pca"}, ValueError, r"'features'.*40 identical"),
        ({"features": np.ones((40, 6)), "method": "umap"}, ValueError, r"'features'.*identical"),
        # too few rows for the method
        ({"features": _rows(3), "method": "tsne"}, ValueError, r"'features'.*at least 4 rows.*N=3"),
        ({"features": _rows(2), "method": "umap"}, ValueError, r"'features'.*at least 3 rows.*N=2"),
        # D=1 (or too few dimensions) for k=2
        ({"features": _rows(d=1)}, ValueError, r"'n_components'.*min\(N, D\) = 1.*D=1"),
        ({"features": _rows(d=1), "method": "umap"}, ValueError, r"'n_components'.*= 1"),
        ({"features": _rows(d=3), "n_components": 3, "perplexity": 5}, None, None),
        ({"pca_dims": 1}, ValueError, r"'pca_dims'.*>= n_components = 2.*Got 1"),
        # labels
        ({"labels": [None] + [1] * 39}, ValueError, r"'labels'.*1 missing .* at rows \[0\]"),
        ({"labels": [0.0] * 39 + [np.nan]}, ValueError, r"'labels'.*missing .* at rows \[39\]"),
        (
            {"labels": np.array(["a", 1] * 20, dtype=object)},
            ValueError,
            r"'labels'.*one kind.*\['int', 'str'\]",
        ),
        # NaN / inf features with a pre-step method
        (
            {"features": np.where(np.eye(40, 6) > 0, np.inf, _rows())},
            ValueError,
            r"'features'.*6 row",
        ),
        # a spread float32 distances cannot hold
        # (a ramp: every column ranges over 6 * 39 = 234)
        (
            {"features": _ramp() * 1e30},
            ValueError,
            r"'features'.*spans 2.34e\+32.*\[1e-12, 1e\+12\]",
        ),
        (
            {"features": _ramp() * 1e-20, "method": "umap"},
            ValueError,
            r"'features'.*spans 2.34e-18",
        ),
        ({"features": _near_constant_f32()}, ValueError, r"'features'.*varies.*at most 6.1e-08"),
        # arguments
        ({"n_jobs": 0}, ValueError, r"'n_jobs'.*non-zero int.*Got 0"),
        ({"n_jobs": "2"}, ValueError, r"'n_jobs'.*Got '2'"),
        ({"random_state": -1}, ValueError, r"'random_state'.*\[0, inf\). Got -1"),
        ({"max_memory": 0}, ValueError, r"'max_memory'.*\[1, inf\). Got 0"),
        ({"batch_size": 0}, ValueError, r"'batch_size'.*\[1, inf\). Got 0"),
        ({"perplexity": float("nan")}, ValueError, r"'perplexity'.*\(0, inf\)"),
    ],
)
def test_degenerate_input_is_refused_up_front(kwargs, error, match):
    args = {"features": _rows(), "progress": False, **kwargs}
    if error is None:  # k = D = 3 is allowed (t-SNE's PCA init needs k <= D, not more)
        assert project(**args).embedding.shape == (40, 3)
        return
    with pytest.raises(error, match=match) as info:
        project(**args)
    assert "of project" in str(info.value)


def test_near_constant_pca_is_refused_not_returned_with_nan():
    x = _near_constant_f32()
    x[0, 1] = np.nextafter(np.float32(1000), np.float32(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no RuntimeWarning from sklearn on the way
        with pytest.raises(ValueError, match=r"'features'.*PCA step.*NaN or inf.*refused"):
            project(x * np.float32(1e-30), method="pca", progress=False)


def test_identical_rows_in_memory_maps_and_streams(tmp_path):
    path = tmp_path / "same.npy"
    np.save(path, np.ones((600, 30), dtype=np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # IncrementalPCA's 0/0 warnings stay inside
        with pytest.raises(ValueError, match=r"'features'.*600 identical rows"):
            project(np.load(path, mmap_mode="r"), method="pca", max_memory=1, progress=False)
        with pytest.raises(ValueError, match=r"'features'.*300 identical rows"):
            project(TensorDataset(torch.ones(300, 60)), method="pca", progress=False)


def test_stream_too_small_for_the_method():
    ds = TensorDataset(torch.from_numpy(_rows(3, 8).astype(np.float32)))
    with pytest.raises(ValueError, match=r"'features'.*at least 4 rows.*method='tsne'.*N=3"):
        project(ds, progress=False)
    with pytest.raises(ValueError, match=r"'n_components'.*min\(N, D\) = 3.*Got 5"):
        project(ds, method="pca", n_components=5, progress=False)


def test_identical_rows_with_tsne_raise_instead_of_crashing():
    # sklearn's t-SNE segfaulted on these (its PCA init divides by a zero std) and
    # openTSNE returned NaN; a crash would kill pytest, so they run in a fresh process
    code = """
import numpy as np
from featviz.projection import project
x = np.ones((50, 5))
tiny = x.copy(); tiny[0, 0] += 1e-12
small = np.random.default_rng(0).normal(size=(30, 3)) * 1e-30
for feats in (x, tiny, small, x.astype(np.float32)):
    try:
        project(feats, method="tsne", progress=False)
    except ValueError as exc:
        print(str(exc).split(" parameter")[0], "|", "nothing to project" in str(exc)
              or "float32" in str(exc))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["The 'features' | True"] * 4


def test_library_errors_are_wrapped_and_nan_results_refused(monkeypatch):
    from sklearn.manifold import TSNE

    def boom(self, z):
        raise RuntimeError("boom")

    monkeypatch.setattr(TSNE, "fit_transform", boom)
    with pytest.raises(
        ValueError,
        match=r"'features' parameter of project could not be.*"
        r"scikit-learn's TSNE failed \(RuntimeError: boom\)",
    ) as info:
        project(_rows(), perplexity=5, progress=False)
    assert isinstance(info.value.__cause__, RuntimeError)
    monkeypatch.setattr(TSNE, "fit_transform", lambda self, z: np.full((len(z), 2), np.nan))
    with pytest.raises(ValueError, match=r"'features'.*t-SNE embedding with NaN.*refused"):
        project(_rows(), perplexity=5, progress=False)


def test_warnings_as_errors_are_not_wrapped():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="perplexity=30 needs N > 90"):
            project(_rows(), progress=False)


def test_plot_projection_labels_follow_the_same_rule(tsne_proj):
    with pytest.raises(ValueError, match=r"'labels' parameter of plot_projection.*missing"):
        plot_projection(tsne_proj, labels=[None] * 300)


@pytest.mark.parametrize(
    ("features", "kwargs", "match"),
    [
        ({"a": np.ones((3, 4, 1, 1))}, {"sample": 0}, r"'features'.*layer 'a'.*1 point\(s\)"),
        ({"a": _rows(3, 4).reshape(3, 1, 2, 2)}, {"sample": 0}, r"'features'.*'a'.*1 value"),
        ({"a": _rows(5, 1)}, {}, r"'features'.*layer 'a'.*1 value"),
        ({"a": np.zeros((3, 4, 4, 4))}, {"sample": 0}, r"features\['a'\].*16 identical rows"),
        ({"a": _rows(1, 4)}, {}, r"features\['a'\].*at least 2 rows"),
        ({"a": _rows(3, 4)}, {"method": "tsne"}, r"features\['a'\].*at least 4 rows"),
        ({"a": _rows(6, 4)}, {"labels": [None] * 6}, r"'labels'.*missing"),
        ({"a": _rows(6, 4)}, {"random_state": -1}, r"'random_state'.*Got -1"),
        ({"a": _rows(6, 4), "b": np.float64(3.0)}, {}, r"'features'.*same images"),
        ({"a": [["x", "y"], ["z", "w"]]}, {}, r"features\['a'\].*numbers"),
    ],
)
def test_plot_layer_projections_names_itself_in_errors(features, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match) as info:
        plot_layer_projections(features, **kwargs)
    message = str(info.value)
    assert "parameter of plot_layer_projections" in message
    assert "of project" not in message and "project(" not in message


# -- one class, one colour (issue 23.3) --------------------------------------------------
TAB10 = [
    (0.1216, 0.4667, 0.7059),
    (1.0, 0.498, 0.0549),
    (0.1725, 0.6275, 0.1725),
    (0.8392, 0.1529, 0.1569),
]
NAMES = ["circle", "square", "triangle", "cross"]


def _legend_colours(ax):
    legend = ax.get_legend()
    handles = legend.legend_handles
    colours = []
    for h in handles:
        fc = h.get_markerfacecolor() if hasattr(h, "get_markerfacecolor") else h.get_facecolor()
        colours.append(_rgb([np.atleast_2d(matplotlib.colors.to_rgba_array(fc))[0]])[0])
    return dict(zip([t.get_text() for t in legend.get_texts()], colours, strict=True))


def test_plot_projection_class_colour_is_keyed_by_class_index():
    emb = np.arange(16.0).reshape(8, 2)
    ints = np.array([3, 1, 0, 2, 3, 1, 0, 2])
    # ints named through class_names, names directly: the same colour per class
    by_int = plot_projection(emb, ints, class_names=NAMES)
    by_name = plot_projection(emb, [NAMES[i] for i in ints], class_names=NAMES)
    for ax in (by_int, by_name):
        assert _rgb(ax.collections[0].get_facecolors()) == [TAB10[i] for i in ints]
        assert _legend_colours(ax) == dict(zip(NAMES, TAB10, strict=True))  # index order
    # a figure showing only classes 2 and 3 keeps their colours
    few = plot_projection(emb[:2], np.array([3, 2]), class_names=NAMES)
    assert _legend_colours(few) == {"triangle": TAB10[2], "cross": TAB10[3]}


def test_compare_projections_every_panel_has_the_named_legend_in_one_palette():
    from featviz.compare import compare_projections

    g = np.random.default_rng(0)
    x = g.normal(size=(24, 5))
    labels = np.arange(24) % 4
    fig = compare_projections({"a": x, "b": x * 2}, labels, method="pca", class_names=NAMES)
    expected = dict(zip(NAMES, TAB10, strict=True))
    assert [_legend_colours(ax) for ax in fig.axes] == [expected, expected]
    for ax in fig.axes:
        assert _rgb(ax.collections[0].get_facecolors()) == [TAB10[i] for i in labels]


def test_plot_layer_projections_lists_classes_in_index_order_by_name():
    g = np.random.default_rng(0)
    feats = {"a": g.normal(size=(12, 4)), "b": g.normal(size=(12, 3))}
    labels = np.array([3, 2, 1, 0] * 3)
    ax = plot_layer_projections(feats, labels=labels, class_names=NAMES)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts[-5:] == ["label", *NAMES]
