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


# --- the ELBO and IWAE against a model whose likelihood is known in closed form -------------------


def linear_gaussian_vae(exact_posterior: bool = True) -> tuple[VAE, torch.distributions.MultivariateNormal]:
    """A VAE with one linear layer each way and a Gaussian likelihood is probabilistic PCA:
    x = W z + b + sigma e, so p(x) = N(b, W W^T + sigma^2 I). W's columns are orthogonal, which
    makes the exact posterior N(M^-1 W^T (x - b), sigma^2 M^-1), M = W^T W + sigma^2 I, diagonal:
    the encoder can hold it exactly."""
    model = VAE((1, 2, 2), n_layers=0, latent_dim=2, likelihood="gaussian")
    w = torch.tensor([[1.5, 0.0], [0.0, 0.8], [0.5, 0.0], [0.0, -0.6]])
    b, sigma = torch.tensor([0.3, 0.5, 0.2, 0.6]), 0.4
    m_inv = torch.linalg.inv(w.T @ w + sigma**2 * torch.eye(2))
    gain = m_inv @ w.T
    with torch.no_grad():
        decoder, encoder = model.decoder[0][0], model.encoder[1][0]
        decoder.weight.copy_(w), decoder.bias.copy_(b)
        model.log_sigma.fill_(torch.tensor(sigma).log())
        encoder.weight.zero_()
        encoder.weight[:2] = gain if exact_posterior else 0.7 * gain
        encoder.bias[:2] = -(gain @ b)
        encoder.bias[2:] = (sigma**2 * m_inv.diagonal()).log() + (0.0 if exact_posterior else 0.5)
    return model.eval(), torch.distributions.MultivariateNormal(b, w @ w.T + sigma**2 * torch.eye(4))


def pixels(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, 2, 2), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_iwae_is_the_log_likelihood_under_the_exact_posterior():
    """With q(z|x) the exact posterior every importance weight is p(x): the bound is log p(x) for
    any k, which a missing -log k (k copies summed, not averaged) would miss by log k."""
    model, p_x = linear_gaussian_vae()
    batch = pixels(50)
    x = batch.float() / 255
    truth = p_x.log_prob(x.flatten(1))
    for k in (1, 7, 100):
        got = model.iwae_log_likelihood(x, k, torch.Generator().manual_seed(k))
        assert torch.allclose(got, truth, atol=1e-4), k
    report = model.evaluate(batch.split(16), EvalContext(torch.Generator().manual_seed(0),
                                                          options=VAEEvalOptions(iwae_k=10)))
    assert report["iwae_nll"] == pytest.approx(-truth.mean().item(), abs=1e-4)


def test_elbo_is_the_log_likelihood_under_the_exact_posterior():
    model, p_x = linear_gaussian_vae()
    x = (pixels(8).float() / 255).repeat(20_000, 1, 1, 1)  # each image with many draws of z
    recon, kl = model.losses(x, torch.Generator().manual_seed(1))
    neg_elbo = (recon + kl).view(20_000, 8)
    truth = -p_x.log_prob(x[:8].flatten(1))
    se = neg_elbo.std(dim=0) / 20_000**0.5
    assert torch.all((neg_elbo.mean(dim=0) - truth).abs() < 4 * se + 1e-4)


def test_bounds_order_and_tighten_under_an_inexact_posterior():
    """log p(x) >= IWAE_k >= ELBO = IWAE_1 (Burda et al. 2016), the gap closing as k grows."""
    model, p_x = linear_gaussian_vae(exact_posterior=False)
    x = pixels(200).float() / 255
    truth = p_x.log_prob(x.flatten(1)).mean().item()
    bounds = {k: model.iwae_log_likelihood(x, k, torch.Generator().manual_seed(k)).mean().item()
              for k in (10, 5000)}
    many = x.repeat(200, 1, 1, 1)  # 200 draws of z per image: the ELBO's own noise well below the gaps
    recon, kl = model.losses(many, torch.Generator().manual_seed(2))
    elbo = -(recon + kl).mean().item()
    iwae_1 = model.iwae_log_likelihood(many, 1, torch.Generator().manual_seed(3)).mean().item()
    assert iwae_1 == pytest.approx(elbo, abs=0.02)  # k=1 is the ELBO (KL in closed form or sampled)
    assert elbo < bounds[10] < bounds[5000] <= truth + 1e-3
    assert truth - bounds[5000] < 0.1 * (truth - elbo)
