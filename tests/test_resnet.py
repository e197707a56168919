"""SNGAN-style ResNet GANs: every size the layout allows, spectral norm on every discriminator
layer, each loss (WGAN-GP's double backward included), and a run on a colour image folder at 32
and 64 px through the CLI: train, evaluate, sample."""

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.config import load_config
from genmodels.models import GAN, build_model
from genmodels.models.base import Updater
from genmodels.optim import OptimConfig

from conftest import REPO, cli


@pytest.mark.parametrize("side, n_layers", [(28, 2), (32, 3), (48, 3), (64, 4), (96, 4), (128, 5)])
def test_sizes(side, n_layers):
    gan = GAN((3, side, side), arch="resnet", n_layers=n_layers, hidden=8, latent_dim=16, spectral_norm=True)
    samples = gan.sample(3, torch.Generator().manual_seed(0))
    assert samples.shape == (3, 3, side, side) and 0 <= samples.min() and samples.max() <= 1
    assert gan.discriminator(torch.rand(3, 3, side, side) * 2 - 1).shape == (3, 1)
    # the discriminator's side after its blocks: the generator's first map, doubled
    assert gan.generator.bottom == side // 2**n_layers


def test_spectral_norm_on_every_discriminator_layer():
    gan = GAN((3, 32, 32), arch="resnet", n_layers=3, hidden=8, spectral_norm=True)
    layers = [m for m in gan.discriminator.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    plain = GAN((3, 32, 32), arch="resnet", n_layers=3, hidden=8, spectral_norm=False)
    assert not any(hasattr(m, "parametrizations") for m in plain.discriminator.modules())


@pytest.mark.parametrize("loss", ["ns", "hinge", "wgan-gp"])
def test_each_loss_trains_a_step(loss):
    torch.manual_seed(0)
    gan = GAN((3, 32, 32), arch="resnet", n_layers=3, hidden=8, latent_dim=16, loss=loss, n_critic=1,
              spectral_norm=True)
    update = Updater(gan.configure_optimizers(OptimConfig(lr=1e-3)))
    before = {n: p.detach().clone() for n, p in gan.named_parameters()}
    out = gan.training_step(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), update)
    assert torch.isfinite(out["d_loss"]) and torch.isfinite(out["g_loss"])
    unchanged = [n for n, p in gan.named_parameters() if torch.equal(before[n], p)]
    # every layer of G and D got a gradient step; the critic's output bias cancels in WGAN's
    # E[D(fake)] - E[D(real)] (and the penalty's gradient ignores it)
    assert unchanged == (["discriminator.linear.bias"] if loss == "wgan-gp" else []), unchanged


def test_a_size_that_does_not_fit_is_one_line(tmp_path):
    (tmp_path / "r.yaml").write_text("data: {name: mnist, limit: 100}\n"
                                     "model: {kind: gan, arch: resnet, n_layers: 3, hidden: 8}\n"
                                     f"log: {{runs_dir: {tmp_path}}}\n")
    code, _, err = cli("train", str(tmp_path / "r.yaml"))
    assert code == 2 and err.strip().splitlines() == [
        "genmodels: error: model: resnet GANs need square images whose side divides by 2**n_layers into at least "
        "2; got 28x28 with n_layers=3"]


@pytest.mark.parametrize("side, n_layers", [(32, 3), (64, 4)])
def test_train_evaluate_sample_on_a_colour_folder(tmp_path, side, n_layers):
    rng = np.random.default_rng(0)
    folder = tmp_path / "colour"
    folder.mkdir()
    for i in range(120):  # colour blobs on a dark ground, of varied sizes
        image = np.zeros((40, 40, 3), dtype=np.uint8)
        r = rng.integers(5, 18)
        cy, cx = rng.integers(10, 30, 2)
        yy, xx = np.mgrid[:40, :40]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(60, 256, 3)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    (tmp_path / "gan.yaml").write_text(
        f"name: rgan\ndata: {{name: imagefolder, path: {folder}, image_size: {side}, channels: 3}}\n"
        f"model: {{kind: gan, arch: resnet, n_layers: {n_layers}, hidden: 8, latent_dim: 16, loss: hinge, "
        f"spectral_norm: true, n_critic: 2}}\n"
        f"optim: {{lr: 2.0e-4, betas: [0.0, 0.9]}}\ntrain: {{epochs: 1, batch_size: 32}}\n"
        f"eval: {{fid_samples: 50}}\nlog: {{runs_dir: {tmp_path / 'runs'}, n_images: 4}}\n")
    code, out, err = cli("train", str(tmp_path / "gan.yaml"), "--quiet")
    assert code == 0, err
    assert "features: contrastive-imagefolder-" in out
    code, out, err = cli("eval", str(tmp_path / "runs" / "rgan"), "--split", "test", "--quiet")
    assert code == 0 and "fid" in out, err
    code, out, err = cli("sample", str(tmp_path / "runs" / "rgan"), "-n", "8", "-o", str(tmp_path / "s.png"))
    assert code == 0 and Image.open(tmp_path / "s.png").mode == "RGB"


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "experiments").glob("sngan_*.yaml")))
def test_each_recipe_builds_for_its_size(recipe):
    cfg = load_config(REPO / "experiments" / recipe, ["model.hidden=4"])
    side = cfg.data.image_size or 32  # cifar10: 32
    model = build_model(cfg.model, (3, side, side))
    assert model.sample(2).shape == (2, 3, side, side)
    assert cfg.model.loss == "hinge" and cfg.model.n_critic == 5 and cfg.optim.betas == (0.0, 0.9)
