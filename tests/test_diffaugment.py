"""DiffAugment: each transform does what it says, real and generated images get the same
augmentation distribution within a step (one call over both), gradients reach the generator
through it, and evaluation sees the images as they are."""

import torch
from torch import nn

from genmodels.data import DataConfig, load_data
from genmodels.metrics.quality import EvalConfig, SampleQuality
from genmodels.models import GAN
from genmodels.models.base import EvalContext, Updater
from genmodels.models.diffaugment import cutout, diff_augment, translation
from genmodels.optim import OptimConfig

from conftest import data_root


def test_translation_shifts_whole_pixels_and_cutout_zeros_half_the_side():
    torch.manual_seed(0)
    x = torch.zeros(200, 1, 16, 16)
    x[:, :, 8, 8] = 1.0  # one bright pixel
    moved = translation(x)
    where = moved.flatten(1).argmax(1)
    rows, cols = where // 16, where % 16
    assert moved.sum(dim=(1, 2, 3)).eq(1).all()  # moved, not blurred or lost (2 px of 16 at most)
    assert (rows - 8).abs().max() == 2 and (cols - 8).abs().max() == 2 and len(set(rows.tolist())) == 5
    ones = torch.ones(200, 3, 16, 16)
    cut = cutout(ones)
    zeros = (cut[:, 0] == 0).sum(dim=(1, 2)).float()
    assert zeros.max() == 64 and zeros.min() >= 16  # an 8x8 square, partly off the edge at worst
    assert torch.equal(cut[:, 0], cut[:, 2])  # the same square through every channel


class Recorder(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.inner(x)


def test_real_and_fake_share_the_augmentation_distribution_and_evaluation_sees_none():
    torch.manual_seed(0)
    gan = GAN((1, 28, 28), arch="dcgan", n_layers=2, hidden=4, latent_dim=4, diffaugment=("translation", "cutout"))
    gan.discriminator = Recorder(gan.discriminator)
    update = Updater(gan.configure_optimizers(OptimConfig()))
    batch = torch.full((1000, 1, 28, 28), 255, dtype=torch.uint8)  # all white: what is cut out shows
    gan.training_step(batch, update)
    d_input = gan.discriminator.seen[0]  # one call: real and generated images together
    real, fake = d_input[:1000], d_input[1000:]
    # zeros come from the cut-out square and translation's fill only (a generated pixel is
    # never exactly 0): every real image augmented, and the generated half just as much
    real_zeros, fake_zeros = ((h == 0).flatten(1).float().mean(1) for h in (real, fake))
    assert real_zeros.min() > 0 and 0.2 < real_zeros.mean() < 0.4
    assert abs(fake_zeros.mean() - real_zeros.mean()) < 0.03
    assert len(gan.discriminator.seen) == 2 and (gan.discriminator.seen[1] == 0).flatten(1).any(1).all()  # G's step
    # evaluation: the discriminator sees the held-out images as they are
    gan.discriminator.seen.clear()
    heldout = load_data(DataConfig(name="mnist", root=data_root(), limit=100)).heldout.images
    scorer = SampleQuality(EvalConfig(fid_samples=50), DataConfig(name="mnist", root=data_root()), quiet=True)
    gan.eval().evaluate(heldout.split(50), EvalContext(torch.Generator().manual_seed(0), scorer=scorer, fid_samples=50))
    seen = gan.discriminator.seen[0]
    assert len(seen) > 0 and torch.allclose(seen, heldout[: len(seen)].float() / 255 * 2 - 1, atol=1e-6)


def test_gradients_reach_the_generator_through_every_policy():
    torch.manual_seed(0)
    z = torch.randn(8, 3, 16, 16, requires_grad=True)
    diff_augment(z, ["color", "translation", "cutout"]).square().sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
