"""genmodels: train, tune and fine-tune generative image models with one training loop.

The package root is light on purpose: `import genmodels` (or `genmodels.models`) loads the
models and their configs, not the training loop, TensorBoard or Optuna. Runs are assembled in
`genmodels.experiment`:

    from genmodels import load_config
    from genmodels.experiment import build
    build(load_config("experiments/vae_mnist.yaml")).fit()
"""

from genmodels.config import Config, load_config
from genmodels.models import GAN, MODELS, VAE, build_model

__all__ = ["Config", "GAN", "MODELS", "VAE", "build_model", "load_config"]
__version__ = "0.1.0"
