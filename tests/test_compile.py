"""train.compile: the trained networks go through torch.compile (inductor), a WGAN-GP GAN's
double backward included (its gradient penalty stays eager). A compiled step computes the eager
step's losses and gradients within float rounding; a compiled run trains and writes the eager
checkpoint keys; without a C++ compiler on a CPU the config is refused up front."""

import copy
import math

import pytest
import torch

from genmodels.errors import ConfigError
from genmodels.experiment import build
from genmodels.models import GAN, VAE
from genmodels.models.base import Updater
from genmodels.optim import OptimConfig

from conftest import tiny_config


def first_step(model, batch):
    """Losses and gradients of one training step from the seed-0 noise."""
    updater = Updater(model.configure_optimizers(OptimConfig()))
    torch.manual_seed(0)
    losses = model.training_step(batch, updater)
    return losses, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("make", [
    # n_critic 2: the first step is the critic's alone, so its gradients are the penalty's and the loss's
    lambda: GAN((1, 28, 28), arch="dcgan", n_layers=2, hidden=8, latent_dim=4, loss="wgan-gp", n_critic=2),
    lambda: VAE((1, 28, 28), arch="conv", n_layers=2, hidden=8, latent_dim=4),
], ids=["wgan-gp", "conv-vae"])
def test_a_compiled_step_matches_the_eager_one(make):
    torch.manual_seed(1)
    eager = make()
    compiled = copy.deepcopy(eager)
    assert compiled.compile_networks() == [n for n in ("generator", "discriminator", "encoder", "decoder")
                                           if hasattr(eager, n)]
    batch = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    torch._dynamo.utils.counters.clear()
    (a_losses, a_grads), (b_losses, b_grads) = first_step(eager, batch), first_step(compiled, batch)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the compiled graphs ran
    assert a_losses.keys() == b_losses.keys() and a_grads.keys() == b_grads.keys() and a_grads
    for k in a_losses:
        assert float(b_losses[k]) == pytest.approx(float(a_losses[k]), rel=1e-4, abs=1e-6), k
    for k in a_grads:
        assert torch.allclose(b_grads[k], a_grads[k], rtol=1e-3, atol=1e-6), k


def test_a_compiled_wgan_gp_run_trains_and_checkpoints_as_an_eager_one(tmp_path):
    trainer = build(tiny_config(tmp_path, "name=fast", "model.kind=gan", "model.arch=dcgan", "model.hidden=8",
                                "model.latent_dim=4", "model.loss=wgan-gp", "eval.fid_samples=100", "data.limit=200",
                                "train.batch_size=32", "train.compile=true", "train.precision=fp32"), quiet=True)
    result = trainer.fit()
    assert result.epochs == 1 and math.isfinite(result.heldout["fid"])
    assert trainer.model.discriminator._compiled_call_impl is not None
    saved = torch.load(trainer.run_dir / "last.pt", weights_only=True)["model"]
    eager = GAN((1, 28, 28), arch="dcgan", n_layers=2, hidden=8, latent_dim=4, loss="wgan-gp")
    assert list(saved) == list(eager.state_dict())


def test_no_compiler_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++, no clang++
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigError, match=r"train.compile: torch.compile on a CPU needs a C\+\+ compiler"):
        build(tiny_config(tmp_path, "train.compile=true", "data.root=/nonexistent"), quiet=True)
