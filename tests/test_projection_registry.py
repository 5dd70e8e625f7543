"""The projection registry: every surface that offers a method reads `METHODS`.

`project`, `plot_layer_projections`, `project_steps`, `compare_projections`, `explore`
and the `Recorder` all take any row of the table, pass the `project` settings they are
given on, and a new row is a new method everywhere.
"""

from __future__ import annotations

import importlib.util
import inspect
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from featviz.projection import (
    METHODS,
    align_procrustes,
    plot_layer_projections,
    project,
    project_steps,
)
from featviz.projection import _common as K
from featviz.projection import _methods as M
from featviz.recorder import Recorder

# umap-learn is an optional extra: its rows are tested only where it is installed
ALL = [
    pytest.param(
        m,
        marks=pytest.mark.skipif(
            m == "umap" and importlib.util.find_spec("umap") is None, reason="no umap-learn"
        ),
    )
    for m in METHODS
]


def _rows(n=8, d=5, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def _recorded(projection, n=6, **kw) -> Recorder:
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(n, 3, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    model = _model()
    rec = Recorder(model, x, labels=y, layers="2", every=1, projection=projection, **kw)
    for s in range(3):
        rec.step(s)
        with torch.no_grad():
            model[2].weight.mul_(1.5).add_(0.1)  # the features change between records
    return rec


# -- the table ---------------------------------------------------------------------------------


def test_methods_is_a_read_only_view_of_the_table():
    assert list(METHODS) == ["pca", "tsne", "umap"]
    assert [METHODS[m].title for m in METHODS] == ["PCA", "t-SNE", "UMAP"]
    with pytest.raises(TypeError):
        METHODS["lda"] = METHODS["pca"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        METHODS["pca"].title = "x"  # type: ignore[misc]


def test_each_rows_settings_are_keywords_of_project():
    keywords = set(inspect.signature(project).parameters)
    for name, row in METHODS.items():
        assert row.settings, name
        assert set(row.settings) <= keywords, (name, row.settings)
    # only PCA maps new rows (align="fixed")
    assert [m for m in METHODS if METHODS[m].basis is not None] == ["pca"]


# -- project_steps and the Recorder -----------------------------------------------------------


def test_fixed_pca_basis_keeps_the_old_numbers():
    steps = [_rows(seed=s) for s in range(3)]
    got = project_steps(steps, method="pca", align="fixed")

    def old_pca2(x, basis=None):  # the Recorder's SVD before the registry, verbatim
        xc = np.asarray(x, dtype=np.float64)
        xc = xc - xc.mean(0)
        if basis is None:
            _, _, vt = np.linalg.svd(xc, full_matrices=False)
            basis = np.zeros((xc.shape[1], 2))
            basis[:, :2] = vt[:2].T
        return xc @ basis, basis

    _, basis = old_pca2(steps[-1])
    np.testing.assert_array_equal(got, np.stack([old_pca2(f, basis)[0] for f in steps]))
    # by hand: a cross of half-widths 2 (axis 0) and 1 (axis 2) maps onto its axes
    cross = np.array([[2.0, 0, 0], [-2, 0, 0], [0, 0, 1], [0, 0, -1]])
    np.testing.assert_allclose(
        np.abs(project_steps([cross], align="fixed")[0]), [[2, 0], [2, 0], [0, 1], [0, 1]]
    )


def test_procrustes_undoes_a_pca_sign_flip_exactly():
    f = _rows().astype(np.float64)
    pts = project_steps([f, -f, 3 * f], method="pca")
    np.testing.assert_allclose(pts[1], pts[0], atol=1e-12)
    np.testing.assert_allclose(pts[2], 3 * pts[0], atol=1e-12)  # no scaling


@pytest.mark.parametrize("method", ALL)
def test_procrustes_fits_each_step_and_aligns_it_to_the_previous(method):
    steps = [_rows(seed=s) for s in range(3)]
    kw = {"perplexity": 2.0} if method == "tsne" else {}
    got = project_steps(steps, method=method, random_state=3, **kw)
    own = [
        project(f.astype(np.float64), method=method, random_state=3, progress=False, **kw)
        for f in steps
    ]
    np.testing.assert_array_equal(got[0], own[0].embedding)
    np.testing.assert_allclose(got[1], align_procrustes(own[1].embedding, got[0]), atol=1e-9)
    np.testing.assert_allclose(got[2], align_procrustes(own[2].embedding, got[1]), atol=1e-9)


@pytest.mark.parametrize("method", ALL)
def test_recorder_projects_with_every_method(method):
    kw = {"project_kwargs": {"perplexity": 1.5}} if method == "tsne" else {}
    rec = _recorded(method, **kw)
    assert rec.projection == method
    pts = rec.projections()
    assert pts.shape == (3, 6, 2) and np.isfinite(pts).all()
    expected = project_steps(
        rec.features_, method=method, random_state=0, **kw.get("project_kwargs", {})
    )
    np.testing.assert_array_equal(pts, expected)
    fig = rec.plot_projection_timeline()
    assert len(fig.axes) == 3
    np.testing.assert_array_equal(fig.axes[1].collections[0].get_offsets(), pts[1])
    if METHODS[method].basis is None:
        with pytest.raises(ValueError, match=r"'align'.*'procrustes' for method=.*cannot map"):
            rec.projections("fixed")
    else:
        assert rec.projections("fixed").shape == (3, 6, 2)


def test_recorder_passes_settings_through():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # perplexity=1.5 < N / 3: no lowering warning
        rec = _recorded("tsne", project_kwargs={"perplexity": 1.5, "pca_dims": None})
        pts = rec.projections()
    first = project(rec.features_[0].astype(np.float64), perplexity=1.5, pca_dims=None)
    np.testing.assert_array_equal(pts[0], first.embedding)
    with pytest.warns(UserWarning, match="perplexity=30 needs N > 90") as caught:
        default = _recorded("tsne").projections()  # perplexity 30, lowered to 5/3
    assert caught[0].filename == __file__  # pointed at the user's line, not featviz's
    assert not np.array_equal(pts, default)


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"projection": "lda"}, ValueError, r"'projection' parameter of Recorder.*'umap'"),
        ({"project_kwargs": {"perplexity": -1}}, ValueError, r"'perplexity'.*of Recorder"),
        ({"project_kwargs": {"engine": "opentsne"}}, ValueError, r"'engine'.*method='pca'"),
        ({"project_kwargs": {"colour": 1}}, TypeError, r"'project_kwargs'.*Recorder.*'colour'"),
        ({"project_kwargs": {"n_components": 3}}, TypeError, r"may not set \['n_components'\]"),
        ({"project_kwargs": [("perplexity", 5)]}, TypeError, r"'project_kwargs'.*mapping"),
    ],
)
def test_recorder_checks_the_projection_at_construction(kw, error, match):
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(error, match=match):
        Recorder(_model(), x, layers="2", **kw)


def test_project_steps_errors():
    f = _rows()
    with pytest.raises(ValueError, match=r"'align' parameter of project_steps.*Got 'spin'"):
        project_steps([f], align="spin")
    with pytest.raises(ValueError, match=r"'align'.*t-SNE cannot map new rows"):
        project_steps([f], method="tsne", align="fixed")
    with pytest.raises(ValueError, match=r"same samples.*\(8, 5\), \(9, 5\)"):
        project_steps([f, _rows(9)])
    with pytest.raises(ValueError, match=r"'features\[0\]' parameter of project_steps.*4 rows"):
        project_steps([f[:3], f[:3]], method="tsne")  # checked as project does, per step
    with pytest.raises(TypeError, match=r"'features' parameter of project_steps"):
        project_steps(3.0)


# -- the other surfaces -------------------------------------------------------------------------


def test_plot_layer_projections_passes_settings_to_project():
    feats = {"a": _rows(12, 6), "b": _rows(12, 4, seed=1)}
    ax = plot_layer_projections(feats, method="tsne", perplexity=2.0, pca_dims=None)
    shown = ax.collections[0].get_offsets()  # one scatter: layer "a", then "b"
    for i, x in enumerate(feats.values()):
        expected = project(x, method="tsne", perplexity=2.0, pca_dims=None, normalize=True)
        np.testing.assert_array_equal(shown[12 * i : 12 * (i + 1)], expected.embedding)
    assert ax.get_title().startswith("t-SNE of 2 layers")
    with pytest.raises(TypeError, match=r"'project_kwargs' parameter of plot_layer_projections"):
        plot_layer_projections(feats, colour=1)
    with pytest.raises(TypeError, match=r"may not set \['n_components'\]"):
        plot_layer_projections(feats, n_components=3)
    with pytest.raises(ValueError, match=r"'method' parameter of plot_layer_projections"):
        plot_layer_projections(feats, method="lda")


def test_compare_projections_checks_the_method_and_passes_settings():
    from featviz.compare import compare_projections

    x, labels = _rows(12, 6), np.arange(12) % 2
    with pytest.raises(ValueError, match=r"'method' parameter of compare_projections.*'umap'"):
        compare_projections({"a": x}, labels, method="lda")
    fig = compare_projections({"a": x}, labels, method="tsne", perplexity=2.0, pca_dims=None)
    expected = project(x, method="tsne", perplexity=2.0, pca_dims=None).embedding
    shown = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    np.testing.assert_allclose(np.sort(shown, axis=0), np.sort(expected, axis=0))


def test_explore_checks_the_method_and_passes_settings():
    from featviz.explorer import explore
    from featviz.extraction import FeatureSet

    x = _rows(12, 6)
    fs = FeatureSet(layers={"a": x}, labels=np.arange(12) % 2)
    view = explore(fs, method="tsne", project_kwargs={"perplexity": 2.0, "pca_dims": None})
    expected = project(x, method="tsne", perplexity=2.0, pca_dims=None).embedding
    np.testing.assert_array_equal(np.column_stack([view.data["x"], view.data["y"]]), expected)
    with pytest.raises(ValueError, match=r"'method'.*\['pca', 'tsne', 'umap'\].*'lda'"):
        explore(fs, method="lda")
    with pytest.raises(TypeError, match=r"'project_kwargs' parameter of explore.*'colour'"):
        explore(fs, project_kwargs={"colour": 1})
    with pytest.raises(ValueError, match=r"'perplexity' parameter of explore"):
        explore(fs, method="tsne", project_kwargs={"perplexity": 0})


def test_a_new_row_is_a_new_method_everywhere(monkeypatch):
    from featviz.compare import compare_projections
    from featviz.explorer import explore
    from featviz.extraction import FeatureSet

    def flip(red, s):
        return K._Embedding(-np.asarray(red.data)[:, : s.k], "hand")

    row = M._Method("Flip", ("auto",), flip, False, 2, "", None, False, ("engine",))
    monkeypatch.setitem(M._METHODS, "flip", row)
    assert "flip" in METHODS  # the public view follows the table
    x = _rows(12, 6)
    pca = project(x, method="pca", progress=False, score=False).embedding
    np.testing.assert_array_equal(project(x, method="flip").embedding, -pca)
    fs = FeatureSet(layers={"a": x})
    np.testing.assert_array_equal(explore(fs, method="flip").data["x"], -pca[:, 0])
    fig = compare_projections({"a": x}, np.arange(12) % 2, method="flip")
    assert fig.axes[0].get_title().startswith("a\nFlip (hand)")
    ax = plot_layer_projections({"a": x}, method="flip")
    assert ax.get_title().startswith("Flip of 1 layers")
    rec = _recorded("flip")
    assert rec.projections().shape == (3, 6, 2)
    with pytest.raises(ValueError, match=r"'align'.*Flip cannot map new rows"):
        rec.projections("fixed")
