"""examples/quickstart.ipynb executes top to bottom without errors and shows each figure once."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).parent.parent / "examples" / "quickstart.ipynb"
FIGURE_CALLS = ("plot_", "compare_")


def _pngs(cell) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def _run(nb, tmp_path: Path):
    nbclient = pytest.importorskip("nbclient")
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on any failing cell
    return nb


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nb = _run(nbformat.read(NOTEBOOK, as_version=4), tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    images = sum(_pngs(c) for c in code)
    assert images >= 7, f"expected inline figures, got {images}"
    # issue 23.1: every figure cell shows its figure exactly once, not once from the
    # inline backend and once more as the cell's result
    figure_cells = [c for c in code if any(f in c.source for f in FIGURE_CALLS)]
    assert len(figure_cells) == 7
    assert [_pngs(c) for c in figure_cells] == [1] * len(figure_cells), [
        (c.source.splitlines()[-1], _pngs(c)) for c in figure_cells
    ]
    assert not list(tmp_path.iterdir()), "the notebook must not write files"


SHOWN_ONCE = {
    # whatever the cell ends with, each figure is shown once
    "returns the Axes": "featviz.plot_correlation(corr)",
    "returns the Figure": "featviz.plot_correlation(corr).figure",
    "assigned": "fig = featviz.plot_feature_grid(maps)",
    "suppressed": "featviz.plot_feature_grid(maps);",
    "displayed": "from IPython.display import display\ndisplay(featviz.plot_feature_grid(maps))",
    "two figures": "featviz.plot_correlation(corr)\nfeatviz.plot_feature_grid(maps)",
    "compare": "featviz.compare_projections({'a': x, 'b': x}, y, method='pca')",
    "plt.show": "import matplotlib.pyplot as plt\nfig = featviz.plot_feature_grid(maps)\n"
    "plt.show()",
}
EXPECTED = {"two figures": 2}


@pytest.mark.slow
def test_each_figure_shown_once_whatever_the_cell_returns(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    setup = (
        "%matplotlib inline\nimport torch\nimport featviz\n"
        "g = torch.Generator().manual_seed(0)\n"
        "corr = featviz.correlation(torch.rand(20, 3, generator=g))\n"
        "maps = torch.rand(4, 5, 5, generator=g)\n"
        "x = torch.rand(12, 4, generator=g)\ny = torch.arange(12) % 3"
    )
    cells = [nbformat.v4.new_code_cell(setup)]
    cells += [nbformat.v4.new_code_cell(src) for src in SHOWN_ONCE.values()]
    nb = _run(nbformat.v4.new_notebook(cells=cells), tmp_path)
    got = {name: _pngs(c) for name, c in zip(SHOWN_ONCE, nb.cells[1:], strict=True)}
    assert got == {name: EXPECTED.get(name, 1) for name in SHOWN_ONCE}
    assert _pngs(nb.cells[0]) == 0


def test_new_figures_stay_with_pyplot_for_scripts():
    """A script's plt.show() and fig.savefig keep working: the figure is pyplot's."""
    import matplotlib.pyplot as plt
    import torch

    import featviz

    fig = featviz.plot_feature_grid(torch.rand(2, 4, 4))
    assert fig.number in plt.get_fignums()
    ax = featviz.plot_correlation(featviz.correlation(torch.rand(10, 3)))
    assert ax.figure.number in plt.get_fignums()
