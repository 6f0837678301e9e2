"""The Colab tutorials: stripped of outputs in the repository, and every cell runs headless at the tiny size."""

import pathlib

import nbclient
import nbformat
import pytest

COLAB = pathlib.Path(__file__).resolve().parent.parent / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
EXPECTED = [
    "01_quickstart.ipynb",
    "02_neural_graphs.ipynb",
    "03_meta_training.ipynb",
    "04_amortized_scalegmn.ipynb",
    "05_learned_backward.ipynb",
]


def test_every_tutorial_is_there():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_opens_with_badge_install_and_size_switch(path):
    nb = nbformat.read(path, as_version=4)
    assert "colab-badge.svg" in nb.cells[0].source and f"colab/{path.name}" in nb.cells[0].source
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "pip" in code[0].source and "SIZE" in code[1].source
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: outputs not stripped"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, monkeypatch, tmp_path):
    monkeypatch.setenv("L2O_JAX_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    # At the tiny size every program runs for a few steps: XLA's optimisation passes cost more than they save.
    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "true")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs), (
        f"{path.name} shows no plot"
    )
