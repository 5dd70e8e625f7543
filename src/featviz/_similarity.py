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

import torch
import torch.nn.functional as F

__all__: list[str] = []


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, D) float64 ranks 1..D of each row; ties share their average rank."""
    n, d = x.shape
    values, order = torch.sort(x, dim=1, stable=True)
    new = torch.ones_like(values, dtype=torch.bool)
    new[:, 1:] = values[:, 1:] != values[:, :-1]
    group = new.long().cumsum(1) - 1  # (N, D) the tie group of each sorted element
    flat = group + (torch.arange(n, device=x.device) * d)[:, None]  # groups numbered per row
    pos = torch.arange(1, d + 1, dtype=torch.float64, device=x.device).expand(n, d)
    sums = torch.zeros(n * d, dtype=torch.float64, device=x.device)
    sums.index_add_(0, flat.flatten(), pos.flatten())
    counts = torch.zeros(n * d, dtype=torch.float64, device=x.device)
    counts.index_add_(0, flat.flatten(), torch.ones(n * d, dtype=torch.float64, device=x.device))
    mean = (sums / counts.clamp_min(1))[flat]
    ranks = torch.empty_like(mean)
    ranks.scatter_(1, order, mean)
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


def ssim(a: torch.Tensor, b: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """(N, H, W) x (N, H, W) -> (N,) float64 SSIM, scikit-image's definition.

    ``data_range`` is the range of each pair of maps together (Quantus's choice); the
    mean is over the positions whose window lies inside the map (scikit-image crops the
    others), so no padding rule enters. H and W must be at least ``win_size``.
    """
    x = a.double()[:, None]
    y = b.double()[:, None]
    n = x.shape[0]
    both = torch.cat([x.flatten(1), y.flatten(1)], 1)
    data_range = both.amax(1) - both.amin(1)
    c1 = ((0.01 * data_range) ** 2).view(n, 1, 1, 1)
    c2 = ((0.03 * data_range) ** 2).view(n, 1, 1, 1)
    cov_norm = win_size**2 / (win_size**2 - 1)  # sample covariances

    def mean(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, win_size, stride=1)

    ux, uy = mean(x), mean(y)
    vx = cov_norm * (mean(x * x) - ux * ux)
    vy = cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def hog_features(
    maps: torch.Tensor, orientations: int = 9, cell: int = 8, block: int = 3
) -> torch.Tensor:
    """(N, H, W) -> (N, F) float64 histograms of oriented gradients, scikit-image's ``hog``.

    Central-difference gradients (zero on the border rows/columns), unsigned orientations
    in [0, 180) degrees binned into ``orientations`` bins of equal width, magnitudes
    averaged per ``cell`` x ``cell`` cell (cells that do not fit are dropped), and each
    ``block`` x ``block`` block of cells L2-Hys normalised (clipped at 0.2).
    """
    x = maps.double()
    n, h, w = x.shape
    g_row = torch.zeros_like(x)
    g_col = torch.zeros_like(x)
    g_row[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    g_col[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    magnitude = torch.hypot(g_row, g_col)
    angle = torch.rad2deg(torch.atan2(g_row, g_col)) % 180
    # bin i holds [i, i + 1) * 180 / orientations, compared as scikit-image compares
    edges = torch.arange(1, orientations, dtype=torch.float64, device=x.device)
    bins = (angle[..., None] >= edges * (180.0 / orientations)).sum(-1)
    rows, cols = h // cell, w // cell
    magnitude = magnitude[:, : rows * cell, : cols * cell]
    bins = bins[:, : rows * cell, : cols * cell]
    hist = F.one_hot(bins, orientations).double() * magnitude[..., None]
    hist = hist.view(n, rows, cell, cols, cell, orientations).sum((2, 4)) / cell**2
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


#: The measures by name: ``(a (N, H, W), b (N, H, W)) -> (N,)``.
MEASURES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "spearman_abs": spearman_abs,
    "spearman": spearman,
    "ssim": ssim,
    "hog": hog,
}
