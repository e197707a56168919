"""Notebooks run top to bottom with small settings (GENMODELS_SMALL=1), in a real Jupyter kernel;
each must leave its run folders and show at least one picture, and no server behind."""

import nbformat
import pytest
from nbclient import NotebookClient
from tensorboard import manager

from conftest import REPO, data_root

# What each notebook must leave in its runs folder.
LEAVES = {
    "01_train_vae_mnist.ipynb": ["notebook_vae/metrics.json"],
    "02_tune_gan.ipynb": ["notebook_gan/study.db", "notebook_gan/best-retrained/metrics.json",
                          "notebook_gan_untuned/metrics.json"],
    "03_curves.ipynb": ["curves_vae/metrics.json", "curves_study/study.db"],
    "04_finetune.ipynb": ["ft_source/best.pt", "vae_fashion_ft/metrics.json", "ft_scratch/metrics.json"],
}


def test_every_notebook_is_listed():
    assert sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb")) == sorted(LEAVES)


@pytest.mark.parametrize("name", sorted(LEAVES))
def test_notebook_runs(name, tmp_path, monkeypatch):
    monkeypatch.setenv("GENMODELS_DATA", data_root())
    monkeypatch.setenv("GENMODELS_SMALL", "1")
    monkeypatch.setenv("GENMODELS_NOTEBOOK_RUNS", str(tmp_path / "runs"))
    path = REPO / "notebooks" / name
    nb = nbformat.read(path, as_version=4)
    assert not [c for c in nb.cells if c.cell_type == "code" and c.outputs], "commit notebooks without outputs"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    for leaf in LEAVES[name]:
        assert (tmp_path / "runs" / leaf).is_file(), leaf
    assert not [i for i in manager.get_all() if i.logdir == str(tmp_path / "runs")]  # TensorBoard stopped
