"""The model registry: `model.kind` in a config -> the family's class.

A new family is a module defining its config section and its class, plus one line here (or, from
outside the package, `MODELS["mine"] = Mine`): configs, tuning, fine-tuning and evaluation all
look families up in this dict when they run, not when they are imported.
"""

from __future__ import annotations

from genmodels.errors import ConfigError
from genmodels.images import to_unit
from genmodels.models.base import EvalContext, GenerativeModel, ModelSection, SampleScorer, Updater
from genmodels.models.gan import GAN, GANConfig
from genmodels.models.vae import VAE, VAEConfig

MODELS: dict[str, type[GenerativeModel]] = {"vae": VAE, "gan": GAN}


def model_class(kind: str) -> type[GenerativeModel]:
    if kind not in MODELS:
        raise ConfigError(f"model.kind: unknown model '{kind}' (expected one of {', '.join(MODELS)})")
    return MODELS[kind]


def build_model(cfg: ModelSection, image_shape: tuple[int, int, int]) -> GenerativeModel:
    """Build the model a config's `model` section describes, for images of `image_shape`; a shape
    the architecture cannot take is a one-line config error."""
    cls = model_class(cfg.kind)
    try:
        return cls.from_config(cfg, image_shape)
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None


__all__ = ["EvalContext", "GAN", "GANConfig", "GenerativeModel", "MODELS", "ModelSection", "SampleScorer",
           "Updater", "VAE", "VAEConfig", "build_model", "model_class", "to_unit"]
