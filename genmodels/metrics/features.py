"""Feature extractors for FID/KID/precision-recall.

Inception weights cannot be assumed downloadable, so the default extractor is a small CNN
classifier the toolkit trains itself on the dataset's training split (the held-out split of the
default split seed and the test split are never seen), deterministically from a seed. It is
cached on disk with its test accuracy beside it; FID with such a classifier is the usual
practice for MNIST-like data. Inception is used only when asked for and its weights are on disk.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from genmodels.checkpoint import load_tensors, load_weights, save_tensors
from genmodels.data import DATASETS, find_dataset, heldout_split, load_raw, take
from genmodels.errors import UserError
from genmodels.files import write_json
from genmodels.models.base import to_unit

CLASSIFIER_VERSION = 1


class ClassifierNet(nn.Module):
    """Three conv stages (16, 32, 64 channels, BatchNorm, max-pooling) and a 128-d feature layer
    before the class head: ~4 MFLOP per 28x28 image, so it trains in about a minute on a CPU."""

    def __init__(self, channels: int = 1, n_classes: int = 10, feature_dim: int = 128):
        super().__init__()

        def stage(a: int, b: int) -> list[nn.Module]:
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]

        self.body = nn.Sequential(
            *stage(channels, 16), nn.MaxPool2d(2),
            *stage(16, 32), nn.MaxPool2d(2),
            *stage(32, 64), nn.AdaptiveAvgPool2d(3), nn.Flatten(),  # 3x3 keeps where strokes are
            nn.Linear(64 * 9, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class FeatureExtractor(nn.Module):
    """Maps images in [0, 1], (B, C, H, W), to features (B, D). `name` goes next to every number."""

    name: str
    dim: int


class ClassifierFeatures(FeatureExtractor):
    def __init__(self, net: ClassifierNet, name: str, info: dict):
        super().__init__()
        self.net = net.eval()
        self.name = name
        self.info = info
        self.dim = net.head.in_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net.features(images)


# --- where classifiers live ---------------------------------------------------------------


def cache_dirs(data_root: str | None = None, dataset: str | None = None) -> list[Path]:
    """$GENMODELS_CACHE/features when set (and nothing else); otherwise <data root>/features,
    then ~/.cache/genmodels/features."""
    if os.environ.get("GENMODELS_CACHE"):
        return [Path(os.environ["GENMODELS_CACHE"]).expanduser() / "features"]
    dirs = []
    if dataset:
        paths, _ = find_dataset(dataset, data_root)
        if paths:
            # <root>/<dataset>/train-images... -> <root>/features
            dirs.append(paths["train"][0].parent.parent / "features")
    dirs.append(Path.home() / ".cache" / "genmodels" / "features")
    return list(dict.fromkeys(dirs))


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def classifier_name(dataset: str, split_seed: int = 0, heldout_fraction: float = 0.1) -> str:
    return f"classifier-{dataset}-split{split_seed}-{heldout_fraction:g}-v{CLASSIFIER_VERSION}"


# --- training -----------------------------------------------------------------------------


def _shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 2) -> torch.Tensor:
    """Random translations of up to max_shift pixels: cheap augmentation that buys ~0.5% accuracy."""
    padded = F.pad(x, [max_shift] * 4)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy : dy + x.shape[2], dx : dx + x.shape[3]]


@torch.no_grad()
def accuracy(net: ClassifierNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    net.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = net(to_unit(images[start : start + batch_size]))
        correct += (logits.argmax(1) == labels[start : start + batch_size]).sum().item()
    return correct / len(images)


def train_classifier(dataset: str, data_root: str | None = None, split_seed: int = 0,
                     heldout_fraction: float = 0.1, epochs: int = 12, batch_size: int = 64,
                     seed: int = 0, device: torch.device | str = "cpu", quiet: bool = False
                     ) -> tuple[ClassifierNet, dict]:
    """Train the feature classifier on the training split minus the held-out split that runs with
    `split_seed`/`heldout_fraction` use, so FID on that held-out split never scores seen images."""
    # Own RNG streams: training this on demand, mid-run, must not shift the run's random numbers;
    # and gradients on, since on demand means from inside a model's no_grad evaluation.
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        return _train_classifier(dataset, data_root, split_seed, heldout_fraction, epochs, batch_size,
                                 seed, device, quiet)


def _train_classifier(dataset: str, data_root: str | None, split_seed: int, heldout_fraction: float,
                      epochs: int, batch_size: int, seed: int, device: torch.device | str, quiet: bool
                      ) -> tuple[ClassifierNet, dict]:
    raw = load_raw(dataset, data_root)
    train_idx, _ = heldout_split(len(raw["train"]), heldout_fraction, split_seed)
    train = raw["train"].subset(train_idx).to(device)
    test = raw["test"].to(device)
    torch.manual_seed(seed)
    net = ClassifierNet(channels=train.images.shape[1], n_classes=int(raw["train"].labels.max()) + 1).to(device)
    steps = epochs * -(-len(train) // batch_size)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    bar = tqdm(total=steps, desc=f"feature classifier ({dataset})", leave=False,
               disable=quiet or not os.isatty(2))
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(train), generator=generator).to(device)
        for i in range(0, len(train), batch_size):
            idx = perm[i : i + batch_size]
            x = _shift(to_unit(take(train.images, idx)), generator)
            loss = F.cross_entropy(net(x), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
    bar.close()
    info = {
        "name": classifier_name(dataset, split_seed, heldout_fraction),
        "dataset": dataset,
        "split_seed": split_seed,
        "heldout_fraction": heldout_fraction,
        "train_images": len(train),
        "epochs": epochs,
        "seed": seed,
        "test_accuracy": accuracy(net, test.images, test.labels),
        "train_seconds": round(time.perf_counter() - start, 1),
        "feature_dim": net.head.in_features,
        "torch": str(torch.__version__),  # TorchVersion is not loadable with weights_only
    }
    return net.cpu(), info


def load_classifier(dataset: str, data_root: str | None = None, split_seed: int = 0,
                    heldout_fraction: float = 0.1, device: torch.device | str = "cpu",
                    train_if_missing: bool = True, quiet: bool = False) -> ClassifierFeatures:
    """The cached classifier for (dataset, split); trained and cached first if there is none."""
    name = classifier_name(dataset, split_seed, heldout_fraction)
    dirs = cache_dirs(data_root, dataset)
    for folder in dirs:
        path = folder / f"{name}.pt"
        if path.is_file():
            state = load_tensors(path, {"model": dict, "shape": dict, "info": dict})
            with torch.random.fork_rng(devices=[]):  # the throw-away random init must not use the run's RNG
                net = ClassifierNet(**state["shape"])
            load_weights(net, state["model"], str(path))
            return ClassifierFeatures(net.to(device), name, state["info"])
    if not train_if_missing:
        raise UserError(f"no feature classifier {name} (looked in {', '.join(map(str, dirs))}); "
                        f"run: genmodels features train --dataset {dataset}")
    net, info = train_classifier(dataset, data_root, split_seed, heldout_fraction, device=device, quiet=quiet)
    save_classifier(net, info, dirs)
    if not quiet:
        print(f"feature classifier {name}: test accuracy {info['test_accuracy']:.4f}", flush=True)
    return ClassifierFeatures(net.to(device), name, info)


def save_classifier(net: ClassifierNet, info: dict, dirs: list[Path]) -> Path:
    folder = next((d for d in dirs if _writable(d)), None)
    if folder is None:
        raise UserError(f"no writable folder for the feature classifier (tried {', '.join(map(str, dirs))}); "
                        f"set GENMODELS_CACHE")
    shape = {"channels": net.body[0].in_channels, "n_classes": net.head.out_features,
             "feature_dim": net.head.in_features}
    path = folder / f"{info['name']}.pt"
    save_tensors(path, {"model": net.state_dict(), "shape": shape, "info": info})
    write_json(path.with_suffix(".json"), info)
    return path


# --- Inception, only from local weights ---------------------------------------------------

PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
TORCHVISION_WEIGHTS = "inception_v3_google-0cc3c7bd.pth"


class InceptionFeatures(FeatureExtractor):
    """2048-d pool features of Inception-v3, from weights already on disk (never downloaded)."""

    def __init__(self, net: nn.Module, name: str, normalize: bool):
        super().__init__()
        self.net = net.eval()
        self.name = name
        self.dim = 2048
        self.normalize = normalize

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        if self.normalize:  # torchvision's weights expect ImageNet's mean and std
            mean = x.new_tensor([0.485, 0.456, 0.406])[:, None, None]
            std = x.new_tensor([0.229, 0.224, 0.225])[:, None, None]
            x = (x - mean) / std
        else:  # TensorFlow's FID network expects [-1, 1]
            x = 2 * x - 1
        out = self.net(x)
        return (out[0] if isinstance(out, (list, tuple)) else out).flatten(1)


def _fid_inception() -> nn.Module:
    """pytorch-fid's Inception-v3 architecture (TensorFlow's FID network), without its weights.

    pytorch-fid's own constructor loads the weights through torch.hub, which unpickles the file
    with weights_only=False, so a crafted file in the hub folder would run code: we build the
    same network and load the weights ourselves, refusing anything but tensors.
    """
    from pytorch_fid import inception as pfi
    from torchvision.models.inception import Inception3

    net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    blocks = {"Mixed_5b": pfi.FIDInceptionA(192, pool_features=32), "Mixed_5c": pfi.FIDInceptionA(256, pool_features=64),
              "Mixed_5d": pfi.FIDInceptionA(288, pool_features=64), "Mixed_6b": pfi.FIDInceptionC(768, channels_7x7=128),
              "Mixed_6c": pfi.FIDInceptionC(768, channels_7x7=160), "Mixed_6d": pfi.FIDInceptionC(768, channels_7x7=160),
              "Mixed_6e": pfi.FIDInceptionC(768, channels_7x7=192), "Mixed_7b": pfi.FIDInceptionE_1(1280),
              "Mixed_7c": pfi.FIDInceptionE_2(2048)}
    for name, block in blocks.items():
        setattr(net, name, block)
    return net


def _torchvision_inception() -> nn.Module:
    from torchvision.models import inception_v3

    return inception_v3(weights=None, aux_logits=True, init_weights=False)


# file in torch's hub folder -> (builder, name reported with every number, ImageNet normalisation?)
INCEPTION_WEIGHTS = {
    PYTORCH_FID_WEIGHTS: (_fid_inception, "inception-pytorch-fid", False),
    TORCHVISION_WEIGHTS: (_torchvision_inception, "inception-torchvision", True),
}


def load_inception(device: torch.device | str = "cpu") -> InceptionFeatures:
    """Inception-v3 from weights already in torch's hub folder (never downloaded), loaded with
    weights_only=True."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    for file, (build, name, normalize) in INCEPTION_WEIGHTS.items():
        path = hub / file
        if not path.is_file():
            continue
        if build is _fid_inception and importlib.util.find_spec("pytorch_fid") is None:
            raise UserError(f"eval.features: {path} needs the pytorch-fid package (pip install pytorch-fid)")
        with torch.random.fork_rng(devices=[]):
            net = build()
        state = load_tensors(path, {})
        load_weights(net, state, str(path))
        net.fc = nn.Identity()
        return InceptionFeatures(net.to(device), name, normalize=normalize)
    tried = ", ".join(str(hub / f) for f in INCEPTION_WEIGHTS)
    raise UserError(f"eval.features: 'inception' needs Inception-v3 weights on disk (looked for {tried}); "
                    f"copy one there, or use features: classifier")


def load_extractor(kind: str, dataset: str, data_root: str | None = None, split_seed: int = 0,
                   heldout_fraction: float = 0.1, device: torch.device | str = "cpu",
                   quiet: bool = False) -> FeatureExtractor:
    if kind == "inception":
        return load_inception(device)
    if kind == "classifier":
        if dataset not in DATASETS:
            raise UserError(f"eval.features: the classifier extractor is trained for {', '.join(DATASETS)}; "
                            f"for '{dataset}' use features: inception (weights on disk)")
        return load_classifier(dataset, data_root, split_seed, heldout_fraction, device, quiet=quiet)
    raise UserError(f"eval.features: unknown extractor '{kind}' (expected classifier or inception)")


@torch.no_grad()
def extract(extractor: FeatureExtractor, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Features (N, D) float64 on CPU for uint8 images or floats in [0, 1]."""
    extractor.eval()
    device = next(extractor.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(device)
        x = to_unit(x) if x.dtype == torch.uint8 else x.float()
        out.append(extractor(x).double().cpu())
    return torch.cat(out)
