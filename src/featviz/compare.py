"""Before/after comparison figures: the same images or samples through several models.

Each function takes ``{label: model}`` (or ``{label: features}``) in the order the
columns should appear, computes what the single-model function would, and draws one
figure: one row per image and one column per model, so a claim like "our model looks at
the object" or "classes separate better" is one call away and carries numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from featviz._images import model_batch
from featviz._ops import eval_mode, minmax
from featviz._validation import check_choice, renamed

if TYPE_CHECKING:
    from matplotlib.colors import Colormap
    from matplotlib.figure import Figure

    from featviz.hooks import LayerSpec

__all__ = ["compare_cams", "compare_feature_maps", "compare_projections"]

Scale = Literal["map", "row"]


def _check_models(models: Any, func: str) -> dict[str, nn.Module]:
    if not isinstance(models, Mapping) or not models:
        raise TypeError(
            f"The 'models' parameter of {func} must be a non-empty mapping "
            f"{{label: model}}. Got {type(models).__name__}."
        )
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"The 'models' parameter of {func} maps {name!r} to "
                f"{type(model).__name__}, not a torch.nn.Module."
            )
    return {str(k): v for k, v in models.items()}


def _layer_for(layers: Any, name: str, func: str) -> Any:
    if isinstance(layers, Mapping):
        if name not in layers:
            raise ValueError(
                f"The 'layers' parameter of {func} has no entry for model {name!r}; "
                f"it has {list(layers)}."
            )
        return layers[name]
    return layers


def _eval_forward(model: nn.Module, images: torch.Tensor, layer: Any = None) -> tuple[Any, Any]:
    """Forward pass in eval mode without grad, train flags restored afterwards.

    Returns ``(outputs, activation)``: the output of ``layer`` (a spec naming one module)
    when given, else None.
    """
    from featviz.hooks import capture

    with eval_mode(model), torch.no_grad():
        if layer is None:
            return model(images), None
        with capture(model, layer) as cap:
            out = model(images)
        return out, next(iter(cap.activations.values()), None)


def _titles(
    model: nn.Module, outputs: Any, class_names: Sequence[str] | None, fallback: str
) -> list[str]:
    """``"class (softmax score)"`` per image for (N, K) class scores, else ``fallback``."""
    if not isinstance(outputs, torch.Tensor) or outputs.dim() != 2:
        n = len(outputs) if isinstance(outputs, torch.Tensor) else 0
        return [fallback] * n
    score, cls = outputs.float().softmax(dim=1).max(dim=1)
    return [
        f"{_class_name(model, class_names, int(c))} ({float(v):.2f})"
        for c, v in zip(cls.cpu(), score.cpu(), strict=True)
    ]


def _layer_note(keys: Sequence[str], reshapes: Sequence[Any]) -> str:
    """``"layer: key"`` plus the reshape, if any, for a figure title."""
    notes = [f"{k} ({r!r})" if r is not None else k for k, r in zip(keys, reshapes, strict=False)]
    return "layer: " + ", ".join(notes)


def _class_name(model: nn.Module, class_names: Sequence[str] | None, index: int) -> str:
    names = class_names if class_names is not None else getattr(model, "classes", None)
    if names is not None and 0 <= index < len(names):
        return str(names[index])
    return str(index)


def _rescale(maps: dict[str, torch.Tensor], scale: Scale) -> None:
    """Min-max normalise in place: each map alone ("map") or jointly per row ("row")."""
    if scale == "map":
        for name, m in maps.items():
            maps[name] = minmax(m, what="CAM")
        return
    # "row": one min and max per image over every model's map (maps share a size)
    joint = minmax(torch.stack(list(maps.values()), dim=1), what="CAM")  # (N, M, h, w)
    for i, name in enumerate(maps):
        maps[name] = joint[:, i]


def _draw(
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    titles: dict[str, list[str]],
    *,
    alpha: float,
    cmap: str | Colormap,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    row_names: Sequence[str] | None,
    fig: Figure | None,
    what: str,
    layers: Mapping[str, str],
) -> Figure:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from featviz._figures import new_figure
    from featviz.featuremaps import colorize, overlay

    n, cols = images.shape[0], 1 + len(maps)
    if row_names is not None and len(row_names) != n:
        raise ValueError(f"The 'row_names' parameter has {len(row_names)} entries for {n} images.")
    # input column: the images as displayed (alpha 0 blend = the image itself)
    shown = overlay(
        images.detach(), torch.zeros(images.shape[0], 1, 1), alpha=0.0, mean=mean, std=std
    )
    shown_np = np.asarray(shown.cpu() if isinstance(shown, torch.Tensor) else shown)
    if fig is None:
        fig = new_figure((2.4 * cols, 2.4 * n + 0.6), layout="constrained")
    else:
        fig.clear()  # the one rule for a given figure: cleared, then drawn into
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(shown_np[i])
        if i == 0:
            axes[i, 0].set_title("input", fontsize=9)
        if row_names is not None:
            axes[i, 0].set_ylabel(str(row_names[i]), fontsize=9)
    for j, (name, m) in enumerate(maps.items(), start=1):
        blended = overlay(
            images.detach(), m, alpha=alpha, cmap=cmap, mean=mean, std=std, normalize=False
        )
        arr = np.asarray(blended.cpu() if isinstance(blended, torch.Tensor) else blended)
        for i in range(n):
            axes[i, j].imshow(arr[i])
            # the first row also says which layer (and reshape) the maps come from
            head = f"{name}\n{layers[name]}" if i == 0 else name
            axes[i, j].set_title(f"{head}\n{titles[name][i]}", fontsize=8 if i else 7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    # one colour scale for every panel: maps are in [0, 1] after rescaling
    lut = colorize(torch.linspace(0, 1, 256)[None], cmap=cmap)
    from matplotlib.colors import ListedColormap

    lut_np = np.asarray(lut.cpu() if isinstance(lut, torch.Tensor) else lut)[0] / 255.0
    mappable = ScalarMappable(norm=Normalize(0, 1), cmap=ListedColormap(lut_np))
    fig.colorbar(mappable, ax=axes[:, 1:].ravel().tolist(), shrink=0.6, label=what)
    return fig


@renamed(row_labels="row_names")
def compare_cams(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    *,
    layers: LayerSpec | Mapping[str, LayerSpec] | None = None,
    method: str = "gradcam",
    target: Any = None,
    alpha: float = 0.4,
    cmap: str | Colormap = "jet",
    scale: Scale = "map",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    row_names: Sequence[str] | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Side-by-side CAM overlays of several models on the same images.

    One row per image; columns: input | one overlay per model, in the mapping's order.
    Each panel is titled with that model's predicted class and softmax score; the
    first row's titles also name the layer the maps use (the one `featviz.CAM` chose
    with ``layers=None``) and its reshape, if any (``CAM.layers_``/``CAM.reshapes_``). All
    panels share one colour scale (a single colour bar, 0 to 1): with ``scale="map"``
    each map is min-max normalised on its own (what single-model figures show); with
    ``scale="row"`` the raw (un-normalised, ReLU'd) maps of one image are normalised
    together, so a model whose map is weaker also looks weaker.

    Args:
        models: ``{label: model}``; every model takes ``images`` as they are.
        images: Model inputs (N, C, H, W) (or one image (C, H, W)).
        layers: The CAM layer: one spec for all models (see `featviz.resolve_layers`), or
            ``{label: spec}`` per model; None lets `featviz.CAM` pick each model's last
            spatial layer.
        method: CAM method name, as in `featviz.CAM`.
        target: Class target, as in `featviz.grad_cam` (None: each model's arg-max).
        alpha: Weight of the heatmap colour in the overlays.
        cmap: Colour map.
        scale: ``"map"`` or ``"row"``, see above.
        mean: Per-channel mean the images were normalised with (for display).
        std: Per-channel standard deviation the images were normalised with.
        class_names: Names of the classes for the titles (default ``model.classes``
            when the model has that attribute, else indices).
        row_names: One name per image, drawn left of each row.
        fig: Figure to draw into (cleared first); a new one when None.

    Returns:
        The figure (nothing is saved or shown).

    Raises:
        TypeError: ``models`` is not a mapping of modules, ``images`` not a tensor.
        ValueError: Bad shapes, unknown ``scale``, ``layers`` missing a model.
    """
    from featviz.cam import CAM

    func = "compare_cams"
    models = _check_models(models, func)
    images = model_batch(images, func=func, single=True)
    check_choice(scale, "scale", func, ("map", "row"))
    maps: dict[str, torch.Tensor] = {}
    titles: dict[str, list[str]] = {}
    used: dict[str, str] = {}
    for name, model in models.items():
        extractor = CAM(
            model, _layer_for(layers, name, func), method=method, normalize=False, progress=False
        )
        maps[name] = extractor(images, target=target).float()
        used[name] = _layer_note(extractor.layers_ or [], extractor.reshapes_)
        out, _ = _eval_forward(model, images)
        titles[name] = _titles(model, out, class_names, name)
    _rescale(maps, scale)
    return _draw(
        images,
        maps,
        titles,
        alpha=alpha,
        cmap=cmap,
        mean=mean,
        std=std,
        row_names=row_names,
        fig=fig,
        what=f"{method} (normalised)",
        layers=used,
    )


@renamed(row_labels="row_names")
def compare_feature_maps(
    models: Mapping[str, nn.Module],
    images: torch.Tensor,
    *,
    layers: LayerSpec | Mapping[str, LayerSpec],
    reduce: str = "sum",
    alpha: float = 0.4,
    cmap: str | Colormap = "jet",
    scale: Scale = "map",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    row_names: Sequence[str] | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Side-by-side channel-summed feature maps of several models on the same images.

    Like `compare_cams`, with the map of each model being `featviz.sum_channels` of the
    chosen layer's output (N, C, h, w) -> (N, h, w), resized to the images.

    Args:
        models: ``{label: model}``.
        images: Model inputs (N, C, H, W) (or one image (C, H, W)).
        layers: One layer spec for all models or ``{label: spec}``; each must name one
            module with a (N, C, h, w) output.
        reduce: Channel reduction, as in `featviz.sum_channels`.
        alpha: Weight of the heatmap colour in the overlays.
        cmap: Colour map.
        scale: ``"map"`` (each map normalised alone) or ``"row"`` (jointly per image).
        mean: Per-channel mean the images were normalised with (for display).
        std: Per-channel standard deviation the images were normalised with.
        class_names: Class names for the titles.
        row_names: One name per image, drawn left of each row.
        fig: Figure to draw into (cleared first); a new one when None.

    Returns:
        The figure.

    Raises:
        TypeError, ValueError: As in `compare_cams`; a layer spec that names several
            modules, or whose output is not 4-D.
    """
    from featviz.featuremaps import sum_channels, upsample
    from featviz.hooks import resolve_layers

    func = "compare_feature_maps"
    models = _check_models(models, func)
    images = model_batch(images, func=func, single=True)
    check_choice(scale, "scale", func, ("map", "row"))
    maps: dict[str, torch.Tensor] = {}
    titles: dict[str, list[str]] = {}
    used: dict[str, str] = {}
    size = tuple(images.shape[-2:])
    for name, model in models.items():
        spec = _layer_for(layers, name, func)
        found = resolve_layers(model, spec)
        if len(found) != 1:
            raise ValueError(
                f"The 'layers' parameter of {func} must name one module per model; "
                f"{spec!r} names {len(found)} in {name!r}."
            )
        key = next(iter(found))
        out, fmap = _eval_forward(model, images, spec)
        if not isinstance(fmap, torch.Tensor) or fmap.dim() != 4:
            raise ValueError(
                f"Layer {key!r} of {name!r} gives {getattr(fmap, 'shape', type(fmap))}; "
                f"{func} needs a (N, C, h, w) output."
            )
        maps[name] = upsample(sum_channels(fmap, reduce=reduce).float(), size)
        titles[name] = _titles(model, out, class_names, key)
        used[name] = _layer_note([key], [None])
    _rescale(maps, scale)
    return _draw(
        images,
        maps,
        titles,
        alpha=alpha,
        cmap=cmap,
        mean=mean,
        std=std,
        row_names=row_names,
        fig=fig,
        what=f"channel {reduce} (normalised)",
        layers=used,
    )


def compare_projections(
    features: Mapping[str, Any],
    labels: Any,
    *,
    method: str = "tsne",
    random_state: int | None = 0,
    palette: Any = None,
    class_names: Sequence[str] | None = None,
    fig: Figure | None = None,
    **project_kwargs: Any,
) -> Figure:
    """One projection panel per model, with 10-NN accuracy and trustworthiness in titles.

    Every model's features of the same N samples are projected with `featviz.project`
    (same method, seed and options) and drawn with `featviz.plot_projection`, with one
    shared colour per label across panels.

    Args:
        features: ``{label: features (N, ...)}``: tensors, arrays or FeatureSet layers.
        labels: Class of each sample (N,), shared by all models.
        method: A projection method, a name of `featviz.projection.METHODS`
            (``"pca"``, ``"tsne"``, ``"umap"``).
        random_state: Seed for every projection.
        palette: Seaborn palette; default the class palette of `plot_projection`
            (class index ``i`` in colour ``i`` of tab10), the same in every panel.
        class_names: Names of the class indices: int labels are shown by name in the
            legends (one per panel).
        fig: Figure to draw into (cleared first); a new one when None.
        **project_kwargs: Further settings of `featviz.project` for every panel
            (``perplexity``, ``pca_dims``, ``engine``, ``n_components``, ...).

    Returns:
        The figure; each panel's title carries the model label, method, N and quality.

    Raises:
        TypeError: ``features`` is not a non-empty mapping.
        ValueError: ``method`` is no method of ``METHODS``, the models' feature sets have
            different N, or ``labels`` has another length; and what `featviz.project`
            refuses.
    """
    from featviz._figures import new_figure
    from featviz.projection import METHODS, plot_projection, project

    func = "compare_projections"
    method = check_choice(method, "method", func, tuple(METHODS), ignore_case=True)
    if not isinstance(features, Mapping) or not features:
        raise TypeError(
            f"The 'features' parameter of {func} must be a non-empty mapping "
            f"{{label: features}}. Got {type(features).__name__}."
        )
    lengths = {name: len(f) for name, f in features.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"The 'features' parameter of {func} needs the same samples for every model; "
            f"got lengths {lengths}."
        )
    labels_np = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    n = next(iter(lengths.values()))
    if labels_np.shape != (n,):
        raise ValueError(
            f"The 'labels' parameter of {func} has shape {labels_np.shape}; expected ({n},)."
        )
    cols = len(features)
    if fig is None:
        fig = new_figure((4.6 * cols, 4.4), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for ax, (name, feats) in zip(axes, features.items(), strict=True):
        proj = project(
            feats,
            method=method,
            labels=labels_np,
            random_state=random_state,
            progress=False,
            **project_kwargs,
        )
        plot_projection(proj, class_names=class_names, palette=palette, ax=ax)
        ax.set_title(f"{name}\n{ax.get_title()}", fontsize=9)
    return fig
