"""genmodels: train, tune and fine-tune generative image models with one training loop.

The package root imports nothing, so `python -m genmodels` can answer Ctrl-C even while torch is
still loading. Import what you use from its module:

    from genmodels.config import load_config
    from genmodels.experiment import build
    from genmodels.models import GAN, VAE

    build(load_config("experiments/vae_mnist.yaml")).fit()
"""

__version__ = "0.1.0"
