import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from genmodels.data import DataConfig, load_data, load_imagefolder
from genmodels.errors import ConfigError
from genmodels.experiment import build
from genmodels.runs import load_run

from conftest import data_root, run_cli, tiny_config
from test_train import scalars


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("src")
    trainer = build(tiny_config(tmp, "name=src", "train.epochs=1"), quiet=True)
    trainer.fit()
    return trainer.run_dir


def finetune_counts(trainer):
    """What the fine-tuning step froze, read off the model's parameters."""
    params = list(trainer.model.parameters())
    return {"frozen": sum(p.numel() for p in params if not p.requires_grad),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "frozen_tensors": sum(not p.requires_grad for p in params)}


def finetune_config(tmp_path, source, *extra):
    return tiny_config(tmp_path, "name=ft", f"finetune.from={source}", "data.name=fashion-mnist",
                       "data.limit=300", "train.epochs=2", "optim.lr=1e-3", *extra)


def test_frozen_parameters_unchanged_trainable_changed(tmp_path, source_run):
    _, source_model, _ = load_run(source_run)
    trainer = build(finetune_config(tmp_path, source_run, "finetune.freeze=[encoder.*]"), quiet=True)
    info = finetune_counts(trainer)
    n_encoder = sum(p.numel() for p in source_model.encoder.parameters())
    n_decoder = sum(p.numel() for p in source_model.decoder.parameters())
    assert info["frozen"] == n_encoder and info["trainable"] == n_decoder
    trainer.fit()
    before = dict(source_model.named_parameters())
    for name, p in trainer.model.named_parameters():
        if name.startswith("encoder."):
            assert torch.equal(p, before[name]), name
        else:
            assert not torch.equal(p, before[name]), name
    curves = scalars(trainer.run_dir)
    assert "epoch_train/loss" in curves and len(curves["heldout/loss"]) == 2


def test_gan_finetune_freezes_generator_block(tmp_path):
    src = build(tiny_config(tmp_path, "name=gsrc", "model.kind=gan", "model.arch=mlp", "model.hidden=16",
                              "model.latent_dim=4", "eval.fid_samples=100"), quiet=True)
    src.fit()
    cfg = tiny_config(tmp_path, "name=gft", "model.kind=gan", "model.arch=mlp", "model.hidden=16", "model.latent_dim=4",
                      "eval.fid_samples=100", f"finetune.from={src.run_dir}",
                      "finetune.freeze=generator.0.0.*,generator.0.1.*",
                      "data.classes=[3]", "data.limit=200")
    ft = build(cfg, quiet=True)
    ft.fit()
    _, source_model, _ = load_run(src.run_dir)
    before = dict(source_model.named_parameters())
    after = dict(ft.model.named_parameters())
    assert torch.equal(after["generator.0.0.weight"], before["generator.0.0.weight"])
    assert torch.equal(after["generator.0.1.weight"], before["generator.0.1.weight"])  # BatchNorm scale
    assert torch.equal(dict(ft.model.named_buffers())["generator.0.1.running_mean"],
                       dict(source_model.named_buffers())["generator.0.1.running_mean"])
    assert not torch.equal(after["generator.0.3.weight"], before["generator.0.3.weight"])
    assert "heldout/d_loss" in scalars(ft.run_dir) and "epoch_train/d_loss" in scalars(ft.run_dir)


def test_freezed_freezes_the_first_blocks_of_each_network(tmp_path):
    gan = ["model.kind=gan", "model.arch=dcgan", "model.hidden=8", "model.latent_dim=4", "eval.fid_samples=100"]
    src = build(tiny_config(tmp_path, "name=dsrc", *gan), quiet=True)
    src.fit()
    ft = build(tiny_config(tmp_path, "name=dft", *gan, f"finetune.from={src.run_dir}", "finetune.freeze_d_blocks=2",
                           "finetune.freeze_g_blocks=1", "data.classes=[3]", "data.limit=200"), quiet=True)
    ft.fit()
    before, after = dict(load_run(src.run_dir)[1].state_dict()), dict(ft.model.state_dict())
    # dcgan's discriminator: conv 0, conv 2, linear 5; its generator: linear 0 + BatchNorm 2, ...
    kept = ["discriminator.0.bias", "discriminator.2.bias", "generator.0.weight", "generator.2.weight",
            "generator.2.running_mean"]
    moved = ["discriminator.5.bias", "generator.4.weight", "generator.7.bias"]
    assert [k for k in kept if not torch.equal(after[k], before[k])] == []
    assert not any(torch.equal(after[k], before[k]) for k in moved)
    with pytest.raises(ConfigError, match=r"finetune.freeze_d_blocks: 3 of the discriminator's 3 blocks leaves "
                                          r"none to train \(at most 2\)"):
        build(tiny_config(tmp_path, "name=dft2", *gan, f"finetune.from={src.run_dir}", "finetune.freeze_d_blocks=3"))


def test_block_freezing_is_for_gans(tmp_path, source_run):
    with pytest.raises(ConfigError, match=r"finetune.freeze_g_blocks: for GANs only \(this run trains a 'vae'\)"):
        build(finetune_config(tmp_path, source_run, "finetune.freeze_g_blocks=1"), quiet=True)


def write(tmp_path, data):
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("change, message", [
    ({"finetune": {"freeze": ["encoderr.*"]}}, "finetune.freeze: pattern 'encoderr.*' matches no parameter"),
    ({"model": {"hidden": 48}},
     "best.pt: shape mismatch for 'encoder.1.0.weight': checkpoint (32, 784), model (48, 784)"),
    ({"model": {"kind": "gan", "arch": "mlp"}}, "holds a 'vae' model, the config trains 'gan'"),
])
def test_finetune_errors_are_one_line(tmp_path, source_run, change, message):
    data = {"name": "ft", "model": {"kind": "vae", "hidden": 32, "latent_dim": 4},
            "data": {"name": "fashion-mnist", "limit": 100}, "train": {"epochs": 1},
            "log": {"runs_dir": str(tmp_path / "runs")},
            "finetune": {"from": str(source_run), "freeze": ["encoder.*"]}}
    for section, values in change.items():
        data[section].update(values)
    result = run_cli("finetune", str(write(tmp_path, data)), "--quiet")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_cli_finetune_prints_counts(tmp_path, source_run):
    # No model section: the source checkpoint's is taken.
    data = {"name": "ft",
            "data": {"name": "fashion-mnist", "limit": 200}, "train": {"epochs": 1},
            "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 4},
            "finetune": {"from": str(source_run), "freeze": "encoder.*"}}
    result = run_cli("finetune", str(write(tmp_path, data)), "--quiet")
    assert result.returncode == 0, result.stderr
    # encoder 784*32+32 + 32*8+8 frozen; decoder 4*32+32 + 32*784+784 trainable
    assert "25,384 parameters frozen (4 tensors), 26,032 trainable" in result.stdout
    # eval scores the fine-tuned weights (not the source's), on the fine-tuning data
    run = tmp_path / "runs" / "ft"
    ev = run_cli("eval", str(run), "--quiet")
    assert ev.returncode == 0, ev.stderr
    import json

    best = json.loads((run / "metrics.json").read_text())["best"]["metrics"]["neg_elbo"]
    assert json.loads((run / "eval_heldout.json").read_text())["metrics"]["neg_elbo"] == pytest.approx(best, rel=1e-6)


def test_classes_and_limit_select(tmp_path):
    splits = load_data(DataConfig(name="mnist", root=data_root(), classes=[1, 7], limit=120))
    for split in (splits.train, splits.heldout, splits.test):
        assert set(split.labels.tolist()) <= {1, 7} and len(split) <= 120
    assert len(splits.train) == 120 and len(splits.test) == 120
    assert set(splits.train.labels.tolist()) == {1, 7}


def make_images(folder, n=24):
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = folder / ("circles" if i % 2 else "squares")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(sub / f"{i}.png")


def test_imagefolder_loads_caches_and_trains(tmp_path):
    folder = tmp_path / "imgs"
    make_images(folder)
    split = load_imagefolder(folder, 28, 1)
    assert split.images.shape == (24, 1, 28, 28) and set(split.labels.tolist()) == {0, 1}
    rgb = load_imagefolder(folder, 32, 3)
    assert rgb.images.shape == (24, 3, 32, 32)
    cfg = tiny_config(tmp_path, "data.name=imagefolder", f"data.path={folder}", "data.image_size=32",
                      "data.channels=3", "model.arch=conv", "model.hidden=4", "train.batch_size=8", "train.epochs=2")
    result = build(cfg, quiet=True).fit()
    assert result.epochs == 2 and np.isfinite(result.heldout["neg_elbo"])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"not a png")
    with pytest.raises(Exception, match=r"x.png: cannot decode image"):
        load_imagefolder(bad, 28, 1, bad_files="error")


def test_missing_pattern_is_config_error(tmp_path, source_run):
    with pytest.raises(ConfigError, match="finetune.reinit: pattern 'nope' matches no parameter"):
        build(finetune_config(tmp_path, source_run, "finetune.reinit=nope"), quiet=True)


def test_finetune_fields_are_tunable(tmp_path, source_run):
    import optuna

    from genmodels.tuning.study import tune_study

    base = {"name": "x", "model": {"kind": "vae", "hidden": 32, "latent_dim": 4},
            "data": {"name": "fashion-mnist", "limit": 300}, "train": {"epochs": 1, "batch_size": 128},
            "log": {"n_images": 4}, "finetune": {"from": str(source_run)}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    tune = {"base": "base.yaml", "study_name": "ft", "runs_dir": str(tmp_path / "runs"), "n_trials": 3,
            "sampler": {"name": "grid"}, "pruner": {"name": "none"},
            "space": {"finetune.freeze": {"type": "categorical", "choices": ["encoder.*", "decoder.*", "none"]}}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tune))
    tune_study(str(tmp_path / "tune.yaml"), quiet=True)
    study = optuna.load_study(study_name="ft", storage=f"sqlite:///{tmp_path / 'runs' / 'ft' / 'study.db'}")
    assert sorted(t.params["finetune.freeze"] for t in study.trials) == ["decoder.*", "encoder.*", "none"]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
