"""Class-conditional models: labels reach a conditional model with its images and never an
unconditional one; conditional BatchNorm and the projection discriminator against their closed
forms; a conditional GAN of every architecture and a conditional VAE train, sample a class and
are scored class by class (intra-FID against a reference, the labelled classifier's accuracy);
`genmodels sample --class`, per-class grids in TensorBoard, bad labels refused up front."""

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from genmodels.data import load_data
from genmodels.errors import ConfigError
from genmodels.experiment import build
from genmodels.finetune import FinetuneConfig, apply
from genmodels.metrics.by_class import class_scores
from genmodels.models import GAN, VAE, EvalContext, Updater
from genmodels.models.conditional import (ConditionalBatchNorm, ProjectionDiscriminator, proportional_labels,
                                          split_head)
from genmodels.optim import OptimConfig

from conftest import cli, tiny_config

ARCHS = [dict(arch="mlp"), dict(arch="dcgan", spectral_norm=True), dict(arch="dcgan", loss="wgan-gp"),
         dict(arch="resnet", n_layers=2, spectral_norm=True, loss="hinge")]


def gan_config(tmp_path, *overrides):
    return tiny_config(tmp_path, "model.kind=gan", "model.arch=dcgan", "model.hidden=8", "model.latent_dim=8",
                       "model.n_classes=10", "model.judge_after=0", "data.limit=600", "train.batch_size=64",
                       "eval.fid_samples=200", "log.n_images=16", *overrides)


class Spy(GAN):
    """A GAN that records what each training step was given (the real model does the step)."""

    def training_step(self, batch, update, *labels):
        self.seen.append((batch.clone(), [y.clone() for y in labels]))
        return super().training_step(batch, update, *labels)


@pytest.mark.parametrize("n_classes", [0, 10])
def test_labels_reach_a_conditional_model_only_and_match_its_images(tmp_path, n_classes):
    cfg = gan_config(tmp_path, f"model.n_classes={n_classes}")
    data = load_data(cfg.data)
    model = Spy((1, 28, 28), arch="dcgan", hidden=8, latent_dim=8, n_classes=n_classes)
    model.seen = []
    build(cfg, data=data, model=model, quiet=True).fit()
    label_of = {bytes(img.numpy()): int(y) for img, y in zip(data.train.images, data.train.labels)}
    assert len(model.seen) == -(-len(data.train) // 64)
    for batch, labels in model.seen:
        if not n_classes:
            assert labels == []  # an unconditional model is never handed labels
        else:
            assert labels[0].tolist() == [label_of[bytes(img.numpy())] for img in batch]


def test_conditional_batchnorm_is_batchnorm_then_the_class_affine():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm(3, n_classes=4)
    x, y = torch.randn(8, 3, 5, 5), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    plain = nn.BatchNorm2d(3, affine=False)
    assert torch.allclose(cbn(x, y), plain(x), atol=1e-6)  # starts as BatchNorm's identity affine
    with torch.no_grad():
        cbn.scale.weight.uniform_(0.5, 2.0)
        cbn.shift.weight.normal_()
    normed = (x - x.mean((0, 2, 3), keepdim=True)) / (x.var((0, 2, 3), unbiased=False, keepdim=True) + 1e-5).sqrt()
    expected = normed * cbn.scale.weight[y][:, :, None, None] + cbn.shift.weight[y][:, :, None, None]
    assert torch.allclose(cbn(x, y), expected, atol=1e-5)
    flat = torch.randn(8, 3)  # an MLP generator's (B, F) activations
    mean, var = flat.mean(0), flat.var(0, unbiased=False)
    assert torch.allclose(cbn(flat, y), (flat - mean) / (var + 1e-5).sqrt() * cbn.scale.weight[y]
                          + cbn.shift.weight[y], atol=1e-5)


def test_projection_discriminator_adds_the_class_inner_product():
    torch.manual_seed(0)
    features, head = split_head(nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 1)))
    d = ProjectionDiscriminator(features, head, n_classes=3)
    x, y = torch.randn(5, 1, 3, 4), torch.tensor([0, 1, 2, 1, 0])
    phi = features(x)
    assert torch.allclose(d(x, y), head(phi) + (d.embed.weight[y] * phi).sum(1, keepdim=True), atol=1e-6)
    d(x, torch.zeros(5, dtype=torch.long)).sum().backward()  # only class 0's vector is used, so only it moves
    grad = d.embed.weight.grad
    assert grad[0].abs().sum() > 0 and grad[1:].abs().sum() == 0


@pytest.mark.parametrize("kwargs", ARCHS, ids=lambda k: "-".join(str(v) for v in k.values()))
def test_every_gan_architecture_trains_and_samples_by_class(kwargs):
    torch.manual_seed(0)
    shape = (1, 28, 28) if kwargs["arch"] != "resnet" else (3, 32, 32)
    kwargs = {"n_layers": 2, **kwargs}
    if kwargs["arch"] == "resnet":
        kwargs["n_layers"] = 3
    model = GAN(shape, hidden=8, latent_dim=4, n_classes=3, **kwargs)
    update = Updater(model.configure_optimizers(OptimConfig(lr=2e-4, betas=(0.5, 0.999))))
    batch = torch.randint(0, 256, (6, *shape), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    embeds = [p.detach().clone() for n, p in model.discriminator.named_parameters() if "embed" in n]
    for _ in range(2):
        losses = model.training_step(batch, update, labels)
        assert all(torch.isfinite(v) for v in losses.values())
    after = [p for n, p in model.discriminator.named_parameters() if "embed" in n]
    assert embeds and any(not torch.equal(a, b) for a, b in zip(embeds, after))  # the projection trains
    with pytest.raises(ValueError, match="needs each image's label"):
        model.training_step(batch, update)
    noise = [torch.Generator().manual_seed(1) for _ in range(3)]
    per_class = [model.sample(4, noise[k], labels=torch.full((4,), k)) for k in range(3)]
    assert all(s.shape == (4, *shape) and 0 <= s.min() and s.max() <= 1 for s in per_class)
    assert not torch.allclose(per_class[0], per_class[1])  # same noise, other class: other images
    assert torch.equal(model.sample(6, torch.Generator().manual_seed(1)),  # by default the classes in turn
                       model.sample(6, torch.Generator().manual_seed(1), labels=torch.tensor([0, 1, 2, 0, 1, 2])))


def test_unconditional_networks_keep_their_layout():
    """n_classes=0 builds what the toolkit always built: checkpoints of earlier runs still load."""
    for arch in ("mlp", "dcgan"):
        keys = set(GAN((1, 28, 28), arch=arch, hidden=8, latent_dim=4).state_dict())
        assert not any("embed" in k or "features." in k for k in keys)
        assert any(k.startswith("discriminator.") and k.endswith("weight") for k in keys)
    resnet = set(GAN((3, 32, 32), arch="resnet", n_layers=3, hidden=8, latent_dim=4).state_dict())
    assert "generator.blocks.0.norm1.weight" in resnet and not any("embed" in k for k in resnet)


def test_conditional_vae_uses_the_label(tmp_path):
    cfg = tiny_config(tmp_path, "data.limit=1000")
    data = load_data(cfg.data)
    torch.manual_seed(0)
    for arch in ("mlp", "conv"):
        vae = VAE((1, 28, 28), arch=arch, hidden=32, latent_dim=2, n_layers=2 if arch == "conv" else 1,
                  n_classes=10)
        update = Updater(vae.configure_optimizers(OptimConfig(lr=2e-3)))
        for epoch in range(4 if arch == "mlp" else 2):
            for i in range(0, len(data.train), 100):
                vae.train().training_step(data.train.images[i : i + 100], update, data.train.labels[i : i + 100])
        vae.eval()
        right = vae.evaluate(data.heldout.images.split(50), EvalContext(torch.Generator().manual_seed(0),
                                                                          labels=data.heldout.labels))
        wrong = vae.evaluate(data.heldout.images.split(50), EvalContext(torch.Generator().manual_seed(0),
                                                                          labels=(data.heldout.labels + 1) % 10))
        # log p(x | y) with the image's own class is higher than with another's: the label is used
        assert right["neg_elbo"] < wrong["neg_elbo"] - 1.0, (arch, right, wrong)
        sevens = vae.sample(8, torch.Generator().manual_seed(0), labels=torch.full((8,), 7))
        ones = vae.sample(8, torch.Generator().manual_seed(0), labels=torch.full((8,), 1))
        assert sevens.shape == (8, 1, 28, 28) and not torch.allclose(sevens, ones)


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid's formula: scipy's sqrtm of the covariance product."""
    mu1, mu2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_intra_fid_and_class_accuracy_against_references():
    rng = np.random.default_rng(0)
    d, classes = 4, 3
    real = [rng.normal(k, 1.0, (300, d)) for k in range(classes)]
    fake = [rng.normal(k + 0.3 * k, 1.0 + 0.1 * k, (200, d)) for k in range(classes)]
    real_f, fake_f = torch.tensor(np.concatenate(real)), torch.tensor(np.concatenate(fake))
    real_y, fake_y = torch.arange(classes).repeat_interleave(300), torch.arange(classes).repeat_interleave(200)
    expected = np.mean([reference_fid(r, f) for r, f in zip(real, fake)])

    def logits(features):  # "class k" when the first feature is nearest k; known answers per class
        return -(features[:, :1] - torch.arange(classes, dtype=features.dtype)) ** 2

    out = class_scores(real_f, real_y, fake_f, fake_y, logits)
    assert out["intra_fid"] == pytest.approx(expected, rel=1e-6)
    nearest = [float((np.abs(f[:, 0:1] - np.arange(classes)).argmin(1) == k).mean()) for k, f in enumerate(fake)]
    assert out["class_accuracy"] == pytest.approx(np.mean(nearest))
    assert out["class_accuracy_min"] == pytest.approx(min(nearest))
    assert "class_accuracy" not in class_scores(real_f, real_y, fake_f, fake_y)  # no labelled classifier


def test_the_samples_follow_the_split_class_mix():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    picked = proportional_labels(labels[torch.randperm(100)], 1000)
    assert torch.bincount(picked).tolist() == [500, 300, 200]


def test_a_conditional_run_through_the_cli(tmp_path):
    runs = tmp_path / "runs"
    code, _, err = cli("train", "experiments/gan_mnist.yaml", "--name", "c", "--set", f"log.runs_dir={runs}",
                       "model.n_classes=10", "model.hidden=8", "model.latent_dim=8", "model.judge_after=0",
                       "data.limit=600", "train.epochs=1", "eval.fid_samples=200", "log.n_images=16")
    assert code == 0, err
    events = EventAccumulator(str(runs / "c"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert "samples/by_class" in events.Tags()["images"]
    for tag in ("heldout/intra_fid", "heldout/class_accuracy", "heldout/class_accuracy_min"):
        assert tag in events.Tags()["scalars"], tag
    grid = events.Images("samples/by_class")[-1]
    assert (grid.width - 2) // 30 == 10 and (grid.height - 2) // 30 == 10  # 10 classes x 10 samples of 28 px
    out = tmp_path / "sevens.png"
    assert cli("sample", str(runs / "c"), "--class", "7", "-n", "8", "-o", str(out))[0] == 0
    assert Image.open(out).size[0] > 28
    code, _, err = cli("sample", str(runs / "c"), "--class", "10", "-o", str(out))
    assert code == 2 and err.strip().count("\n") == 0 and "--class: expected a class from 0 to 9" in err
    code, _, err = cli("eval", str(runs / "c"), "--split", "test")
    assert code == 0, err
    report = json.loads((runs / "c" / "eval_test.json").read_text())["metrics"]
    assert 0.0 <= report["class_accuracy_min"] <= report["class_accuracy"] <= 1.0 and report["intra_fid"] > 0


def test_bad_labels_are_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"model.n_classes: 5 classes \(labels 0 to 4\), but data 'mnist' has "
                                          r"labels 0 to 9"):
        build(gan_config(tmp_path, "model.n_classes=5"), quiet=True)
    code, _, err = cli("train", "experiments/gan_mnist.yaml", "--set", f"log.runs_dir={tmp_path}", "model.n_classes=3")
    assert code == 2 and "model.n_classes" in err and not (tmp_path / "gan_mnist").exists()
    with pytest.raises(ConfigError, match="one class only"):
        build(gan_config(tmp_path, "data.classes=[3]"), quiet=True)
    with pytest.raises(ConfigError, match="needs the labelled classifier"):
        build(gan_config(tmp_path, "train.monitor=class_accuracy", "eval.features=contrastive"), quiet=True)


def test_frozen_conditional_blocks_stay_bitwise_unchanged():
    torch.manual_seed(0)
    model = GAN((1, 28, 28), arch="dcgan", hidden=8, latent_dim=4, n_classes=3)
    apply(model, "gan", FinetuneConfig(source="unused: weights kept", freeze_g_blocks=1, freeze_d_blocks=1), None, "")
    frozen = {n: t.clone() for n, t in model.state_dict().items()
              if n.startswith(("generator.0.", "generator.1.", "generator.2.", "discriminator.features.0."))}
    assert any("scale" in n for n in frozen) and any("running_mean" in n for n in frozen)
    update = Updater(model.configure_optimizers(OptimConfig(lr=1e-2)))
    batch = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    for _ in range(3):
        model.train().training_step(batch, update, torch.tensor([0, 1, 2, 0, 1, 2]))
    now = model.state_dict()
    assert all(torch.equal(now[n], t) for n, t in frozen.items())
