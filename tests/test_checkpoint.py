"""The run checkpoint format: written once, read by every reader, damaged files are one line."""

import pytest
import torch
import yaml

from genmodels.checkpoint import FORMAT_VERSION, RunCheckpoint, load_checkpoint, own_streams, save_checkpoint
from genmodels.errors import ConfigError, UserError
from genmodels.experiment import build

from conftest import cli, tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ckpt")
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp, "name=run").to_dict()))
    assert cli("train", str(path), "--quiet")[0] == 0
    return tmp / "runs" / "run"


def test_round_trip_is_typed(run):
    ckpt = load_checkpoint(run / "last.pt")
    assert isinstance(ckpt, RunCheckpoint) and ckpt.kind == "vae" and ckpt.image_shape == (1, 28, 28)
    assert torch.load(run / "last.pt", weights_only=True)["format_version"] == FORMAT_VERSION


def test_each_rank_resumes_with_its_own_streams():
    cpu = [torch.full((4,), r, dtype=torch.uint8) for r in range(3)]
    rng = {"torch": cpu[0], "shuffle": cpu[0], "cuda": [cpu[0]],
           "ranks": [{"torch": cpu[r], "cuda": cpu[r] + 10} for r in range(2)]}
    own = own_streams(rng, 1, 2)
    assert torch.equal(own["torch"], cpu[1]) and torch.equal(own["cuda_own"], cpu[1] + 10) and "cuda" not in own
    assert own_streams(rng, 0, 3) is rng  # another number of ranks: rank 0's streams, as saved
    older = {**rng, "ranks": [cpu[0], cpu[1]]}  # ranks saved their CPU stream only
    assert torch.equal(own_streams(older, 1, 2)["torch"], cpu[1])


def test_version_1_files_still_load(run, tmp_path):
    state = torch.load(run / "last.pt", weights_only=True)
    state["format_version"] = 1
    del state["images_seen"]
    state["bad_epochs"] = state.pop("bad_evaluations")  # its name before version 3
    torch.save(state, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert old.images_seen == 0 and old.bad_evaluations == state["bad_epochs"]


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.pop("optimizers"), "not a genmodels run checkpoint ('optimizers' is missing)"),
    (lambda s: s.update(epoch="three"), "checkpoint field 'epoch' is a str"),
    (lambda s: s.update(image_shape=[1, 28]), "checkpoint field 'image_shape' is [1, 28], expected [C, H, W]"),
    (lambda s: s.update(format_version=99), "checkpoint format 99, expected one of (1, 2, 3)"),
    (lambda s: s["model"].update({"decoder.0.2.weight": torch.zeros(3, 3)}),
     "shape mismatch for 'decoder.0.2.weight': checkpoint (3, 3), model (784, 32)"),
    (lambda s: s["model"].pop("encoder.1.0.bias"), "lacks 'encoder.1.0.bias', which the configured model has"),
    (lambda s: s["model"].update({"extra.weight": torch.zeros(1)}),
     "has 'extra.weight', which the configured model lacks"),
])
def test_damaged_checkpoint_is_one_line(run, tmp_path, damage, message):
    state = torch.load(run / "best.pt", weights_only=True)
    damage(state)
    torch.save(state, tmp_path / "best.pt")
    code, _, err = cli("eval", str(tmp_path / "best.pt"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="x.pt: not a readable checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save([1, 2, 3], tmp_path / "y.pt")
    with pytest.raises(UserError, match="y.pt: not a genmodels run checkpoint"):
        load_checkpoint(tmp_path / "y.pt")


def test_a_run_from_before_a_new_model_field_resumes(tmp_path):
    """A checkpoint written before model.n_classes existed (its model section lacks the field)
    resumes: the field takes its default; a real change of the model is still refused."""
    cfg = tiny_config(tmp_path, "train.epochs=1")
    build(cfg, quiet=True).fit()
    last = tmp_path / "runs" / "tiny" / "last.pt"
    ckpt = load_checkpoint(last)
    del ckpt.config["model"]["n_classes"]
    save_checkpoint(last, ckpt)
    resumed = build(tiny_config(tmp_path, "train.epochs=2"), quiet=True, resume=True)
    assert resumed.fit().epochs == 2
    with pytest.raises(ConfigError, match="checkpoint was trained with model"):
        build(tiny_config(tmp_path, "train.epochs=3", "model.hidden=16"), quiet=True, resume=True)
