"""genmodels: train, tune and fine-tune generative image models with one training loop."""

from genmodels.config import Config, load_config
from genmodels.models import GAN, MODELS, VAE, build_model
from genmodels.train import Trainer

__all__ = ["Config", "GAN", "MODELS", "Trainer", "VAE", "build_model", "load_config"]
__version__ = "0.1.0"
