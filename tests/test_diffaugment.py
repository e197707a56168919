"""DiffAugment: each transform does what it says, real and generated images get the same
augmentation distribution within a step (one call over both), gradients reach the generator
through it, and evaluation sees the images as they are. The adaptive probability (ADA): p moves by
the closed-form step at the end of each interval, each image is augmented with probability p, the
state is checkpointed with the run but not taken from a fine-tuning source, and train/ada_p is
logged."""

import pytest
import torch
from pydantic import ValidationError
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from genmodels.data import DataConfig, load_data
from genmodels.experiment import build
from genmodels.models.gan import GANConfig
from genmodels.metrics.quality import EvalConfig, SampleQuality
from genmodels.models import GAN
from genmodels.models.base import EvalContext, Updater
from genmodels.models.diffaugment import DiscriminatorAugment, cutout, diff_augment, translation
from genmodels.optim import OptimConfig

from conftest import data_root, tiny_config


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


def test_the_adaptive_probability_moves_by_adas_step_at_each_interval():
    # kimg 0.1: p can move by 1 over 100 images; each interval is 4 steps of 10 images, so +-0.4.
    augment = DiscriminatorAugment(("cutout",), target=0.6, kimg=0.1, interval=4)
    overfit, fooled = torch.full((10, 1), 3.0), torch.cat([torch.full((6, 1), -1.0), torch.full((4, 1), 1.0)])
    seen = []
    for d_real in [overfit] * 4 + [fooled] * 4 + [overfit] * 12:
        augment.observe(d_real)
        seen.append(round(float(augment.p), 6))
    # r_t = 1 > 0.6 for the first interval, -0.2 < 0.6 for the second, then 1 again; p stays in [0, 1]
    assert seen == [0, 0, 0, 0.4, 0.4, 0.4, 0.4, 0.0, 0, 0, 0, 0.4, 0.4, 0.4, 0.4, 0.8, 0.8, 0.8, 0.8, 1.0]
    # r_t exactly at the target leaves p where it is (sign 0)
    augment.p.fill_(0.5)
    for _ in range(4):
        augment.observe(torch.cat([torch.full((8, 1), 1.0), torch.full((2, 1), -1.0)]))
    assert float(augment.p) == pytest.approx(0.5)


def test_each_image_is_augmented_with_probability_p():
    torch.manual_seed(0)
    augment = DiscriminatorAugment(("cutout",), target=0.6)
    augment.p.fill_(0.3)
    out = augment(torch.ones(4000, 1, 16, 16))
    touched = (out == 0).flatten(1).any(1).float().mean()
    assert abs(float(touched) - 0.3) < 0.025  # binomial s.d. 0.007
    augment.p.fill_(0.0)
    assert torch.equal(augment(torch.ones(100, 1, 16, 16)), torch.ones(100, 1, 16, 16))
    assert not list(DiscriminatorAugment(("cutout",)).buffers())  # plain DiffAugment: no state, checkpoints unchanged


def test_ada_is_configured_logged_checkpointed_and_starts_afresh_when_fine_tuning(tmp_path):
    with pytest.raises(ValidationError, match="ada_target adapts how often model.diffaugment applies"):
        GANConfig(ada_target=0.6)
    gan = ["model.kind=gan", "model.arch=dcgan", "model.hidden=8", "model.latent_dim=4", "eval.fid_samples=100",
           "data.limit=400"]
    src = build(tiny_config(tmp_path, "name=plain", *gan), quiet=True)
    src.fit()
    assert not any(k.startswith("augment.") for k in src.model.state_dict())
    # A source without ADA, fine-tuned with it; the target is 0.01 and D is sure of the training
    # images at once, so p rises by 2 x 8 x 4 / 1000 per interval (kimg 1: batches of 8, 4 steps).
    ft = build(tiny_config(tmp_path, "name=ada", *gan, f"finetune.from={src.run_dir}", "model.diffaugment=[cutout]",
                           "model.ada_target=0.01", "model.ada_kimg=1", "train.batch_size=8", "train.log_every=1"),
               quiet=True)
    assert float(ft.model.augment.p) == 0.0
    ft.fit()
    p = float(ft.model.augment.p)
    assert 0 < p <= 1
    saved = torch.load(ft.run_dir / "last.pt", weights_only=True)["model"]
    assert float(saved["augment.p"]) == pytest.approx(p)
    events = EventAccumulator(str(ft.run_dir))
    events.Reload()
    logged = [e.value for e in events.Scalars("train/ada_p")]
    assert len(logged) > 10 and max(logged) > 0 and all(0 <= v <= 1 for v in logged)
