"""What `train.compile` buys: training steps per second with the networks compiled by torch.compile
(inductor) against eager PyTorch, for the MLP VAE of `make demo`, the DCGAN recipe and the DCGAN recipe with
WGAN-GP (whose gradient penalty stays eager: a compiled graph has no double backward), in fp32 and, on a CPU
with bf16 matrix units, bf16.

Each variant trains its own copy of one model on one batch of real MNIST images: the first steps (where
the compiler runs) are timed apart as the compile cost, then eager and compiled copies alternate timed
rounds, so that load on the machine falls on both alike; the best round counts. Writes
benchmarks/results/compile_speed.json. A documented run, not CI, a few minutes on 2 CPU cores:

    GENMODELS_DATA=../shared/datasets python benchmarks/compile_speed.py [--rounds 3] [--steps 20]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from common import machine, write_result
from genmodels.config import Config, load_config
from genmodels.data import load_data
from genmodels.models import GenerativeModel, build_model
from genmodels.models.base import Updater
from genmodels.precision import bf16_units
from genmodels.runtime import setup_process

ROOT = Path(__file__).resolve().parents[1] / "experiments"
RECIPES = {
    "vae_mlp": (ROOT / "vae_mnist.yaml", []),
    "dcgan": (ROOT / "dcgan_fashion.yaml", ["data.name=mnist"]),
    "dcgan_wgan_gp": (ROOT / "dcgan_fashion.yaml", ["data.name=mnist", "model.loss=wgan-gp",
                                                    "model.spectral_norm=false", "model.n_critic=5"]),
}


class Stepper:
    """One model copy with its own optimizers, compiled or not, stepping on one batch."""

    def __init__(self, model: GenerativeModel, cfg: Config, batch: torch.Tensor, precision: str, compiled: bool):
        self.model, self.batch = copy.deepcopy(model).train(), batch
        if compiled:
            self.model.compile_networks()
        self.updater = Updater(self.model.configure_optimizers(cfg.optim), batch.device, precision)

    def seconds(self, steps: int) -> float:
        start = time.perf_counter()
        for _ in range(steps):
            self.model.training_step(self.batch, self.updater)
        return time.perf_counter() - start


def measure(recipe: str, precision: str, rounds: int, steps: int) -> dict[str, float]:
    path, overrides = RECIPES[recipe]
    cfg = load_config(path, overrides)
    data = load_data(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.image_shape)
    batch = data.train.images[: cfg.train.batch_size]
    warm = max(4, 2 * getattr(model, "n_critic", 1))  # every kind of step (a GAN's G step too) compiled once
    eager, compiled = (Stepper(model, cfg, batch, precision, c) for c in (False, True))
    first = {"eager": eager.seconds(warm), "compiled": compiled.seconds(warm)}
    best = {"eager": float("inf"), "compiled": float("inf")}
    for _ in range(rounds):
        for name, stepper in (("eager", eager), ("compiled", compiled)):
            best[name] = min(best[name], stepper.seconds(steps) / steps)
    row = {"batch_size": cfg.train.batch_size, "eager_step_s": best["eager"], "compiled_step_s": best["compiled"],
           "speedup": best["eager"] / best["compiled"],
           "compile_s": first["compiled"] - warm * best["compiled"],  # the first steps' excess over steady state
           "images_per_s": {k: cfg.train.batch_size / v for k, v in best.items()}}
    print(f"{recipe:<14} {precision}: eager {1000 * best['eager']:.1f} ms/step, compiled {1000 * best['compiled']:.1f} "
          f"ms/step: {row['speedup']:.2f}x; compiling took {row['compile_s']:.0f}s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    setup_process()
    precisions = ["fp32"] + (["bf16"] if bf16_units() else [])
    out = {"machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "rounds": args.rounds, "steps": args.steps,
           "results": {}}
    for recipe in args.only:
        for precision in precisions:
            out["results"][f"{recipe}/{precision}"] = measure(recipe, precision, args.rounds, args.steps)
    print(f"machine: {out['machine']}, {out['threads']} threads, torch {out['torch']}")
    write_result("compile_speed", out)


if __name__ == "__main__":
    main()
