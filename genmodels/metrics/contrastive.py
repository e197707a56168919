"""A label-free feature extractor for FID/KID/precision-recall, trained on the run's own images.

Most image sets have no labels, and Inception weights cannot be assumed on disk; so for any
dataset without the labelled classifier (an image folder, the colour datasets) the toolkit trains
a small encoder self-supervised, SimCLR-style (Chen et al. 2020): two random views of each image
(`augment.random_view`) must find each other among a batch's other views (the NT-Xent loss). It
trains on the training split minus the held-out split, so FID on the held-out and test splits
never scores an image it saw, deterministically from a seed, and is cached per (content of that
split, extractor version). Its 10-NN accuracy on the test split is stored beside it where the
dataset happens to have labels: a report, never used to train or choose it.

The encoder has the classifier's shape (three conv stages pooled to 64 x 3 x 3, a 128-d layer); the
loss reads a projection head on top, and FID the 576 pooled conv features beneath the 128-d layer:
as in SimCLR, the layers nearest the loss learn what the loss wants (which view is which) and the
ones further down describe the image (10-NN test accuracy on Fashion-MNIST after 2 epochs: 85.9%
from the pooled features, 83.5% from the 128-d layer; raw pixels 85.1%).
"""

from __future__ import annotations

import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genmodels.data import DataConfig, Split, load_data, take
from genmodels.files import exclusive
from genmodels.images import to_unit
from genmodels.metrics.augment import random_view
from genmodels.metrics.classifier import conv_body
from genmodels.metrics.extractor import FeatureExtractor, cache_dirs, extract, fingerprint, load_cached_net, \
    save_cached_net
from genmodels.metrics.knn import knn_accuracy

# 2: views without rotation, cut-out or pixel noise (an extractor trained to ignore them cannot
# see them in samples: with them, FID on MNIST did not rise with black rectangles or a swirl), and
# 10-NN accuracy rose too (Fashion-MNIST, 2 epochs: 85.9% -> 86.6%).
# 1: 5 epochs at batch 256, AdamW 2e-3 one-cycle, temperature 0.1. Fashion-MNIST's 54,000 images,
# 10-NN test accuracy of the pooled features: 85.9% after 2 epochs, 86.0% after 8 (316 s on 2 CPU
# cores); temperatures 0.2 and 0.5, stronger crops or a BatchNorm head: 85.6-85.9% after 2.
CONTRASTIVE_VERSION = 2
EPOCHS, BATCH_SIZE, LR, TEMPERATURE = 5, 256, 2e-3, 0.1
SECONDS_PER_IMAGE_PIXEL = 39 / (54_000 * 28 * 28)  # one epoch's cost, measured at 28x28 grey


class ContrastiveNet(nn.Module):
    def __init__(self, channels: int = 1, feature_dim: int = 128, projection_dim: int = 64):
        super().__init__()
        self.body = conv_body(channels, feature_dim)
        self.projection = nn.Sequential(nn.Linear(feature_dim, feature_dim), nn.ReLU(),
                                        nn.Linear(feature_dim, projection_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled conv features (B, 576) FID reads."""
        return self.body[:-2](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """What the loss reads: the projection of the 128-d layer."""
        return self.projection(self.body(x))


class ContrastiveFeatures(FeatureExtractor):
    """Images of another size or channel count than the training images are resized / made grey
    or colour first, so a fine-tuned run's samples can still be scored."""

    def __init__(self, net: ContrastiveNet, name: str, info: dict):
        super().__init__()
        self.net = net.eval().to(memory_format=torch.channels_last)
        self.name, self.info = name, info
        self.dim = net.body[-2].in_features
        self.shape = tuple(info["image_shape"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c, h, w = self.shape
        if images.shape[1] != c:
            images = images.mean(1, keepdim=True).expand(-1, c, -1, -1)  # grey, then as many channels
        if tuple(images.shape[2:]) != (h, w):
            images = F.interpolate(images, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return self.net.features(images.contiguous(memory_format=torch.channels_last))


def nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss for 2B projections, views i and i+B of one image: each must pick its twin out
    of the other 2B-1 by cosine similarity."""
    z = F.normalize(z, dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    b = len(z) // 2
    twins = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, twins)


def train_contrastive(train: Split, name: str, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
                      seed: int = 0, quiet: bool = False) -> ContrastiveNet:
    """The encoder trained on `train`'s images (on the CPU; its labels are not read)."""
    with torch.random.fork_rng(devices=[]), torch.enable_grad():  # on demand, mid-run: its own streams
        torch.manual_seed(seed)
        net = ContrastiveNet(channels=train.images.shape[1]).to(memory_format=torch.channels_last)
        batch_size = min(batch_size, len(train) // 2 * 2)
        steps_per_epoch = len(train) // batch_size
        opt = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=epochs * steps_per_epoch,
                                                    pct_start=0.1)
        g = torch.Generator().manual_seed(seed)
        terminal = not quiet and os.isatty(2)
        bar = tqdm(total=epochs * steps_per_epoch, desc=name, leave=False, disable=not terminal)
        start = time.perf_counter()
        for epoch in range(epochs):
            net.train()
            order = torch.randperm(len(train), generator=g)
            for i in range(steps_per_epoch):
                x = to_unit(take(train.images, order[i * batch_size : (i + 1) * batch_size]))
                views = torch.cat([random_view(x, g), random_view(x, g)]).contiguous(memory_format=torch.channels_last)
                loss = nt_xent(net(views), TEMPERATURE)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                bar.update()
            if not quiet and not terminal:  # a line per epoch where no bar can show
                print(f"{name}: epoch {epoch + 1}/{epochs}, loss {loss.item():.3f}, "
                      f"{time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
        bar.close()
    return net.eval()


def contrastive_name(dataset: str, train: Split) -> str:
    """Named for what it is, the dataset and the content of the split it learnt from."""
    return f"contrastive-{dataset}-{fingerprint(train.images)[:12]}-v{CONTRASTIVE_VERSION}"


def load_contrastive(data: DataConfig, device: torch.device | str = "cpu", quiet: bool = False,
                     image_shape: tuple[int, int, int] | None = None) -> ContrastiveFeatures:
    """The cached extractor for `data`'s training split minus its held-out split (every image of
    them: `limit` and `classes` do not change it); trained and cached first if there is none, by
    one process while the others wait for it."""
    splits = load_data(data.model_copy(update={"limit": None, "classes": None}), image_shape=image_shape)
    name = contrastive_name(data.name, splits.train)
    dirs = cache_dirs(data.root, data.name if data.name != "imagefolder" else None)
    with exclusive(dirs[0] / f"{name}.lock"):
        cached = load_cached_net(name, dirs, ContrastiveNet)
        if cached is not None:
            return ContrastiveFeatures(cached[0].to(device), name, cached[1])
        net, info = _train_and_report(splits.train, splits.test, name, data.name, quiet)
        save_cached_net(net, {"channels": info["image_shape"][0]}, info, dirs)
    return ContrastiveFeatures(net.to(device), name, info)


def _train_and_report(train: Split, test: Split, name: str, dataset: str, quiet: bool,
                      seed: int = 0) -> tuple[ContrastiveNet, dict]:
    c, h, w = train.images.shape[1:]
    if not quiet:
        minutes = EPOCHS * len(train) * c * h * w * SECONDS_PER_IMAGE_PIXEL / 60
        print(f"training the label-free feature extractor for FID on {len(train):,} training images of {dataset} "
              f"({c}x{h}x{w}), once: {EPOCHS} epochs, about {max(minutes, 0.1):.1f} min on 2 CPU cores; "
              f"it is cached for later runs", file=sys.stderr, flush=True)
    start = time.perf_counter()
    net = train_contrastive(train, name, seed=seed, quiet=quiet)
    info = {"name": name, "dataset": dataset, "method": f"SimCLR (NT-Xent, temperature {TEMPERATURE})",
            "train_images": len(train), "image_shape": [c, h, w], "epochs": EPOCHS, "batch_size": BATCH_SIZE,
            "seed": seed, "train_seconds": round(time.perf_counter() - start, 1), "torch": str(torch.__version__)}
    if _labelled(train) and _labelled(test):  # a report only: labels never trained or chose it
        features = ContrastiveFeatures(net, name, info)
        info["knn10_test_accuracy"] = round(knn_accuracy(extract(features, train.images), train.labels,
                                                         extract(features, test.images), test.labels), 4)
    if not quiet:
        known = f", 10-NN test accuracy {info['knn10_test_accuracy']:.4f}" if "knn10_test_accuracy" in info else ""
        print(f"feature extractor {name}: trained in {info['train_seconds']:.0f}s{known}", file=sys.stderr,
              flush=True)
    return net, info


def _labelled(split: Split) -> bool:
    return len(split) > 0 and bool((split.labels != split.labels[0]).any())
