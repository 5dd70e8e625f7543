r"""Similarity of two batches of maps, image by image: the measures of the sanity checks.

The measures of Adebayo et al. (2018), "Sanity checks for saliency maps":

- `spearman`: Spearman's rank correlation of the flattened maps (ties get their average
  rank, as `scipy.stats.spearmanr`); `spearman_abs` is the same on absolute values;
- `ssim`: the structural similarity index of scikit-image's
  ``structural_similarity(a, b, data_range=...)`` defaults (a 7 x 7 uniform window,
  sample covariances, $K_1 = 0.01$, $K_2 = 0.03$, the mean over the positions whose window
  lies inside the map), with ``data_range`` the range of the pair, as Quantus passes it;
- `hog`: Pearson's correlation of the histograms of oriented gradients of the two maps,
  scikit-image's ``hog(image)`` defaults (9 orientations, 8 x 8 pixel cells, 3 x 3 cell
  blocks, L2-Hys block normalisation).

Each takes two (N, H, W) tensors and returns (N,) float64 similarities; a constant map
has no rank or linear correlation (NaN, as scipy gives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__: list[str] = []


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, D) float64 ranks 1..D of each row; ties share their average rank."""
    n, d = x.shape
    values, order = torch.sort(x, dim=1)
    pos = torch.arange(d, device=x.device).expand(n, d)
    first = torch.ones_like(values, dtype=torch.bool)  # the first of its tie group
    first[:, 1:] = values[:, 1:] != values[:, :-1]
    last = torch.ones_like(first)  # the last of its tie group
    last[:, :-1] = first[:, 1:]
    start = torch.where(first, pos, 0).cummax(1).values
    end = torch.where(last, pos, d).flip(1).cummin(1).values.flip(1)
    ranks = torch.empty(n, d, dtype=torch.float64, device=x.device)
    ranks.scatter_(1, order, (start + end).double() / 2 + 1)
    return ranks


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, ...) x (N, ...) -> (N,) float64 Pearson correlation of the flattened rows."""
    x = a.flatten(1).double()
    y = b.flatten(1).double()
    x = x - x.mean(1, keepdim=True)
    y = y - y.mean(1, keepdim=True)
    return (x * y).sum(1) / ((x * x).sum(1) * (y * y).sum(1)).sqrt()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, ...) x (N, ...) -> (N,) Spearman rank correlation of the flattened rows."""
    return pearson(_average_ranks(a.flatten(1)), _average_ranks(b.flatten(1)))


def spearman_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, ...) x (N, ...) -> (N,) Spearman rank correlation of the absolute values."""
    return spearman(a.abs(), b.abs())


def _box(t: torch.Tensor, size: int) -> torch.Tensor:
    """(B, H, W) -> (B, H - size + 1, W - size + 1): means over every size x size window."""
    c = F.pad(t.cumsum(1), (0, 0, 1, 0))
    t = c[:, size:] - c[:, :-size]
    c = F.pad(t.cumsum(2), (1, 0))
    return (c[:, :, size:] - c[:, :, :-size]) / (size * size)


def ssim(a: torch.Tensor, b: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """(N, H, W) x (N, H, W) -> (N,) float64 SSIM, scikit-image's definition.

    ``data_range`` is the range of each pair of maps together (Quantus's choice); the
    mean is over the positions whose window lies inside the map (scikit-image crops the
    others), so no padding rule enters. H and W must be at least ``win_size``.
    """
    x, y = a.double(), b.double()
    n = x.shape[0]
    both = torch.cat([x.flatten(1), y.flatten(1)], 1)
    data_range = both.amax(1) - both.amin(1)
    c1 = ((0.01 * data_range) ** 2).view(n, 1, 1)
    c2 = ((0.03 * data_range) ** 2).view(n, 1, 1)
    cov_norm = win_size**2 / (win_size**2 - 1)  # sample covariances
    ux, uy, xx, yy, xy = _box(torch.cat([x, y, x * x, y * y, x * y]), win_size).split(n)
    vx = cov_norm * (xx - ux * ux)
    vy = cov_norm * (yy - uy * uy)
    vxy = cov_norm * (xy - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def hog_features(
    maps: torch.Tensor, orientations: int = 9, cell: int = 8, block: int = 3
) -> torch.Tensor:
    """(N, H, W) -> (N, F) float64 histograms of oriented gradients, scikit-image's ``hog``.

    Central-difference gradients (zero on the border rows/columns), unsigned orientations
    in [0, 180) degrees binned into ``orientations`` bins of equal width, magnitudes
    averaged per ``cell`` x ``cell`` cell (cells that do not fit are dropped), and each
    ``block`` x ``block`` block of cells L2-Hys normalised (clipped at 0.2). Maps too
    small for one block (under 24 x 24 pixels by default) have no features, (N, 0), and
    so a NaN HOG similarity.
    """
    x = maps.double()
    n, h, w = x.shape
    g_row = torch.zeros_like(x)
    g_col = torch.zeros_like(x)
    g_row[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    g_col[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    magnitude = torch.hypot(g_row, g_col)
    angle = torch.rad2deg(torch.atan2(g_row, g_col)) % 180
    rows, cols = h // cell, w // cell
    magnitude = magnitude[:, : rows * cell, : cols * cell]
    angle = angle[:, : rows * cell, : cols * cell]
    # bin i holds [i, i + 1) * 180 / orientations, compared as scikit-image compares
    width = 180.0 / orientations
    bins = torch.div(angle, width, rounding_mode="floor").long()
    bins -= (angle < bins * width).long()
    bins += (angle >= (bins + 1) * width).long()
    bins.clamp_(0, orientations - 1)
    r = torch.arange(rows * cell, device=x.device) // cell
    c = torch.arange(cols * cell, device=x.device) // cell
    cells = (r[:, None] * cols + c[None, :]) * orientations  # (H', W') first bin of the cell
    index = (cells + bins).flatten(1)
    hist = torch.zeros(n, rows * cols * orientations, dtype=torch.float64, device=x.device)
    hist.scatter_add_(1, index, magnitude.flatten(1))
    hist = hist.view(n, rows, cols, orientations) / cell**2
    if rows < block or cols < block:  # no block fits: no features (a NaN similarity)
        return hist.new_zeros(n, 0)
    blocks = hist.unfold(1, block, 1).unfold(2, block, 1)  # (N, br, bc, O, block, block)
    blocks = blocks.permute(0, 1, 2, 4, 5, 3).flatten(3)  # cell row, cell col, orientation
    eps = 1e-5
    out = blocks / (blocks.square().sum(-1, keepdim=True) + eps**2).sqrt()
    out = out.clamp(max=0.2)
    out = out / (out.square().sum(-1, keepdim=True) + eps**2).sqrt()
    return out.flatten(1)


def hog(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, H, W) x (N, H, W) -> (N,) Pearson correlation of the maps' HOG features."""
    return pearson(hog_features(a), hog_features(b))


def _flat(maps: torch.Tensor) -> torch.Tensor:
    return maps.double()


def _ranks(maps: torch.Tensor) -> torch.Tensor:
    return _average_ranks(maps.flatten(1))


def _abs_ranks(maps: torch.Tensor) -> torch.Tensor:
    return _average_ranks(maps.abs().flatten(1))


@dataclass(frozen=True)
class Measure:
    """A similarity in two stages, so that what one map needs is computed once.

    ``score(prepare(a), prepare(b))`` is the similarity (N,) of maps ``a`` and ``b``
    (N, H, W); the sanity checks prepare the trained model's maps once for every step.
    """

    prepare: Callable[[torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.score(self.prepare(a), self.prepare(b))

    def key(self, maps: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The preparation ``maps`` need: Spearman(abs) of non-negative maps is Spearman."""
        if self.prepare is _abs_ranks and bool((maps >= 0).all()):
            return _ranks
        return self.prepare


#: The measures by name: ``(a (N, H, W), b (N, H, W)) -> (N,)``.
MEASURES: dict[str, Measure] = {
    "spearman_abs": Measure(_abs_ranks, pearson),
    "spearman": Measure(_ranks, pearson),
    "ssim": Measure(_flat, ssim),
    "hog": Measure(hog_features, pearson),
}
