"""featviz.explore: the columns of the view, the saved page, input checks, laziness."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("bokeh", reason="featviz.explore needs bokeh (pip install bokeh)")

from featviz.explorer import COLOR_BY, ExploreView, explore
from featviz.extraction import FeatureSet
from featviz.featuremaps import overlay


# -- helpers -------------------------------------------------------------------------------
def decode(uri: str) -> np.ndarray:
    from PIL import Image

    head, data = uri.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def page_columns(page: str) -> dict[str, Any]:
    """The 'featviz_points' ColumnDataSource of a saved page, decoded from bokeh's JSON."""
    blobs = re.findall(
        r'<script type="application/json" id="[^"]*">\s*(.*?)\s*</script>', page, re.S
    )
    assert len(blobs) == 1
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            attrs = node.get("attributes", {})
            if node.get("name") == "ColumnDataSource" and attrs.get("name") == "featviz_points":
                found.append(attrs["data"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(blobs[0]))
    assert len(found) == 1
    columns = {}
    for key, value in found[0]["entries"]:
        if isinstance(value, dict) and value.get("type") == "ndarray":
            raw = base64.b64decode(value["array"]["data"])
            raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw  # bokeh gzips arrays
            value = np.frombuffer(raw, dtype=value["dtype"]).reshape(value["shape"])
        columns[key] = value
    return columns


def solid_images(n: int, h: int = 32, w: int = 32) -> torch.Tensor:
    """(n, 3, h, w) uint8 images, image i filled with one colour (exact under resizing)."""
    colours = torch.tensor(
        [[(37 * i) % 256, (91 * i + 40) % 256, (13 * i + 200) % 256] for i in range(n)]
    )
    return colours.to(torch.uint8)[:, :, None, None].expand(n, 3, h, w).contiguous()


# -- columns -------------------------------------------------------------------------------
def test_columns_from_arrays_and_logits():
    pts = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
    view = explore(pts, labels=[0, 1, 0], predictions=logits, class_names=["cat", "dog"])
    assert isinstance(view, ExploreView) and len(view) == 3
    np.testing.assert_array_equal(view.data["x"], [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(view.data["y"], [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(view.data["index"], [0, 1, 2])
    assert view.data["label"] == ["cat", "dog", "cat"]
    assert view.data["prediction"] == ["cat", "dog", "dog"]
    assert view.data["correct"] == ["correct", "correct", "wrong"]
    # softmax of the top logit: 1 / (1 + e^-d) for a logit gap d
    expected = 1 / (1 + np.exp(-np.array([2.0, 1.0, 2.0])))
    np.testing.assert_allclose(view.data["confidence"], expected, rtol=1e-12)
    assert view.color_by == list(COLOR_BY)


def test_string_labels_and_given_confidence():
    view = explore(
        torch.zeros(2, 2), labels=["a", "b"], predictions=["a", "a"], confidence=[0.25, 1.0]
    )
    assert view.data["label"] == ["a", "b"] and view.data["correct"] == ["correct", "wrong"]
    np.testing.assert_array_equal(view.data["confidence"], [0.25, 1.0])


def test_points_only_has_no_colourings():
    view = explore(np.zeros((4, 2)))
    assert view.color_by == [] and set(view.data) == {"x", "y", "index"}


def test_projection_input():
    from featviz.projection import project

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 5))
    names = ["a", "b", "c"] * 10
    proj = project(feats, method="pca", labels=names, progress=False, score=False)
    view = explore(proj)
    np.testing.assert_array_equal(view.data["x"], proj.embedding[:, 0])
    np.testing.assert_array_equal(view.data["y"], proj.embedding[:, 1])
    assert view.data["label"] == names


def test_feature_set_input_projects_and_uses_outputs():
    from featviz.projection import project

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(12, 6)).astype(np.float32)
    outputs = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]] * 5
    fs = FeatureSet(
        layers={"fc": feats},
        outputs=outputs,
        labels=np.zeros(12, dtype=np.int64),
        index=np.arange(100, 112),
    )
    view = explore(fs, class_names=["x", "y", "z"])
    emb = project(feats, method="pca", progress=False, score=False).embedding
    np.testing.assert_allclose(view.data["x"], emb[:, 0])
    np.testing.assert_array_equal(view.data["index"], np.arange(100, 112))
    assert view.data["prediction"][:3] == ["x", "y", "z"]
    assert view.data["correct"].count("correct") == 4


# -- images --------------------------------------------------------------------------------
def test_thumbnails_decode_to_the_images():
    images = solid_images(5, 64, 32)
    view = explore(np.zeros((5, 2)), images=images, thumbnail_size=16, image_format="png")
    sprites = view.thumbnails
    assert sprites.tile == (16, 8)  # longer side 16, aspect kept
    assert len(sprites.sheets) == 1 and sprites.sizes == [(40, 16)]  # one row of 5 tiles
    for i in range(5):
        expected = images[i, :, 0, 0].numpy()[None, None].repeat(16, 0).repeat(8, 1)
        np.testing.assert_array_equal(sprites.image(i), expected)
    np.testing.assert_array_equal(view.data["thumb_x"], [0, 8, 16, 24, 32])
    np.testing.assert_array_equal(view.data["thumb_y"], [0] * 5)
    np.testing.assert_array_equal(view.data["thumb_sheet"], [0] * 5)


def test_tiles_fill_rows_then_sheets(monkeypatch):
    import featviz._explorer_page as page

    monkeypatch.setattr(page, "SHEET_PX", 24)  # 3 x 3 tiles of 8 px per sheet
    images = solid_images(11, 8, 8)
    view = explore(np.zeros((11, 2)), images=images, image_format="png", detail_size=16)
    sprites = view.thumbnails
    assert (sprites.per_row, sprites.per_sheet) == (3, 9)
    assert sprites.sizes == [(24, 24), (16, 8)]  # the last sheet holds tiles 9 and 10
    np.testing.assert_array_equal(view.data["thumb_sheet"], [0] * 9 + [1, 1])
    np.testing.assert_array_equal(view.data["thumb_x"], [0, 8, 16] * 3 + [0, 8])
    np.testing.assert_array_equal(view.data["thumb_y"], [0, 0, 0, 8, 8, 8, 16, 16, 16, 0, 0])
    for i in range(11):
        assert (sprites.image(i) == images[i, :, 0, 0].numpy()).all(), i
    assert view.details["image"].tile == (8, 8)  # never enlarged


def test_thumbnails_of_a_float_channel_last_array_with_mean_std():
    # normalised float images (N, H, W, C): value v displays as v * std + mean
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    arr = np.full((2, 8, 8, 3), -1.0, dtype=np.float32)  # -> 0.25 -> 64 (rounded half up)
    arr[1] = 2.0  # -> 1.0 -> 255
    view = explore(np.zeros((2, 2)), images=arr, mean=mean, std=std, image_format="png")
    assert view.thumbnails.image(0).tolist() == np.full((8, 8, 3), 64).tolist()
    assert view.thumbnails.image(1).tolist() == np.full((8, 8, 3), 255).tolist()


def test_webp_thumbnails_are_close_and_small():
    images = solid_images(3)
    view = explore(np.zeros((3, 2)), images=images, thumbnail_size=32)
    assert view.thumbnails.mime == "image/webp"
    assert all(u.startswith("data:image/webp;base64,") for u in view.thumbnails.data_uris())
    for i in range(3):
        tile = view.thumbnails.image(i).astype(int)
        # lossy and chroma-subsampled: neighbouring tiles bleed into the outer 2 pixels
        assert np.abs(tile[2:-2, 2:-2] - images[i, :, 0, 0].numpy()).max() <= 8
    assert view.thumbnails.nbytes < 3 * 200


def test_heatmap_details_are_featviz_overlays():
    images = torch.rand(4, 3, 24, 24)
    maps = torch.rand(4, 6, 6)
    view = explore(np.zeros((4, 2)), images=images, heatmaps={"gradcam": maps}, image_format="png")
    assert list(view.details) == ["image", "gradcam"]
    as_uint8 = (images * 255 + 0.5).clamp(0, 255).to(torch.uint8)
    expected = overlay(as_uint8, maps).numpy()
    for i in range(4):
        np.testing.assert_array_equal(
            view.details["image"].image(i), as_uint8[i].permute(1, 2, 0).numpy()
        )
        np.testing.assert_array_equal(view.details["gradcam"].image(i), expected[i])


# -- the page ------------------------------------------------------------------------------
def test_saved_page_holds_the_data_and_no_external_scripts(tmp_path):
    images = solid_images(6)
    view = explore(
        np.arange(12.0).reshape(6, 2),
        images=images,
        labels=[0, 1, 2, 0, 1, 2],
        class_names=["r", "g", "b"],
        image_format="png",
        thumbnail_size=8,
    )
    path = view.save(tmp_path / "explore.html")
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"<(script|link)[^>]*(src|href)=", page)  # bokeh inlined: opens offline
    cols = page_columns(page)
    np.testing.assert_array_equal(cols["index"], np.arange(6))
    np.testing.assert_array_equal(cols["x"], np.arange(0.0, 12.0, 2.0))
    assert cols["label"] == ["r", "g", "b", "r", "g", "b"]
    np.testing.assert_array_equal(cols["thumb_x"], np.arange(6) * 8)
    # the sheets are in the page once, as data URIs
    (sheet,) = view.thumbnails.data_uris()
    assert page.count(sheet) == 1
    for i in range(6):
        tile = decode(sheet)[:, i * 8 : (i + 1) * 8]
        assert (tile == images[i, :, 0, 0].numpy()).all()


def test_folder_assets(tmp_path):
    images = solid_images(3)
    view = explore(np.zeros((3, 2)), images=images, heatmaps={"g": torch.rand(3, 4, 4)})
    path = view.save(tmp_path / "my page.html", assets="folder")
    folder = tmp_path / "my page_files"
    assert sorted(p.name for p in folder.iterdir()) == [
        "detail0_0.webp",
        "detail1_0.webp",
        "thumb_0.webp",
    ]
    assert (folder / "thumb_0.webp").read_bytes() == view.thumbnails.sheets[0]
    page = path.read_text(encoding="utf-8")
    assert "my%20page_files/thumb_0.webp" in page and "data:image/webp" not in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my page.html", "my page_files"]
    view.save(tmp_path / "other.html", assets="folder")  # a second page, its own folder
    with pytest.raises(FileExistsError, match="overwrite=True"):
        view.save(path, assets="folder")
    path.unlink()  # the folder alone is not replaced either
    with pytest.raises(FileExistsError, match=r"image folder .*my page_files.*overwrite=True"):
        view.save(path, assets="folder")
    assert not path.exists()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="did not write"):
        view.save(path, assets="folder", overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    (folder / "notes.txt").unlink()
    view.save(path, assets="folder", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "my page.html",
        "my page_files",
        "other.html",
        "other_files",
    ]


def test_auto_assets_go_to_a_folder_above_the_limit(tmp_path, monkeypatch):
    import featviz.explorer as ex

    view = explore(np.zeros((3, 2)), images=solid_images(3))
    monkeypatch.setattr(ex, "INLINE_LIMIT", view.image_bytes)
    view.save(tmp_path / "a.html")
    assert not (tmp_path / "a_files").exists()
    monkeypatch.setattr(ex, "INLINE_LIMIT", view.image_bytes - 1)
    view.save(tmp_path / "b.html")
    assert (tmp_path / "b_files" / "thumb_0.webp").exists()
    with pytest.raises(ValueError, match=r"'assets'.*Got 'cdn'"):
        view.save(tmp_path / "c.html", assets="cdn")


def test_save_does_not_overwrite_without_permission(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("mine", encoding="utf-8")
    view = explore(np.zeros((2, 2)))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        view.save(path)
    assert path.read_text(encoding="utf-8") == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary left
    view.save(path, overwrite=True)
    assert "featviz_points" in path.read_text(encoding="utf-8")


def test_save_into_a_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="'path'"):
        explore(np.zeros((2, 2))).save(tmp_path / "nope" / "page.html")


def test_notebook_repr_warns_about_large_views(monkeypatch):
    import featviz.explorer as ex

    view = explore(np.zeros((2, 2)), images=solid_images(2))
    monkeypatch.setattr(ex, "INLINE_LIMIT", view.image_bytes - 1)
    with pytest.warns(UserWarning, match=r"view.save\('explore.html'\)"):
        view._repr_html_()


def test_notebook_repr_is_an_iframe_of_the_page():
    view = explore(np.zeros((2, 2)), labels=["a", "b"])
    out = view._repr_html_()
    assert out.startswith("<iframe srcdoc=") and "featviz_points" in out and "<script" not in out


# -- bad input -----------------------------------------------------------------------------
BAD = [
    (dict(points="pts"), TypeError, "'points'"),
    (dict(points=np.zeros((3, 1))), ValueError, r"'points'.*\(N, 2\).*\(3, 1\)"),
    (dict(points=np.zeros((0, 2))), ValueError, "'points'"),
    (dict(points=np.array([[0.0, np.nan], [1, 1]])), ValueError, r"'points'.*finite.*\[0\]"),
    (dict(labels=[0, 1]), ValueError, r"'labels'.*N=3"),
    (dict(labels=[0, 1, 5], class_names=["a", "b"]), ValueError, r"'labels'.*\[0, 1\].*\[0, 5\]"),
    (dict(predictions=np.zeros((3, 2, 2))), ValueError, "'predictions'"),
    (dict(confidence=[0.1, 0.2, 1.5]), ValueError, r"'confidence'.*\[0, 1\]"),
    (dict(class_names="abc"), TypeError, "'class_names'"),
    (dict(images=torch.zeros(2, 3, 8, 8)), ValueError, r"'images'.*N=3"),
    (dict(images=torch.zeros(3, 2, 8, 8)), ValueError, r"'images'.*channel-first"),
    (dict(images=np.zeros((3, 8, 8, 2))), ValueError, r"'images'.*channel-last"),
    (dict(images=[[0]]), TypeError, "'images'"),
    (dict(images=torch.zeros(3, 3, 8, 8, dtype=torch.int32)), TypeError, "'images'.*uint8"),
    (dict(heatmaps={"g": torch.zeros(3, 4, 4)}), ValueError, r"'images'.*heatmaps"),
    (dict(images=torch.zeros(3, 3, 8, 8), heatmaps=[1]), TypeError, "'heatmaps'"),
    (
        dict(images=torch.zeros(3, 3, 8, 8), heatmaps={"g": torch.zeros(2, 4, 4)}),
        ValueError,
        r"'heatmaps'.*N=3.*'g'",
    ),
    (dict(thumbnail_size=4), ValueError, r"'thumbnail_size'.*\[8, 512\]. Got 4"),
    (dict(thumbnail_size=True), ValueError, "'thumbnail_size'"),
    (dict(detail_size=2000), ValueError, "'detail_size'"),
    (dict(image_format="gif"), ValueError, "'image_format'.*'webp'"),
    (dict(quality=0), ValueError, "'quality'"),
    (dict(mean=(0.5, 0.5, 0.5)), ValueError, "'std'"),
]


@pytest.mark.parametrize(("kwargs", "exc", "pattern"), BAD, ids=lambda v: None)
def test_bad_input_names_the_parameter(kwargs, exc, pattern):
    kwargs = dict(kwargs)
    points = kwargs.pop("points", np.zeros((3, 2)))
    with pytest.raises(exc, match=pattern):
        explore(points, **kwargs)


def test_feature_set_needs_a_layer_when_it_has_several():
    fs = FeatureSet(layers={"a": np.zeros((3, 2)), "b": np.zeros((3, 2))})
    with pytest.raises(ValueError, match=r"'layers'.*\['a', 'b'\]"):
        explore(fs)
    with pytest.raises(ValueError, match=r"'layers'.*Got 'c'"):
        explore(fs, layers="c")
    with pytest.raises(ValueError, match=r"'method'.*Got 'lda'"):
        explore(fs, layers="a", method="lda")


# -- laziness and the package attribute ----------------------------------------------------
def test_import_featviz_does_not_import_bokeh():
    code = (
        "import sys, featviz, featviz.explorer; "
        "print(sorted(m for m in ('bokeh', 'PIL.Image') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_package_attribute_is_the_function_after_importing_the_module():
    code = (
        "import numpy as np, featviz.explorer, featviz; "
        "print(len(featviz.explore(np.zeros((3, 2)))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


# -- one class, one colour (issue 23.3) --------------------------------------------------
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"]
SHAPES = ["circle", "square", "triangle", "cross"]


def legends(view: ExploreView) -> dict[str, dict[str, str]]:
    """``{colouring: {legend label: fill colour}}`` of the page's bokeh models."""
    from bokeh.models.annotations import Legend

    out = {}
    for legend in view.layout().select({"type": Legend}):
        out[legend.title] = {
            item.label["value"]: item.renderers[0].glyph.fill_color for item in legend.items
        }
    return out


def page_legend_labels(page: str) -> list[list[str]]:
    """The legend entries of a saved page, in order, read from its JSON."""
    (blob,) = re.findall(
        r'<script type="application/json" id="[^"]*">\s*(.*?)\s*</script>', page, re.S
    )
    found: list[list[str]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("name") == "Legend":
                items = node.get("attributes", {}).get("items", [])
                found.append([i["attributes"]["label"]["value"] for i in items])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(json.loads(blob))
    return found


def test_class_colours_follow_the_class_index_in_every_colouring():
    labels = np.array([3, 1, 0, 2, 3, 1, 0, 2])
    logits = np.eye(4)[[0, 1, 3, 2, 3, 1, 0, 2]].astype(np.float32)  # predicts 0 for a 3
    view = explore(
        np.random.default_rng(0).normal(size=(8, 2)),
        labels=labels,
        predictions=logits,
        class_names=SHAPES,
    )
    got = legends(view)
    assert got["label"] == dict(zip(SHAPES, TAB10, strict=True))  # class-index order
    assert got["prediction"] == dict(zip(SHAPES, TAB10, strict=True))
    assert got["correct"] == {"correct": "#2ca02c", "wrong": "#d62728"}
    # the saved page lists them in that order too
    assert page_legend_labels(view.html())[:2] == [SHAPES, SHAPES]


def test_class_colours_of_a_subset_and_of_string_labels():
    # only classes 2 and 3 present: they keep the colours of classes 2 and 3
    view = explore(np.zeros((2, 2)), labels=[3, 2], class_names=SHAPES)
    assert legends(view)["label"] == {"triangle": TAB10[2], "cross": TAB10[3]}
    # no class names: number strings by value (class index), then text, sorted
    view = explore(np.zeros((4, 2)), labels=["b", "10", "2", "a"])
    assert list(legends(view)["label"]) == ["2", "10", "a", "b"]


@pytest.mark.parametrize("labels", [["²", "1", "2"], ["--1", "1", "x"], ["-1", "1", "x"]])
def test_legend_order_of_odd_label_strings_does_not_crash(labels):
    view = explore(np.zeros((3, 2)), labels=labels)
    assert sorted(legends(view)["label"]) == sorted(labels)
    assert "featviz_points" in view.html()
