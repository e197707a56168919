"""Inception-v3 features for FID: pytorch-fid's weights (fetched on first use when online, hash
checked) or torchvision's, from torch's hub folder, loaded without unpickling code."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genmodels.checkpoint import load_tensors, load_weights
from genmodels.errors import UserError
from genmodels.metrics.download import fetch
from genmodels.metrics.extractor import FeatureExtractor

PYTORCH_FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
TORCHVISION_WEIGHTS = "inception_v3_google-0cc3c7bd.pth"
# Where pytorch-fid publishes its weights; GENMODELS_INCEPTION_URL names a mirror of the same file.
PYTORCH_FID_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{PYTORCH_FID_WEIGHTS}"
PYTORCH_FID_SHA256 = "6726825d"  # the digest prefix in the file's published name


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
    blocks = {"Mixed_5b": pfi.FIDInceptionA(192, pool_features=32),
              "Mixed_5c": pfi.FIDInceptionA(256, pool_features=64),
              "Mixed_5d": pfi.FIDInceptionA(288, pool_features=64),
              "Mixed_6b": pfi.FIDInceptionC(768, channels_7x7=128),
              "Mixed_6c": pfi.FIDInceptionC(768, channels_7x7=160),
              "Mixed_6d": pfi.FIDInceptionC(768, channels_7x7=160),
              "Mixed_6e": pfi.FIDInceptionC(768, channels_7x7=192),
              "Mixed_7b": pfi.FIDInceptionE_1(1280), "Mixed_7c": pfi.FIDInceptionE_2(2048)}
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


def load_inception(device: torch.device | str = "cpu", download: bool = True) -> InceptionFeatures:
    """Inception-v3 from weights in torch's hub folder, loaded with weights_only=True; when there
    are none, pytorch-fid's are fetched there first (download=True), their SHA-256 checked."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    if download and not any((hub / f).is_file() for f in INCEPTION_WEIGHTS):
        url = os.environ.get("GENMODELS_INCEPTION_URL", PYTORCH_FID_URL)
        try:
            fetch(url, hub / PYTORCH_FID_WEIGHTS, PYTORCH_FID_SHA256)
        except UserError as exc:
            raise UserError(f"eval.features: 'inception' needs Inception-v3 weights, and fetching them failed: {exc}. "
                            f"Offline, copy {PYTORCH_FID_WEIGHTS} to {hub}, or use features: classifier") from None
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


