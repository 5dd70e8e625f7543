r"""Sanity checks for saliency maps (Adebayo et al. 2018), for every CAM method, in one call.

A map that explains the model must change when the model changes. `sanity_check` runs
the tests of "Sanity checks for saliency maps" (Adebayo, Gilmer, Muelly, Goodfellow,
Hardt and Kim, NeurIPS 2018) over a batch of images, for any number of methods at once:

- **model-parameter randomisation**, *cascading* (the layers are re-initialised one by
  one from the logits down, and stay random) and *independent* (one layer at a time,
  the others as trained): each randomised model's maps are compared with the trained
  model's;
- **random logit** (the test of Sixt et al. 2020 and Quantus's ``RandomLogit``): the
  map of each image's class against the map of a random other class;
- **data randomisation** (optional): a model trained on permuted labels, given by the
  caller's training function.

Maps are compared with the paper's measures (`featviz._similarity`): Spearman's rank
correlation with and without absolute values, SSIM and the correlation of HOG features.
A map that passes has low similarity after randomisation; see `SanityReport.verdicts`.

The randomisation and seeding follow Quantus 0.6 (``quantus.MPRT``,
``quantus.RandomLogit``), so that the same model, images, seed and measure give the
same numbers (``tests/test_sanity.py`` checks this to 1e-6).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from featviz._ops import eval_mode as _eval_mode
from featviz._ops import resize
from featviz._outputs import Target
from featviz._scoring import resolve
from featviz._similarity import MEASURES, Measure
from featviz._validation import check_choice
from featviz.cam import CAM, METHODS, NearZeroMapWarning
from featviz.cam._shared import shared_maps
from featviz.hooks import LayerSpec, resolve_layers, unwrap_model

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["TESTS", "SanityReport", "plot_sanity_curves", "plot_sanity_maps", "sanity_check"]

#: The tests `sanity_check` can run.
TESTS: tuple[str, ...] = ("cascading", "independent", "random_logit", "data")

#: A method given as a function: ``(model, images (N, C, H, W), target) -> (N, H, W)``.
Explainer = Callable[[nn.Module, torch.Tensor, Any], torch.Tensor]

_COLUMNS = ("method", "test", "layer", "step", "image", "measure", "value")
_THUMB = 64  # the side of the maps kept for the figures
_NAMES = {
    "spearman_abs": "Spearman(abs)",
    "spearman": "Spearman",
    "ssim": "SSIM",
    "hog": "HOG similarity",
}


@dataclass
class SanityReport:
    """What `sanity_check` found.

    Attributes:
        scores: A tidy `pandas.DataFrame`, one row per (method, test, layer, step,
            image, measure) with its similarity ``value``. ``step`` 0 (layer
            ``"original"``) compares the trained model's maps with themselves; step
            ``s`` of ``cascading`` has the first ``s`` layers of ``layers`` randomised,
            step ``s`` of ``independent`` only the ``s``-th. ``random_logit`` and
            ``data`` have one step (1), layer ``""``.
        layers: The randomised layers, from the output down (the cascade's order).
        maps: ``{method: {test: (S, N, h, w) float32}}``: the maps of every step,
            shrunk to at most 64 pixels a side, for `plot_sanity_maps` (random logit:
            the image's class, then the random class; data: trained, then permuted).
        classes: (N,) int64 classes explained (None for a target that is no class).
        random_classes: (N,) int64 the random other classes of ``random_logit``.
        threshold: The similarity below which a test passes (see `verdicts`).
        measure: The measure the verdicts read.
    """

    scores: pd.DataFrame
    layers: list[str]
    maps: dict[str, dict[str, torch.Tensor]] = field(repr=False)
    classes: torch.Tensor | None = None
    random_classes: torch.Tensor | None = None
    threshold: float = 0.5
    measure: str = "spearman_abs"

    def mean(self, test: str, measure: str | None = None) -> pd.DataFrame:
        """Mean similarity over the images: one row per method, one column per step.

        Args:
            test: One of `TESTS` that was run.
            measure: One of the measures computed; None: ``self.measure``.

        Returns:
            DataFrame indexed by method, columns the layers in step order.
        """
        measure = measure or self.measure
        rows = self.scores[(self.scores.test == test) & (self.scores.measure == measure)]
        table = rows.pivot_table(index="method", columns="step", values="value", aggfunc="mean")
        names = rows.drop_duplicates("step").set_index("step")["layer"]
        return table.rename(columns=names.to_dict())

    def verdicts(self) -> dict[str, str]:
        """One line per method: does it pass each test that ran?

        A test passes when the mean similarity over the images (``self.measure``,
        Spearman's rank correlation of absolute values by default) is below
        ``self.threshold`` (0.5 by default): for ``cascading`` after randomising *all*
        the layers (the last step), for ``random_logit`` between the two classes' maps,
        for ``data`` between the trained and the permuted-label model's maps.
        ``independent`` is reported by the scores and the curves, not judged: a map may
        rightly hardly depend on one early layer.

        Returns:
            ``{method: "passes: ..."}`` or ``{method: "FAILS: ..."}``.
        """
        label = _NAMES.get(self.measure, self.measure)
        out = {}
        for method in self.scores.method.unique():
            rows = self.scores[
                (self.scores.method == method) & (self.scores.measure == self.measure)
            ]
            parts, ok = [], True
            for test, what in (
                ("cascading", f"after randomising all {len(self.layers)} layers"),
                ("random_logit", "between the class and a random class"),
                ("data", "trained vs permuted labels"),
            ):
                sel = rows[rows.test == test]
                if sel.empty:
                    continue
                value = float(sel[sel.step == sel.step.max()].value.mean())
                good = value < self.threshold
                ok &= good
                sign = "<" if good else ">="
                parts.append(f"{test}: mean {label} {value:.2f} {sign} {self.threshold} {what}")
            out[method] = ("passes: " if ok else "FAILS: ") + "; ".join(parts)
        return out

    def __str__(self) -> str:
        return "\n".join(f"{m}: {v}" for m, v in self.verdicts().items())


# -- the methods ------------------------------------------------------------------------
def _method_names(methods: Any) -> list[tuple[str, str | Explainer]]:
    """``[(name, method name or explainer)]`` from the 'methods' parameter."""
    if isinstance(methods, str) or callable(methods):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = list(methods.items())
    elif isinstance(methods, Sequence) and methods:
        items = [(m if isinstance(m, str) else getattr(m, "__name__", repr(m)), m) for m in methods]
    else:
        raise TypeError(
            "The 'methods' parameter of sanity_check must be a CAM method name, a callable "
            "(model, images, target) -> (N, H, W), or a non-empty sequence or dict of them. "
            f"Got {methods!r} instead."
        )
    for name, m in items:
        if not (isinstance(m, str) or callable(m)):
            raise TypeError(
                "The 'methods' parameter of sanity_check must hold method names (one of "
                f"{list(METHODS)}) or callables. Got {m!r} for {name!r} instead."
            )
    if len({n for n, _ in items}) != len(items):
        raise ValueError(
            "The 'methods' parameter of sanity_check names a method twice: "
            f"{[n for n, _ in items]}."
        )
    return items


class _Explainers:
    """The methods bound to one model: CAMs share one pass; callables run alone."""

    def __init__(
        self,
        model: nn.Module,
        methods: list[tuple[str, str | Explainer]],
        cam_layers: Any,
        eval_mode: bool,
    ) -> None:
        self.model = model
        self.eval_mode = eval_mode
        self.cams = {
            name: CAM(model, cam_layers, m, progress=False, eval_mode=eval_mode)
            for name, m in methods
            if isinstance(m, str)
        }
        self.functions = {name: m for name, m in methods if not isinstance(m, str)}
        self.order = [name for name, _ in methods]

    def __call__(self, images: torch.Tensor, target: Any) -> dict[str, torch.Tensor]:
        maps: dict[str, torch.Tensor] = {}
        if self.cams:
            shared = shared_maps(list(self.cams.values()), images, target)
            maps.update(zip(self.cams, shared, strict=True))
        for name, fn in self.functions.items():
            with _eval_mode(self.model, self.eval_mode):
                out = fn(self.model, images, target)
            maps[name] = _as_maps(out, images, name)
        return {name: maps[name] for name in self.order}


def _as_maps(out: Any, images: torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(out, np.ndarray):
        out = torch.from_numpy(out)
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"The method {name!r} must return a tensor or array (N, H, W). "
            f"Got {type(out).__name__} instead."
        )
    if out.ndim == 4 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim != 3 or out.shape[0] != images.shape[0]:
        raise ValueError(
            f"The method {name!r} must return one map per image, (N, H, W) with N = "
            f"{images.shape[0]}. Got shape {tuple(out.shape)} instead."
        )
    return out.detach().float()


# -- randomisation ------------------------------------------------------------------------
def _layer_names(model: nn.Module, layers: Any) -> list[str]:
    """The layers to randomise, from the output down.

    None: every module with a ``reset_parameters`` method, in reverse module order
    (Quantus's rule and order).
    """
    root = unwrap_model(model)
    if layers is None:
        names = [n for n, m in root.named_modules() if hasattr(m, "reset_parameters")]
        return names[::-1]
    names = list(resolve_layers(root, layers))
    for name in names:
        module = root.get_submodule(name)
        if not any(hasattr(m, "reset_parameters") for m in module.modules()):
            raise ValueError(
                f"The 'layers' entry {name!r} of sanity_check has no parameters to "
                "randomise (no module in it has reset_parameters); choose layers with "
                "weights, such as convolutions, norms or linear layers."
            )
    return names


def _randomise(module: nn.Module, random_state: int) -> None:
    """Re-initialise every part of ``module`` (output side first), each as Quantus does.

    Each module with ``reset_parameters`` is reset after ``torch.manual_seed(random_state
    + 1)``: the seed Quantus 0.6's ``get_random_layer_generator`` sets before each layer.
    """
    parts = [m for m in module.modules() if hasattr(m, "reset_parameters")]
    with torch.no_grad():
        for part in parts[::-1]:
            torch.manual_seed(random_state + 1)
            part.reset_parameters()  # type: ignore[operator]


def _rng_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})


# -- the tests ------------------------------------------------------------------------------
@dataclass
class _Run:
    """What every test needs: the batch, the target, the trained maps, the output."""

    images: torch.Tensor
    target: Any
    reference: dict[str, torch.Tensor]
    measures: list[str]
    rows: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in _COLUMNS})
    maps: dict[str, dict[str, list[torch.Tensor]]] = field(default_factory=dict)
    prepared: dict[int, dict[Any, torch.Tensor]] = field(default_factory=dict)

    def _prepared(self, maps: torch.Tensor, spec: Measure) -> torch.Tensor:
        """``maps`` prepared for ``spec``; the trained maps' preparations are kept."""
        key = spec.key(maps)
        if id(maps) not in {id(m) for m in self.reference.values()}:
            return key(maps)
        found = self.prepared.setdefault(id(maps), {})
        if key not in found:
            found[key] = key(maps)
        return found[key]

    def record(
        self, test: str, layer: str, step: int, maps: dict[str, torch.Tensor], ref: Any = None
    ) -> None:
        """Compare ``maps`` with the trained maps (or ``ref``) and keep the rows."""
        ref = self.reference if ref is None else ref
        n = self.images.shape[0]
        for method, m in maps.items():
            a = ref[method].to(m.device)
            if a.shape[-2:] != m.shape[-2:]:
                m = resize(m, tuple(a.shape[-2:]))
            mine: dict[Any, torch.Tensor] = {}  # each preparation of m once
            for measure in self.measures:
                spec = MEASURES[measure]
                key = spec.key(m)
                if key not in mine:
                    mine[key] = key(m)
                values = spec.score(self._prepared(a, spec), mine[key]).cpu().tolist()
                for col, v in zip(
                    _COLUMNS[:6], (method, test, layer, step, None, measure), strict=True
                ):
                    self.rows[col].extend([v] * n if col != "image" else range(n))
                self.rows["value"].extend(values)
            thumbs = self.maps.setdefault(method, {}).setdefault(test, [])
            if step == 1 and not thumbs:  # tests without a step 0: the reference first
                thumbs.append(_thumb(a))
            thumbs.append(_thumb(m))


def _thumb(m: torch.Tensor) -> torch.Tensor:
    h, w = m.shape[-2:]
    scale = min(1.0, _THUMB / max(h, w))
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize(m.float(), size).cpu()


def _steps(names: list[str], progress: bool, desc: str) -> Iterator[tuple[int, str]]:
    from featviz._ops import progress_bar

    yield from progress_bar(list(enumerate(names, start=1)), enabled=progress, desc=desc)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No near-zero-map warnings: a randomised model's maps are expected to be noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NearZeroMapWarning)
        yield


def _cascading(
    run: _Run, explain: _Explainers, names: list[str], random_state: int, progress: bool
) -> None:
    root = unwrap_model(explain.model)
    run.record("cascading", "original", 0, run.reference)
    for step, name in _steps(names, progress, "cascading randomisation"):
        _randomise(root.get_submodule(name), random_state)
        with _quiet():
            maps = explain(run.images, run.target)
        run.record("cascading", name, step, maps)


def _independent(
    run: _Run,
    explain: _Explainers,
    names: list[str],
    trained: nn.Module,
    random_state: int,
    progress: bool,
) -> None:
    root, source = unwrap_model(explain.model), unwrap_model(trained)
    run.record("independent", "original", 0, run.reference)
    for step, name in _steps(names, progress, "independent randomisation"):
        layer = root.get_submodule(name)
        _randomise(layer, random_state)
        with _quiet():
            maps = explain(run.images, run.target)
        run.record("independent", name, step, maps)
        # restore this layer alone, from the (untouched) trained model's own tensors
        layer.load_state_dict(source.get_submodule(name).state_dict())


def _random_classes(classes: torch.Tensor, num_classes: int, random_state: int) -> torch.Tensor:
    """(N,) another class than ``classes`` for each image, drawn as Quantus 0.6 draws it.

    ``np.random.seed(random_state)`` then ``randint(0, K - 1, N)`` indexes the classes
    other than the image's own, in order (one batch: Quantus with ``batch_size >= N``);
    a private ``RandomState`` gives the same numbers without touching numpy's global one.
    """
    draw = np.random.RandomState(random_state).randint(0, num_classes - 1, len(classes))
    off = torch.from_numpy(draw).to(classes.device)
    return off + (off >= classes).long()


def _random_logit(
    run: _Run, explain: _Explainers, classes: torch.Tensor, num_classes: int, random_state: int
) -> torch.Tensor:
    if num_classes < 2:
        raise ValueError("The random-logit test needs a model with two or more classes.")
    other = _random_classes(classes, num_classes, random_state)
    run.record("random_logit", "", 1, explain(run.images, other))
    return other


def _data(
    run: _Run,
    methods: list[tuple[str, str | Explainer]],
    train: Callable[[torch.Tensor], nn.Module],
    train_labels: Any,
    cam_layers: Any,
    eval_mode: bool,
    random_state: int,
) -> None:
    labels = torch.as_tensor(train_labels)
    generator = torch.Generator().manual_seed(random_state)
    permuted = labels[torch.randperm(len(labels), generator=generator).to(labels.device)]
    model = train(permuted)
    if not isinstance(model, nn.Module):
        raise TypeError(
            "The 'train' function of sanity_check must return a torch.nn.Module. "
            f"Got {type(model).__name__} instead."
        )
    device = run.images.device
    explain = _Explainers(model.to(device), methods, cam_layers, eval_mode)
    run.record("data", "", 1, explain(run.images, run.target))


def _resolve_target(
    model: nn.Module, images: torch.Tensor, target: Any, eval_mode: bool
) -> tuple[Any, torch.Tensor | None, int]:
    """(the target to pass on, (N,) classes or None, number of classes or 0).

    Resolved once on the trained model: ``target=None`` becomes its predicted classes,
    which every randomised model then explains (as in the paper).
    """
    from featviz._ops import kept_buffers
    from featviz._outputs import find_logits

    n = images.shape[0]
    with torch.no_grad(), _eval_mode(model, eval_mode), kept_buffers(model):
        outputs = model(images)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    scorer = resolve(target, outputs, n, size=size)
    logits = find_logits(outputs)
    num_classes = int(logits.shape[-1]) if logits is not None and logits.ndim == 2 else 0
    classes = scorer.single
    return (target if classes is None else classes), classes, num_classes


def _check_args(
    images: Any, tests: Any, measures: Any, train: Any, threshold: Any
) -> tuple[list[str], list[str]]:
    func = "sanity_check"
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            "The 'images' parameter of sanity_check must be a float tensor (N, C, H, W), as "
            f"the model takes it. Got {getattr(images, 'shape', type(images).__name__)} instead."
        )
    tests = [tests] if isinstance(tests, str) else list(tests)
    measures = [measures] if isinstance(measures, str) else list(measures)
    tests = [check_choice(t, "tests", func, TESTS) for t in tests]
    measures = [check_choice(m, "measures", func, tuple(MEASURES)) for m in measures]
    if not tests or not measures:
        raise ValueError(
            "The 'tests' and 'measures' parameters of sanity_check must name at least one "
            f"test and one measure. Got tests={tests!r}, measures={measures!r} instead."
        )
    if ("data" in tests) != (train is not None):
        raise ValueError(
            "The 'data' test of sanity_check needs the 'train' function (and 'train_labels'), "
            "and 'train' is used only by it: pass both, or neither. Got tests="
            f"{tests!r} and train={train!r} instead."
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(
            f"The 'threshold' parameter of sanity_check must be a float. Got {threshold!r} instead."
        )
    return tests, measures


def sanity_check(
    model: nn.Module,
    images: torch.Tensor,
    methods: str | Explainer | Sequence[str | Explainer] | Mapping[str, str | Explainer] = (
        "gradcam",
    ),
    layers: LayerSpec | Sequence[LayerSpec] | None = None,
    target: Target = None,
    *,
    cam_layers: LayerSpec | Sequence[LayerSpec] | None = None,
    tests: str | Sequence[str] = ("cascading", "independent", "random_logit"),
    measures: str | Sequence[str] = ("spearman_abs", "spearman", "ssim", "hog"),
    train: Callable[[torch.Tensor], nn.Module] | None = None,
    train_labels: Any = None,
    threshold: float = 0.5,
    random_state: int = 42,
    eval_mode: bool = True,
    progress: bool = True,
) -> SanityReport:
    r"""Sanity checks (Adebayo et al. 2018) of one or more saliency methods, in one call.

    For each method, the maps of the trained model are compared image by image with the
    maps of (see `TESTS`):

    - ``"cascading"``: the model with its ``layers`` re-initialised one after the
      other, from the output down (step ``s``: the first ``s`` layers random);
    - ``"independent"``: the model with only the ``s``-th layer re-initialised;
    - ``"random_logit"``: the same model explaining a random other class (drawn with
      ``random_state`` as Quantus 0.6 draws it; needs a class target);
    - ``"data"``: the model ``train(permuted)`` returns, trained on ``train_labels``
      permuted with ``random_state``; the built-in ``Shapes`` and ``TinyCNN`` make this
      a half-minute check (see ``docs/trust.md``).

    The model is left exactly as found: its parameters, buffers, flags, ``.grad``
    fields and torch's global random state (seeds are set inside a forked RNG). Memory
    is bounded by **one** copy of the model: the cascade re-randomises that copy layer
    by layer; the independent test re-randomises one layer of it and restores that
    layer from the trained model's own tensors (its ``state_dict`` slice) before the
    next. The cascade runs last, as it leaves the copy random.

    Each step costs **one** forward and backward pass for all the CAM methods together:
    they share the layer's activations and gradients and differ only in their weights
    (`featviz.cam.METHODS`, any method of the registry); a callable method runs on its
    own. `featviz.NearZeroMapWarning` is silenced for the randomised models, whose maps
    are expected to be noise (the trained model's maps still warn).

    Re-initialisation follows Quantus 0.6 (``MPRT``): ``layers=None`` takes every module
    with a ``reset_parameters`` method, in reverse module order; each such module is
    reset after ``torch.manual_seed(random_state + 1)`` (a layer holding several such
    modules resets each of them, output side first, the same way).

    Args:
        model: The trained model (not modified; a copy is randomised).
        images: float tensor (N, C, H, W) on the model's device, as the model takes it.
        methods: A `featviz.cam.METHODS` name, a callable
            ``(model, images, target) -> (N, H, W)`` maps (``target`` is the (N,)
            classes, or the caller's target where that is no class), or a sequence or
            ``{name: method}`` dict of them.
        layers: The layers to randomise, from the output down, as layer specs
            (`featviz.hooks.resolve_layers`; a container, such as ``"layer4"``, is
            randomised whole). None: every module with parameters to reset.
        target: What the maps explain, resolved once on the trained model (None: its
            predicted classes, kept for every randomised model); as in `featviz.CAM`.
        cam_layers: The layer(s) the CAM methods read (None: `featviz.CAM`'s pick).
        tests: One or more of `TESTS`.
        measures: One or more of ``"spearman_abs"``, ``"spearman"``, ``"ssim"``,
            ``"hog"`` (`featviz._similarity`: scikit-image's SSIM and HOG definitions).
        train: For the ``"data"`` test: ``train(labels) -> model``, training a fresh model
            of the same kind on the permuted labels (N_train,).
        train_labels: For the ``"data"`` test: the (N_train,) training labels to permute.
        threshold: A test passes when its mean similarity is below it (`SanityReport.verdicts`).
        random_state: Seed of the re-initialisation, the random classes and the label
            permutation (42: Quantus's default).
        eval_mode: Evaluate the models in eval mode (flags restored after).
        progress: Show a progress bar over the randomisation steps.

    Returns:
        `SanityReport`: the tidy scores, the maps of every step (thumbnails) and
        `SanityReport.verdicts`.

    Raises:
        TypeError: ``methods`` or ``threshold`` has a wrong type; a callable method
            returns no tensor.
        ValueError: an unknown test, measure or method; ``"data"`` without ``train`` (or
            ``train`` without ``"data"``); ``"random_logit"`` with a target that is no
            class; a layer with nothing to randomise.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            "The 'model' parameter of sanity_check must be a torch.nn.Module. "
            f"Got {type(model).__name__} instead."
        )
    tests, measures = _check_args(images, tests, measures, train, threshold)
    items = _method_names(methods)
    names = _layer_names(model, layers) if {"cascading", "independent"} & set(tests) else []
    images = images.detach()
    target, classes, num_classes = _resolve_target(model, images, target, eval_mode)
    if "random_logit" in tests and classes is None:
        raise ValueError(
            "The 'random_logit' test of sanity_check needs one class per image (target None, "
            f"an int or ints, ClassTarget). Got {type(target).__name__} instead."
        )
    other = None
    with torch.random.fork_rng(devices=_rng_devices(model)):
        work = copy.deepcopy(model)  # the one copy
        explain = _Explainers(work, items, cam_layers, eval_mode)
        run = _Run(images, target, explain(images, target), measures)
        if "random_logit" in tests:
            assert classes is not None
            other = _random_logit(run, explain, classes, num_classes, random_state)
        if "data" in tests:
            assert train is not None
            _data(run, items, train, train_labels, cam_layers, eval_mode, random_state)
        if "independent" in tests:
            _independent(run, explain, names, model, random_state, progress)
        if "cascading" in tests:
            _cascading(run, explain, names, random_state, progress)
        del work, explain
    import pandas as pd

    scores = pd.DataFrame(run.rows, columns=list(_COLUMNS))
    maps = {m: {t: torch.stack(v) for t, v in per.items()} for m, per in run.maps.items()}
    measure = "spearman_abs" if "spearman_abs" in measures else measures[0]
    return SanityReport(scores, names, maps, classes, other, float(threshold), measure)


# -- figures ---------------------------------------------------------------------------------
def plot_sanity_maps(
    report: SanityReport,
    method: str | None = None,
    *,
    test: str = "cascading",
    cmap: Any = "jet",
    fig: Figure | None = None,
) -> Figure:
    """The classic figure: one row per image, one column per progressively randomised layer.

    Args:
        report: What `sanity_check` returned.
        method: The method to show (None: the first).
        test: The test whose steps are the columns (``"cascading"`` by default).
        cmap: A matplotlib colour map name or object.
        fig: Figure to draw into (cleared first); a new one when None.

    Returns:
        The Figure (built without pyplot: nothing is shown, no global state is changed).
    """
    from matplotlib.figure import Figure

    method = method or next(iter(report.maps))
    method = check_choice(method, "method", "plot_sanity_maps", tuple(report.maps))
    test = check_choice(test, "test", "plot_sanity_maps", tuple(report.maps[method]))
    maps = report.maps[method][test]  # (S, N, h, w)
    steps, n = maps.shape[:2]
    heads = {
        "random_logit": ["class", "random class"],
        "data": ["trained", "permuted labels"],
    }.get(test, ["original", *report.layers][:steps])
    if fig is None:
        fig = Figure(figsize=(1.6 * steps, 1.6 * n + 0.5), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(n, steps, squeeze=False)
    for j in range(steps):
        for i in range(n):
            ax = axes[i, j]
            ax.imshow(maps[j, i].numpy(), cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(heads[j], fontsize=7, rotation=30 if steps > 6 else 0)
            if j == 0:
                ax.set_ylabel(f"image {i}", fontsize=8)
    fig.suptitle(f"{method}: {test.replace('_', ' ')}", fontsize=10)
    return fig


def plot_sanity_curves(
    report: SanityReport,
    *,
    test: str = "cascading",
    measure: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One curve per method: the mean similarity (over images, +- one std) at each step.

    Args:
        report: What `sanity_check` returned.
        test: ``"cascading"`` or ``"independent"``.
        measure: A measure of the report (None: ``report.measure``).
        ax: Axes to draw into; a new figure when None.

    Returns:
        The Axes, with the pass threshold as a dashed line.
    """
    from matplotlib.figure import Figure

    measure = measure or report.measure
    test = check_choice(test, "test", "plot_sanity_curves", ("cascading", "independent"))
    rows = report.scores[(report.scores.test == test) & (report.scores.measure == measure)]
    if rows.empty:
        raise ValueError(
            f"The report has no {test!r} scores of measure {measure!r}; run sanity_check "
            "with that test and measure."
        )
    if ax is None:
        ax = Figure(
            figsize=(1.0 + 0.5 * len(report.layers) + 2, 3.2), layout="constrained"
        ).subplots()
    for method, sel in rows.groupby("method", sort=False):
        stats = sel.groupby("step").value.agg(["mean", "std"]).fillna(0.0)
        ax.plot(stats.index, stats["mean"], marker="o", label=str(method))
        ax.fill_between(
            stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.15
        )
    labels = ["original", *report.layers]
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.axhline(report.threshold, color="grey", linestyle="--", linewidth=1)
    ax.set_ylabel(_NAMES.get(measure, measure))
    ax.set_title(f"{test} randomisation")
    ax.legend(fontsize=7)
    return ax
