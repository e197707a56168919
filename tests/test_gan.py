import pytest
import torch

from genmodels.models import GANConfig
from genmodels.optim import OptimConfig
from genmodels.models import GAN, MODELS, build_model
from genmodels.experiment import build
from genmodels.models import Updater

from conftest import tiny_config
from test_train import params, scalars

CASES = [
    dict(arch="mlp", loss="ns"),
    dict(arch="mlp", loss="hinge", spectral_norm=True),
    dict(arch="dcgan", loss="ns", ema=0.9),
    dict(arch="dcgan", loss="wgan-gp", n_critic=2),
    dict(arch="dcgan", loss="hinge", spectral_norm=True, n_layers=3),
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(str(v) for v in k.values()))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_build_step_sample(kwargs, shape):
    torch.manual_seed(0)
    model = GAN(shape, hidden=8, latent_dim=4, **{"n_layers": 2, **kwargs})
    update = Updater(model.configure_optimizers(OptimConfig(lr=2e-4, betas=(0.5, 0.999))))
    batch = torch.randint(0, 256, (6, *shape), dtype=torch.uint8)
    d_before = params(model.discriminator)
    g_before = params(model.generator)
    seen = set()
    for _ in range(2):
        losses = model.training_step(batch, update)
        assert all(torch.isfinite(v) for v in losses.values())
        seen |= set(losses)
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= seen
    assert any(not torch.equal(a, b) for a, b in zip(d_before, model.discriminator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.generator.parameters()))
    images = model.sample(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, *shape) and images.min() >= 0 and images.max() <= 1


def test_n_critic_updates_generator_every_nth_step():
    model = GAN((1, 28, 28), arch="mlp", hidden=8, latent_dim=4, n_critic=3)
    update = Updater(model.configure_optimizers(OptimConfig()))
    batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    has_g = ["g_loss" in model.training_step(batch, update) for _ in range(6)]
    assert has_g == [False, False, True, False, False, True]


def test_ema_generator_lags_behind():
    model = GAN((1, 28, 28), arch="mlp", hidden=8, latent_dim=4, ema=0.5)
    update = Updater(model.configure_optimizers(OptimConfig(lr=1e-2)))
    batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    model.training_step(batch, update)
    ema_w = next(model.generator_ema.parameters())
    w = next(model.generator.parameters())
    assert not torch.equal(ema_w, w) and not ema_w.requires_grad


def test_separate_learning_rates():
    model = build_model(GANConfig(arch="mlp", hidden=8, latent_dim=4, lr_g=1e-3, lr_d=4e-4, betas_d=(0.0, 0.9)),
                        (1, 28, 28))
    opts = model.configure_optimizers(OptimConfig(lr=5e-5))
    assert opts["g"].param_groups[0]["lr"] == 1e-3 and opts["d"].param_groups[0]["lr"] == 4e-4
    assert opts["d"].param_groups[0]["betas"] == (0.0, 0.9) and opts["g"].param_groups[0]["betas"] == (0.9, 0.999)
    assert MODELS["gan"] is GAN


def gan_config(tmp_path, *extra):
    return tiny_config(
        tmp_path, "model.kind=gan", "model.arch=mlp", "model.hidden=32", "model.latent_dim=8",
        "model.ema=0.9", "model.n_critic=2", "optim.betas=[0.5, 0.999]", "optim.lr=2e-4",
        "eval.fid_samples=300", *extra)


def test_gan_through_trainer_resumes_exactly_and_logs_fid(tmp_path):
    straight = build(gan_config(tmp_path, "name=straight", "train.epochs=2"), quiet=True)
    result = straight.fit()
    assert result.monitor == "fid" and result.heldout["fid"] > 0
    build(gan_config(tmp_path, "name=split", "train.epochs=1"), quiet=True).fit()
    resumed = build(gan_config(tmp_path, "name=split", "train.epochs=2"), quiet=True, resume=True)
    resumed.fit()
    for a, b in zip(params(straight.model), params(resumed.model)):
        assert torch.equal(a, b)
    assert torch.equal(straight.model.d_updates, resumed.model.d_updates)
    s1, s2 = scalars(straight.run_dir), scalars(resumed.run_dir)
    assert len(s1["heldout/fid"]) == 2 and s1["heldout/fid"] == s2["heldout/fid"]
    assert s1["train/g_loss"] == s2["train/g_loss"] and s1["train/d_loss"] == s2["train/d_loss"]
    assert "hparams/heldout_fid" in s1


def test_cli_gan_eval_on_test_split_names_extractor(tmp_path):
    import json

    import yaml

    from conftest import run_cli
    from genmodels.metrics.features import classifier_name

    cfg = {
        "name": "gan_cli",
        "model": {"kind": "gan", "arch": "dcgan", "n_layers": 2, "hidden": 8, "latent_dim": 8, "loss": "hinge",
                  "spectral_norm": True},
        "train": {"epochs": 1, "batch_size": 128},
        "eval": {"fid_samples": 200},
        "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 16},
    }
    path = tmp_path / "gan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert run_cli("train", str(path), "--quiet").returncode == 0
    run = tmp_path / "runs" / "gan_cli"
    result = run_cli("eval", str(run), "--split", "test", "--quiet")
    assert result.returncode == 0, result.stderr
    name = classifier_name("mnist")
    assert f"features: {name}" in result.stdout
    report = json.loads((run / "eval_test.json").read_text())
    assert report["features"] == name
    assert set(report["metrics"]) == {"fid", "fid_se", "fid_inf", "fid_inf_se", "kid", "kid_se", "spread",
                                      "precision", "precision_se", "recall", "recall_se", "d_loss", "d_auc",
                                      "r_t", "r_v", "d_real", "d_gap"}
    assert report["metrics"]["fid"] > 0 and 0 <= report["metrics"]["recall"] <= 1
    bad = run_cli("eval", str(run), "--iwae-k", "5")
    assert bad.returncode == 2
    assert "evaluation option 'iwae_k': a 'gan' run has no such option (its options: none)" in bad.stderr
