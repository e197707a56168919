"""Notebooks run top to bottom with small settings, in a real Jupyter kernel."""


import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, data_root


@pytest.mark.parametrize("path", sorted((REPO / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    monkeypatch.setenv("GENMODELS_DATA", data_root())
    monkeypatch.setenv("GENMODELS_NOTEBOOK_EPOCHS", "2")
    monkeypatch.setenv("GENMODELS_NOTEBOOK_IWAE_K", "4")
    monkeypatch.setenv("GENMODELS_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    assert (tmp_path / "runs" / "notebook_vae" / "metrics.json").is_file()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
