"""Model registry: `model.kind` in a config -> class. A new family is a new module plus one line here."""

from __future__ import annotations

from genmodels.models.base import GenerativeModel
from genmodels.models.gan import GAN
from genmodels.models.vae import VAE

MODELS: dict[str, type[GenerativeModel]] = {"vae": VAE, "gan": GAN}


def build_model(cfg, image_shape: tuple[int, int, int]) -> GenerativeModel:
    """Build the model a config's `model` section describes, for images of `image_shape`."""
    return MODELS[cfg.kind].from_config(cfg, image_shape)


__all__ = ["GAN", "MODELS", "GenerativeModel", "VAE", "build_model"]
