"""Watch a model learn: record a fixed probe batch during training, play it back after.

A `Recorder` sits in a training loop. ``rec.step(step)`` is a no-op except every
``every`` steps (step 0 included), when it records for the probe batch: one heatmap per
CAM method, the channel-summed feature maps of the layer, the model outputs and the
features for a projection. Recording never changes training: the model is evaluated in
eval mode with every buffer, train flag, ``requires_grad`` flag, ``.grad`` field and
RNG state (torch, numpy, python) restored. Records live in RAM, or in a store folder
(one ``.npy`` per field and record, written atomically, then listed in
``recorder.json``): a crashed run keeps what it recorded, a resumed run appends, and
`Recorder.open` reads a store back without the model.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from featviz._fingerprints import fingerprint
from featviz._images import label_array, model_batch
from featviz._io import atomic_path
from featviz._ops import eval_mode, kept_buffers
from featviz._store import dist_info
from featviz._store_base import Store, StoreSpec, backend
from featviz._store_zarr import is_zarr, split_location
from featviz._validation import check_choice, check_int, renamed
from featviz.projection import ALIGN, align_procrustes, project_steps
from featviz.projection import METHODS as PROJECTIONS
from featviz.projection._core import _project_settings

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from featviz.hooks import LayerSpec

__all__ = ["Recorder", "align_procrustes"]

FORMAT = "featviz.recorder"
FORMAT_VERSION = 1
_MANIFEST = "recorder.json"
_PROBE = ("probe-images.npy", "probe-labels.npy")
# a record's file "<step, zero-padded to at least 9 digits>-<field>.npy"
_RECORD = re.compile(r"(\d{9,})-([a-z0-9_+]+)\.npy")
_CLOSED = (
    "This Recorder is closed: its store's lock was released, and another Recorder may be "
    "writing the store now. Create a new Recorder on the store to record more."
)


@contextlib.contextmanager
def _kept_rng() -> Iterator[None]:
    """Restore the torch (CPU and initialised CUDA), numpy and python RNG states after."""
    state = (torch.get_rng_state(), np.random.get_state(), random.getstate())  # noqa: NPY002
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_rng_state(state[0])
        np.random.set_state(state[1])  # noqa: NPY002
        random.setstate(state[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------
# where records live
# ---------------------------------------------------------------------------------------
def _owned(name: str) -> bool:
    """Whether a Recorder's store writes a file of this name."""
    return name in _PROBE or bool(_RECORD.fullmatch(name))


#: config keys newer than the first Recorder stores: not compared when a store lacks them
_ADDED_CONFIG = ("project_kwargs", "random_state")


def _backend(location: str | os.PathLike[str] | None) -> Store:
    """The store records go to, chosen as `extract` chooses.

    ``"memory"`` for None, ``"zarr"`` for a location ending in ``.zarr`` (a path or an
    fsspec URL), else ``"disk"`` (a folder).
    """
    scheme, root = (None, None) if location is None else split_location(location)
    name = "memory" if location is None else "zarr" if is_zarr(location) else "disk"
    if scheme is not None and name != "zarr":
        raise ValueError(
            f"The 'store' parameter of Recorder is the URL {str(location)!r}; a store at a URL "
            "must be a Zarr store (a name ending in '.zarr')."
        )
    spec = StoreSpec(
        FORMAT,
        FORMAT_VERSION,
        "Recorder",
        root=root,
        manifest=_MANIFEST,
        owned=_owned,
        optional=_ADDED_CONFIG,  # stores written before these keys still resume
        scheme=scheme,
    )
    return backend(name)(spec)


class _Records:
    """A Recorder's records in a `Store`: each record's arrays first, then the manifest.

    Attributes:
        steps: The recorded steps.
        fields: ``{field: [array per record]}`` (memory-mapped from a store on disk).
        closed: No more records may be added (the store's lock was released).
    """

    def __init__(self, store: Store, config: dict[str, Any] | None = None) -> None:
        self.store = store
        self.config = config
        self.steps: list[int] = []
        self.fields: dict[str, list[np.ndarray]] = {}
        self.entries: list[dict[str, Any]] = []
        self.closed = config is None

    @classmethod
    def create(cls, store: Store, config: dict[str, Any], probe: dict[str, np.ndarray]) -> _Records:
        """Open ``store`` for writing, resuming what it holds."""
        records = cls(store, config)
        manifest = store.open(config)
        try:
            if manifest is None:  # the manifest first: it claims the probe files
                store.save_manifest({"config": config, "records": []})
            else:
                records.load(manifest)
            for name, arr in probe.items():
                if not store.has(name):  # also after a crash right after the manifest
                    store.write(name, arr)
        except BaseException:
            store.close()
            raise
        return records

    def load(self, manifest: dict[str, Any]) -> None:
        """Read back every record ``manifest`` lists (each file must be a record name)."""
        where = f"The {FORMAT} manifest of {getattr(self.store, 'root', 'the store')}"
        entries = manifest.get("records")
        if not isinstance(entries, list):
            raise ValueError(f"{where} lists no records; it is damaged.")
        for entry in entries:
            step = entry.get("step") if isinstance(entry, dict) else None
            files = entry.get("files") if isinstance(entry, dict) else None
            if isinstance(step, bool) or not isinstance(step, int) or not isinstance(files, dict):
                raise ValueError(f"{where} has a damaged record entry {entry!r}.")
            for name, rel in files.items():
                if not isinstance(rel, str) or not _RECORD.fullmatch(rel):
                    raise ValueError(f"{where} lists a file {rel!r} it cannot own.")
                self.fields.setdefault(name, []).append(self.store.read(rel))
            self.steps.append(step)
        self.entries = list(entries)

    def add(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        """Write one record: its arrays, then the manifest that lists them."""
        if self.closed or self.config is None:
            raise RuntimeError(_CLOSED)
        self._check_shapes(step, arrays)
        files = {name: f"{step:09d}-{name}.npy" for name in arrays}
        for name, arr in arrays.items():
            self.store.write(files[name], arr)
        self.entries.append({"step": step, "files": files})
        self.store.save_manifest({"config": self.config, "records": self.entries})
        for name, rel in files.items():
            self.fields.setdefault(name, []).append(self.store.read(rel))
        self.steps.append(step)

    def _check_shapes(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        for name, arr in arrays.items():
            before = self.fields.get(name)
            if before and before[0].shape != arr.shape:
                raise ValueError(
                    f"Recorder.step({step}): the record {name!r} has shape {arr.shape}, but "
                    f"earlier records have shape {before[0].shape} (did a layer's width or the "
                    "number of classes change?). Nothing was recorded; record the changed model "
                    "with a new Recorder (and another store)."
                )

    def close(self) -> None:
        """Release the store (idempotent); records stay readable."""
        self.closed = True
        self.store.close()


# ---------------------------------------------------------------------------------------
# the recorder
# ---------------------------------------------------------------------------------------
class Recorder:
    """Record heatmaps, feature maps, outputs and features of a probe batch during training.

    Args:
        model: The model being trained (any device; the probe batch follows it).
        probe_images: (N, C, H, W) float tensor, the fixed probe batch, as the model takes it.
        labels: (N,) int class of each probe image: CAMs explain it, and `plot_metrics`
            shows accuracy. None: CAMs explain each image's arg-max class.
        layers: One layer spec (name, glob, type or module) of a spatial layer; None picks
            it as `featviz.CAM` does (with a warning naming it) at the first record.
        every: Record when ``step % every == 0`` (step 0 included).
        store: Folder of an on-disk store (created; a store of the same Recorder is
            resumed and appended to); None keeps records in RAM.
        methods: CAM methods (see `featviz.cam.METHODS`) recorded at each step.
        projection: How features are projected in `plot_projection_timeline`: a method of
            `featviz.projection.METHODS` (``"pca"``, ``"tsne"``, ``"umap"``).
        random_state: Seed of every random choice the views make.
        feature_layer: Layer whose output (flattened) is the projection's features;
            None: the spatially averaged activations of ``layers``.
        writer: A ``torch.utils.tensorboard.SummaryWriter``: each record also adds the
            timeline overlays and the accuracy/confidence scalars there.
        project_kwargs: Further settings of `featviz.project` for that projection
            (``perplexity``, ``pca_dims``, ``engine``, ...), checked here; the views set
            ``method``, ``n_components=2`` and ``random_state`` themselves.

    Attributes:
        steps_: (R,) int64 recorded steps.
        heatmaps_: ``{method: (R, N, h, w) float32}`` CAMs at the layer's resolution.
        feature_maps_: (R, N, h, w) float32 channel-summed activations of the layer.
        outputs_: (R, N, K) float32 model outputs (logits).
        features_: (R, N, D) float32 features for the projection.
        layers_: Key of the recorded layer (None before the first record).
    """

    project_kwargs: Mapping[str, Any] = MappingProxyType({})  # also of a store read back

    def __init__(
        self,
        model: nn.Module,
        probe_images: torch.Tensor,
        labels: Sequence[int] | torch.Tensor | None = None,
        layers: LayerSpec | None = None,
        every: int = 200,
        store: str | Path | None = None,
        methods: Sequence[str] = ("gradcam",),
        projection: str = "pca",
        random_state: int = 0,
        *,
        feature_layer: LayerSpec | None = None,
        writer: Any = None,
        project_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if model is not None and not isinstance(model, nn.Module):
            raise TypeError(
                f"The 'model' parameter of Recorder must be a torch.nn.Module. Got "
                f"{type(model).__name__} instead."
            )
        probe_images = model_batch(probe_images, func="Recorder", param="probe_images")
        _check_writer(writer)
        if store is not None and not isinstance(store, (str, os.PathLike)):
            raise TypeError(
                "The 'store' parameter of Recorder must be a folder path (str or Path) or "
                f"None. Got {type(store).__name__} instead."
            )
        self.model: nn.Module | None = model
        self.probe_images = probe_images.detach().cpu()
        self.labels = _labels(labels, self.probe_images.shape[0])
        self.layers = layers
        self.every = check_int(every, "every", "Recorder", 1)
        self.methods = _methods(methods)
        self.projection = check_choice(
            projection, "projection", "Recorder", tuple(PROJECTIONS), ignore_case=True
        )
        self.random_state = check_int(random_state, "random_state", "Recorder", 0)
        self.project_kwargs = _project_kwargs(self.projection, project_kwargs)
        self.feature_layer = feature_layer
        self.writer = writer
        # a folder, or a Zarr store (a path or URL ending in .zarr), as for extract
        self.store = None if store is None else store if is_zarr(store) else Path(store)
        self.layers_: str | None = None
        self._records: _Records | None = None
        if self.store is None or dist_info()[0] == 0:
            self._records = self._open_records()

    @classmethod
    def open(cls, store: str | Path) -> Recorder:
        """Read a store back, without the model.

        Args:
            store: The store folder of a Recorder.

        Returns:
            A Recorder whose ``model`` is None: its views and attributes work, `step` raises.

        Raises:
            FileNotFoundError: ``store`` holds no Recorder manifest.
            ValueError: The manifest is damaged, of another format, or has a missing or
                newer format version (the message names the file and the version found).
        """
        root = store if is_zarr(store) else Path(store)
        store_ = _backend(root)
        manifest = store_.load_manifest() if is_zarr(root) or Path(root).is_dir() else None
        if manifest is None:
            raise FileNotFoundError(
                f"The 'store' parameter of Recorder.open names {str(root)!r}, which holds no "
                f"featviz Recorder store ({_MANIFEST}). Pass the folder given as 'store'."
            )
        cfg = manifest.get("config")
        keys = ("layers", "every", "methods", "projection", "feature_layer")
        if not isinstance(cfg, dict) or any(k not in cfg for k in keys):
            raise ValueError(f"The {_MANIFEST} of {str(root)!r} has a damaged config: {cfg!r}.")
        rec = cls.__new__(cls)
        images = np.array(store_.read(_PROBE[0]))
        labels = np.array(store_.read(_PROBE[1]))
        rec.model = None
        rec.probe_images = torch.from_numpy(images)
        rec.labels = None if labels.size == 0 else torch.from_numpy(labels)
        rec.layers, rec.layers_ = cfg["layers"], cfg["layers"]
        rec.every, rec.methods = int(cfg["every"]), tuple(cfg["methods"])
        rec.projection, rec.random_state = cfg["projection"], int(cfg.get("random_state", 0))
        rec.project_kwargs = MappingProxyType(dict(cfg.get("project_kwargs", {})))
        rec.feature_layer, rec.writer, rec.store = cfg["feature_layer"], None, root
        rec._records = _Records(store_)
        rec._records.load(manifest)
        return rec

    def _config(self) -> dict[str, Any]:
        return {
            "layers": self.layers if isinstance(self.layers, str) else None,
            "feature_layer": self.feature_layer if isinstance(self.feature_layer, str) else None,
            "every": self.every,
            "methods": list(self.methods),
            "projection": self.projection,
            # as the manifest will hold them (tuples read back as lists)
            "project_kwargs": json.loads(json.dumps(dict(self.project_kwargs), default=str)),
            "random_state": self.random_state,
            "probe": fingerprint(self.probe_images),
            "labels": None if self.labels is None else fingerprint(self.labels),
        }

    def _open_records(self) -> _Records:
        empty = np.zeros(0, np.int64)
        probe = {
            _PROBE[0]: self.probe_images.float().numpy(),
            _PROBE[1]: empty if self.labels is None else self.labels.numpy(),
        }
        return _Records.create(_backend(self.store), self._config(), probe)

    def close(self) -> None:
        """Release the store's lock (idempotent); records stay readable."""
        if self._records is not None:
            self._records.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- recording -------------------------------------------------------------------
    def step(self, step: int) -> bool:
        """Record if ``step % every == 0`` on rank 0 and the step is not recorded yet.

        Args:
            step: The training step (int >= 0).

        Returns:
            Whether a record was made.

        Raises:
            ValueError: ``step`` is not an int >= 0; a recorded field changed shape (a
                layer's width or the number of classes changed).
            RuntimeError: The Recorder was closed, or opened from a store (no model).
        """
        step = check_int(step, "step", "Recorder.step", 0)
        if step % self.every or self._records is None or dist_info()[0] != 0:
            return False
        if self.model is None:
            raise RuntimeError("This Recorder was opened from a store and has no model.")
        if self._records.closed:
            raise RuntimeError(_CLOSED)
        if step in self._records.steps:
            return False
        with _kept_rng():
            arrays = self._measure()
        self._records.add(step, arrays)
        if self.writer is not None:
            self._to_tensorboard(step)
        return True

    def _measure(self) -> dict[str, np.ndarray]:
        """One record: heatmaps per method, feature maps, outputs, features (numpy)."""
        from featviz.cam import CAM
        from featviz.hooks import capture

        model = self.model
        assert model is not None
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        x = self.probe_images.to(device)
        target = None if self.labels is None else self.labels.to(device)
        out: dict[str, np.ndarray] = {}
        for method in self.methods:
            spec = self.layers_ if self.layers_ is not None else self.layers
            cam = CAM(model, spec, method, size=None, progress=False)
            out[f"heatmaps_{method}"] = cam(x, target=target).cpu().numpy()
            self.layers_ = cam.layers_[0] if cam.layers_ else self.layers_
        keys: list[Any] = [self.layers_ if self.layers_ is not None else self.layers]
        if self.feature_layer is not None:
            keys.append(self.feature_layer)
        with eval_mode(model), kept_buffers(model), torch.no_grad():
            with capture(model, keys) as cap:
                logits = model(x)
            acts = list(cap.activations.values())
        act = acts[0].float()
        feats = acts[-1].float().flatten(1) if self.feature_layer is not None else act.mean((2, 3))
        out["feature_maps"] = act.sum(1).cpu().numpy()
        out["outputs"] = torch.as_tensor(logits).float().cpu().numpy()
        out["features"] = feats.cpu().numpy()
        return out

    def _to_tensorboard(self, step: int) -> None:
        for method in self.methods:
            frames = self._overlays(range(min(8, self.probe_images.shape[0])), method, -1)
            self.writer.add_images(f"featviz/{method}", frames, step, dataformats="NHWC")
        for name, value in self._metrics(-1).items():
            self.writer.add_scalar(f"featviz/{name}", value, step)

    # -- results ---------------------------------------------------------------------
    def _field(self, name: str) -> np.ndarray:
        parts = self._records.fields.get(name) if self._records is not None else None
        if not parts:
            raise ValueError("The Recorder has no records: record at least one step first.")
        return np.stack(parts)

    @property
    def steps_(self) -> np.ndarray:
        """(R,) int64 recorded steps."""
        return np.asarray(self._records.steps if self._records else [], dtype=np.int64)

    @property
    def heatmaps_(self) -> dict[str, np.ndarray]:
        """``{method: (R, N, h, w)}`` CAMs."""
        return {m: self._field(f"heatmaps_{m}") for m in self.methods}

    @property
    def feature_maps_(self) -> np.ndarray:
        """(R, N, h, w) channel-summed activations."""
        return self._field("feature_maps")

    @property
    def outputs_(self) -> np.ndarray:
        """(R, N, K) outputs."""
        return self._field("outputs")

    @property
    def features_(self) -> np.ndarray:
        """(R, N, D) features for the projection."""
        return self._field("features")

    def _metrics(self, r: int | None = None) -> dict[str, Any]:
        """Mean confidence (and accuracy with labels) per record, or of record ``r``."""
        logits = torch.from_numpy(np.array(self._field("outputs")))
        probs = logits.softmax(-1)
        out: dict[str, Any] = {"confidence": probs.amax(-1).mean(-1).numpy()}
        if self.labels is not None:
            out["accuracy"] = (probs.argmax(-1) == self.labels).float().mean(-1).numpy()
        return out if r is None else {k: float(v[r]) for k, v in out.items()}

    # -- views -----------------------------------------------------------------------
    def _overlays(
        self, images: Sequence[int] | range, method: str, r: int, mean: Any = None, std: Any = None
    ) -> np.ndarray:
        """(len(images), H, W, 3) uint8 overlays of record ``r``."""
        from featviz.featuremaps import overlay

        idx = list(images)
        maps = torch.from_numpy(np.array(self._field(f"heatmaps_{method}")[r][idx]))
        return overlay(self.probe_images[idx], maps, mean=mean, std=std).numpy()

    def _check_view(self, index: Sequence[int], method: str | None, func: str) -> str:
        if not len(self.steps_):
            raise ValueError(
                f"{func} has nothing to show: the Recorder has no records; record at least "
                "one step first."
            )
        method = self.methods[0] if method is None else method
        check_choice(method, "method", func, self.methods)
        n = self.probe_images.shape[0]
        for i in index:
            check_int(i, "index", func, 0, n - 1)
        return method

    @renamed(images="index")
    def plot_timeline(
        self,
        index: Sequence[int] = (0,),
        method: str | None = None,
        fig: Figure | None = None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> Figure:
        """Rows: probe images; columns: recorded steps; each cell the heatmap over the image.

        Args:
            index: Which probe images to show, by position in the probe batch.
            method: A recorded method (None: the first).
            fig: Figure to draw into (cleared first); None makes one.
            mean: Per-channel mean the probe images were standardised with.
            std: Per-channel standard deviation they were standardised with.

        Returns:
            The figure.
        """
        from featviz._figures import new_figure

        method = self._check_view(index, method, "Recorder.plot_timeline")
        steps = self.steps_
        rows, cols = len(index), len(steps)
        if fig is None:
            fig = new_figure((1.8 * cols + 0.6, 1.8 * rows + 0.5), layout="constrained")
        fig.clear()
        axes = fig.subplots(rows, cols, squeeze=False)
        for c in range(cols):
            tiles = self._overlays(index, method, c, mean, std)
            for r in range(rows):
                axes[r, c].imshow(tiles[r])
                axes[r, c].set_xticks([])
                axes[r, c].set_yticks([])
            axes[0, c].set_title(f"step {steps[c]}", fontsize=8)
        for r, i in enumerate(index):
            axes[r, 0].set_ylabel(f"image {i}", fontsize=8)
        fig.suptitle(f"{method} over training", fontsize=10)
        return fig

    def plot_metrics(self, ax: Axes | None = None) -> Axes:
        """Mean confidence (and accuracy, with labels) of the probe batch per recorded step.

        Args:
            ax: Axes to draw into; None makes a figure.

        Returns:
            The axes.
        """
        from featviz._figures import new_axes

        ax = new_axes(ax, (5, 3), layout="constrained")
        for name, values in self._metrics().items():
            ax.plot(self.steps_, values, marker="o", label=name)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1.02)
        ax.legend()
        return ax

    def projections(self, align: str = "procrustes") -> np.ndarray:
        """2-D coordinates of the features of every record, aligned across steps.

        Each record is projected with ``projection`` and ``project_kwargs`` by
        `featviz.projection.project_steps`.

        Args:
            align: ``"procrustes"``: each record projected on its own, rotated/reflected
                onto the previous record's (no spinning or flipping), for every method;
                ``"fixed"``: every record in the PCA basis fitted on the last record
                (``projection="pca"`` only: a method that cannot map new rows raises a
                ValueError).

        Returns:
            (R, N, 2) float64.
        """
        align = check_choice(align, "align", "Recorder.projections", ALIGN)
        return project_steps(
            self.features_,
            method=self.projection,
            align=align,
            random_state=self.random_state,
            **self.project_kwargs,
        )

    def plot_projection_timeline(
        self,
        fig: Figure | None = None,
        align: str = "procrustes",
        *,
        class_names: Sequence[str] | None = None,
    ) -> Figure:
        """One scatter per recorded step of the aligned projections, coloured by label.

        The points are `projections` (``projection`` method, ``project_kwargs``); a class
        has the colour of its index, as in `featviz.plot_projection` and `explore`, and
        the legend names the classes.

        Args:
            fig: Figure to draw into (cleared first); None makes one.
            align: See `projections`.
            class_names: Names of the label indices, for the legend.

        Returns:
            The figure.
        """
        from featviz._figures import new_figure
        from featviz._palette import class_palette, named

        pts = self.projections(align)
        cols = pts.shape[0]
        if fig is None:
            fig = new_figure((2.6 * cols + 1.4, 3.2), layout="constrained")
        fig.clear()
        axes = fig.subplots(1, cols, squeeze=False)[0]
        labels = None if self.labels is None else named(self.labels.tolist(), class_names)
        palette = {} if labels is None else class_palette(labels, class_names)
        lim = float(np.abs(pts).max()) * 1.05 or 1.0
        colours = None if labels is None else [palette[v] for v in labels]
        for c, ax in enumerate(axes):
            ax.scatter(pts[c, :, 0], pts[c, :, 1], s=12, c=colours)  # one scatter per step
            ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xticks=[], yticks=[])
            ax.set_title(f"step {self.steps_[c]}", fontsize=9)
            ax.set_xlabel("component 1", fontsize=8)
        axes[0].set_ylabel("component 2", fontsize=8)
        if palette:
            from matplotlib.lines import Line2D

            handles = [
                Line2D([], [], marker="o", linestyle="", color=colour, label=str(name))
                for name, colour in palette.items()
            ]
            fig.legend(handles=handles, loc="outside right upper", title="label")
        layer = self.layers_ or self.layers
        fig.suptitle(
            f"{self.projection} of {layer} features over training ({align} aligned)",
            fontsize=10,
        )
        return fig

    @renamed(images="index")
    def animate(
        self,
        path: str | Path,
        overwrite: bool = False,
        *,
        index: Sequence[int] = (0,),
        method: str | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> Path:
        """Write a GIF (one frame per record: the overlays of ``images`` side by side).

        Each frame is a caption strip (step, method) above the overlays, which are
        enlarged (nearest neighbour, by a whole factor) to at least 128 pixels tall, so
        that 32 px probe images are readable on a laptop screen.

        Args:
            path: Destination ``.gif`` file (written atomically).
            overwrite: Replace an existing file.
            index: Which probe images to show, by position in the probe batch.
            method: A recorded method (None: the first).
            mean: Per-channel mean the probe images were standardised with.
            std: Per-channel standard deviation they were standardised with.

        Returns:
            ``path`` as a `Path`.
        """
        method = self._check_view(index, method, "Recorder.animate")
        if Path(path).suffix.lower() != ".gif":
            raise ValueError(
                f"The 'path' parameter of Recorder.animate must end in .gif. Got {str(path)!r} "
                "instead."
            )
        frames = []
        for r, step in enumerate(self.steps_):
            tiles = self._overlays(index, method, r, mean, std)
            caption = f"step {step}  ({r + 1}/{len(self.steps_)})  {method}"
            frames.append(_gif_frame(np.concatenate(list(tiles), axis=1), caption))
        with atomic_path(path, overwrite=overwrite) as tmp:
            frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=500, loop=0)
        return Path(path)

    def __repr__(self) -> str:
        return (
            f"Recorder(layers={self.layers_ or self.layers!r}, every={self.every}, "
            f"methods={list(self.methods)}, records={len(self.steps_)}, store={self.store})"
        )


def _check_writer(writer: Any) -> None:
    if writer is not None and not all(
        callable(getattr(writer, m, None)) for m in ("add_images", "add_scalar")
    ):
        raise TypeError(
            "The 'writer' parameter of Recorder must be a "
            "torch.utils.tensorboard.SummaryWriter (with add_images and add_scalar) or None. "
            f"Got {type(writer).__name__} instead."
        )


def _labels(labels: Any, n: int) -> torch.Tensor | None:
    """Probe labels through the one label rule: ``n`` class indices, or None."""
    if labels is None:
        return None
    arr = label_array(labels, n, func="Recorder")
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"The 'labels' parameter of Recorder must hold {n} class indices (ints), one per "
            f"probe image. Got {arr.dtype} labels such as {arr[:3].tolist()} instead."
        )
    return torch.from_numpy(arr.astype(np.int64))


def _methods(methods: Any) -> tuple[str, ...]:
    from featviz.cam import METHODS

    names = (methods,) if isinstance(methods, str) else tuple(methods)
    if not names:
        raise ValueError("The 'methods' parameter of Recorder must name at least one method.")
    for m in names:
        check_choice(m, "methods", "Recorder", tuple(METHODS))
    return names


def _project_kwargs(method: str, project_kwargs: Any) -> dict[str, Any]:
    """``project_kwargs`` checked as `featviz.project` settings for ``method``."""
    if project_kwargs is None:
        return {}
    if not isinstance(project_kwargs, Mapping):
        raise TypeError(
            "The 'project_kwargs' parameter of Recorder must be a mapping of featviz.project "
            f"settings or None. Got {type(project_kwargs).__name__} instead."
        )
    fixed = {"method": method, "n_components": 2, "random_state": 0, "score": False}
    _project_settings("Recorder", project_kwargs, fixed)
    return dict(project_kwargs)


# `Recorder.animate` frames: tiles at least this tall, under a caption strip this tall
_TILE_PX = 128
_CAPTION_PX = 24


def _gif_frame(strip: np.ndarray, caption: str) -> Any:
    """(h, w, 3) uint8 tiles enlarged to at least ``_TILE_PX`` tall, under a caption."""
    from PIL import Image, ImageDraw, ImageFont

    factor = max(1, -(-_TILE_PX // strip.shape[0]))  # ceil: at least _TILE_PX tall
    big = strip.repeat(factor, axis=0).repeat(factor, axis=1)
    try:
        font: Any = ImageFont.load_default(size=15)
    except (TypeError, OSError):  # PIL without FreeType: the small bitmap font
        font = ImageFont.load_default()
    text_w = round(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(caption, font=font))
    size = (max(big.shape[1], text_w + 8), big.shape[0] + _CAPTION_PX)
    frame = Image.new("RGB", size, (255, 255, 255))
    frame.paste(Image.fromarray(big), (0, _CAPTION_PX))
    ImageDraw.Draw(frame).text((4, 4), caption, fill=(0, 0, 0), font=font)
    return frame
