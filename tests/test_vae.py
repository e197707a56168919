import pytest
import torch
import torch.nn.functional as F

from genmodels.optim import OptimConfig
from genmodels.data import load_splits
from genmodels.metrics.likelihood import gaussian_kl, iwae_bound, reconstruction_nll
from genmodels.models import MODELS, VAE, build_model
from genmodels.models.base import EvalContext
from genmodels.models.vae import VAEEvalOptions
from genmodels.models import Updater

from conftest import data_root

VARIANTS = [
    dict(arch="mlp", n_layers=1, likelihood="bernoulli"),
    dict(arch="mlp", n_layers=3, likelihood="gaussian"),
    dict(arch="conv", n_layers=1, likelihood="bernoulli"),
    dict(arch="conv", n_layers=3, likelihood="gaussian"),
    dict(arch="mlp", n_layers=2, likelihood="bernoulli", binarize=True),
]


@pytest.mark.parametrize("kwargs", VARIANTS, ids=lambda k: "-".join(str(v) for v in k.values()))
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_build_step_sample(kwargs, shape):
    torch.manual_seed(0)
    model = VAE(shape, hidden=16, latent_dim=3, **kwargs)
    update = Updater(model.configure_optimizers(OptimConfig()))
    batch = torch.randint(0, 256, (8, *shape), dtype=torch.uint8)
    before = [p.detach().clone() for p in model.parameters()]
    losses = model.training_step(batch, update)
    assert set(losses) == {"loss", "recon", "kl"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    images = model.sample(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, *shape)
    assert images.min() >= 0 and images.max() <= 1
    grids = model.image_grids(batch, torch.Generator().manual_seed(0))
    assert grids["reconstructions"].shape == (16, *shape)


def test_registry_builds_vae():
    from genmodels.models import VAEConfig

    assert MODELS["vae"] is VAE
    model = build_model(VAEConfig(arch="conv", hidden=8, latent_dim=2), (1, 28, 28))
    assert isinstance(model, VAE)


def test_bernoulli_reconstruction_nll_is_the_log_likelihood():
    logits = torch.randn(64, 1, 28, 28, dtype=torch.float64) * 8
    x = torch.rand(64, 1, 28, 28, dtype=torch.float64)
    p = torch.sigmoid(logits)
    expected = -(x * p.log() + (1 - x) * (1 - p).log()).sum(dim=(1, 2, 3))
    assert torch.allclose(reconstruction_nll(logits, x, "bernoulli"), expected, rtol=1e-6)


def test_bernoulli_nll_gradients():
    logits = (torch.randn(4, 1, 3, 3, dtype=torch.float64) * 4).requires_grad_()
    x = torch.rand(4, 1, 3, 3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda logit, t: reconstruction_nll(logit, t, "bernoulli"), (logits, x))


def test_bernoulli_nll_is_stable_for_extreme_logits():
    logits = torch.tensor([[-200.0, -30.0, 0.0, 30.0, 200.0]], requires_grad=True)
    x = torch.tensor([[0.0, 1.0, 0.5, 0.0, 1.0]])
    nll = reconstruction_nll(logits, x, "bernoulli")
    nll.backward()
    expected = F.binary_cross_entropy_with_logits(logits.detach(), x, reduction="sum")
    assert torch.isfinite(logits.grad).all()
    assert torch.allclose(nll, expected.unsqueeze(0), rtol=1e-6)
    assert torch.allclose(logits.grad, torch.sigmoid(logits.detach()) - x)


def test_kl_zero_for_prior():
    assert torch.allclose(gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))


def test_iwae_bound_k1_is_mean():
    log_w = torch.randn(1, 10)
    assert torch.allclose(iwae_bound(log_w), log_w[0])


def test_iwae_not_above_neg_elbo():
    """After a little training, the IWAE estimate of -log p(x) (k=50) is below the -ELBO on average."""
    torch.manual_seed(0)
    splits = load_splits("mnist", data_root(), 0.1, seed=0, download=False)
    model = VAE((1, 28, 28), hidden=64, latent_dim=8)
    update = Updater(model.configure_optimizers(OptimConfig(lr=2e-3)))
    for start in range(0, 4500, 100):
        model.training_step(splits.train.images[start : start + 100], update)
    model.eval()
    batch = splits.heldout.images[:200]
    metrics = model.evaluate([batch], EvalContext(torch.Generator().manual_seed(1), options=VAEEvalOptions(iwae_k=50)))
    assert metrics["iwae_nll"] < metrics["neg_elbo"]
    assert metrics["iwae_nll"] > 0
