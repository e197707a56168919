"""GAN training throughput: the pytorch/examples DCGAN loop vs `genmodels train`, same nets, same
images, side by side in one process.

Both train genmodels' DCGAN networks (2 blocks, 64/128 channels, latent 100) with the
non-saturating loss, Adam 2e-4 / beta1 0.5, batch 64, no spectral norm, no EMA, for --images
Fashion-MNIST training images, each timed end to end: the examples loop from building its
dataset (benchmarks/examples_dcgan.py: DataLoader with main.py's default 2 workers, and with 0
workers as a second, stronger baseline on a 2-core machine); genmodels from `build` (data
loading) through `fit`, which includes its held-out evaluation (FID of 5,000 samples, the
feature classifier loaded beforehand) and checkpoints. Rounds alternate their order. Beside the
rates: the FLOPs of one training step of each loop, counted by torch, and the GFLOP/s each loop
achieves against a float32 matmul peak measured in the same run; the ratio of the two FLOP counts
is what doing less work can give when both run their convolutions equally fast.

Then precision: the DCGAN recipe (dcgan_fashion.yaml) and the ResNet GAN recipe at 32 px
(sngan_cifar10.yaml, on Fashion-MNIST padded to 32x32 and repeated to 3 channels), each timed
for --precision-steps training steps in fp32 and bf16 autocast, interleaved, best of the rounds
(genmodels.precision.measure, the measurement `auto` makes, run longer), with
this CPU's bf16 matrix units and what `train.precision: auto` chose for each (measured afresh,
in an empty cache). Writes benchmarks/results/gan_throughput.json.

    GENMODELS_DATA=../shared/datasets python benchmarks/gan_throughput.py [--images 19200] [--rounds 3]
        [--precision-steps 20] [--only precision]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import examples_dcgan
from common import RESULTS, machine, matmul_peak_gflops, torchvision_root, write_result
from genmodels.config import Config, load_config
from genmodels.data import DataConfig, DataSplits, Split, load_data
from genmodels.experiment import build
from genmodels.models import Updater, build_model
from genmodels.precision import bf16_units, choose_precision, measure
from genmodels.runtime import setup_process

ROOT = Path(__file__).resolve().parents[1]


def genmodels_config(runs: Path, data_root: Path, images: int) -> Config:
    """experiments/dcgan_fashion.yaml's networks and optimiser, with the examples' loss and
    without spectral norm or EMA, for `images` training images."""
    return Config.model_validate({
        "name": "throughput", "data": {"name": "fashion-mnist", "root": str(data_root)},
        "model": {"kind": "gan", "arch": "dcgan", "n_layers": 2, "hidden": 64, "latent_dim": 100, "loss": "ns"},
        "optim": {"lr": 2e-4, "betas": [0.5, 0.999]},
        "train": {"epochs": 100, "batch_size": 64, "max_images": images, "precision": "fp32"},  # as the examples
        "eval": {"fid_samples": 5000}, "log": {"runs_dir": str(runs), "n_images": 64},
    })


def genmodels_run(cfg: Config) -> float:
    start = time.perf_counter()
    trainer = build(cfg, quiet=True, run_dir=Path(cfg.log.runs_dir) / f"run-{time.monotonic_ns()}")
    trainer.fit()
    return time.perf_counter() - start


def flops_per_image(batch_size: int = 64) -> dict[str, float]:
    """FLOPs of one training step per image, counted by torch: the examples loop's `step` and
    genmodels' `training_step` on the same networks (a step after the first, with optimiser state)."""
    gan = examples_dcgan.networks(0)
    opt_d, opt_g = examples_dcgan.optimizers(gan)
    real = torch.rand(batch_size, 1, 28, 28) * 2 - 1
    model = examples_dcgan.networks(0)
    update = Updater(model.configure_optimizers(genmodels_config(Path("."), Path("."), 1).optim))
    batch = torch.randint(0, 256, (batch_size, 1, 28, 28), dtype=torch.uint8)
    steps = {"examples": lambda: examples_dcgan.step(gan.generator, gan.discriminator, opt_d, opt_g, real,
                                                        gan.latent_dim),
             "genmodels": lambda: model.training_step(batch, update)}
    out = {}
    for name, run_step in steps.items():
        run_step()
        with FlopCounterMode(display=False) as counter:
            run_step()
        out[name] = counter.get_total_flops() / batch_size
    return out


def precision_speeds(steps: int, rounds: int, cache: Path) -> dict[str, dict]:
    """Images/s of a training step in fp32 and bf16 for the DCGAN and the 32 px ResNet GAN
    recipes, and what `precision: auto` chose for each in an empty cache."""
    print(f"bf16 matrix units: {', '.join(bf16_units()) or 'none'}", flush=True)
    fashion = load_data(DataConfig(name="fashion-mnist"))
    padded = F.pad(fashion.train.images[:4096], (2, 2, 2, 2)).repeat(1, 3, 1, 1)
    recipes = {"dcgan (dcgan_fashion.yaml)": ("dcgan_fashion.yaml", fashion.train.images[:4096]),
               "resnet 32px (sngan_cifar10.yaml)": ("sngan_cifar10.yaml", padded)}
    os.environ["GENMODELS_CACHE"] = str(cache)
    out = {}
    for name, (recipe, images) in recipes.items():
        cfg = load_config(ROOT / "experiments" / recipe, ["train.precision=auto"])
        model = build_model(cfg.model, tuple(images.shape[1:]))
        batch = images[: cfg.train.batch_size]
        seconds = measure(model, cfg, batch, budget_s=float("inf"), rounds=rounds, steps=steps)
        rate = {k: cfg.train.batch_size / v for k, v in seconds.items()}
        split = Split(images, torch.zeros(len(images), dtype=torch.int64))
        chosen = choose_precision(cfg, model, DataSplits(split, split, split, "x"), torch.device("cpu"))
        out[name] = {"images_per_s": {k: round(v, 1) for k, v in rate.items()},
                     "bf16_over_fp32": round(rate["bf16"] / rate["fp32"], 3), "auto_chose": chosen.train.precision}
        print(f"{name}: fp32 {rate['fp32']:.0f} images/s, bf16 {rate['bf16']:.0f} images/s "
              f"({rate['bf16'] / rate['fp32']:.2f}x); precision auto chose {chosen.train.precision}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=19_200, help="training images per run (300 steps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision-steps", type=int, default=20, help="training steps per precision timing")
    parser.add_argument("--only", choices=["precision"], help="only the precision part, merged into the results file")
    args = parser.parse_args()
    setup_process()
    if args.only == "precision":
        path = RESULTS / "gan_throughput.json"
        out = json.loads(path.read_text()) if path.exists() else {}
        with tempfile.TemporaryDirectory() as tmp_dir:
            out["precision"] = precision_speeds(args.precision_steps, args.rounds, Path(tmp_dir) / "cache")
        out |= {"bf16_units": bf16_units(), "precision_machine": machine()}
        write_result("gan_throughput", out)
        return
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        tv_root = torchvision_root(tmp / "tv")
        cfg = genmodels_config(tmp / "runs", tv_root, args.images)
        build(cfg, quiet=True).scorer.extractor  # the feature classifier: trained once, not timed
        variants = {
            "examples (2 workers)": lambda r: examples_dcgan.train(tv_root, args.images, r, tmp / "ex", workers=2)[1],
            "examples (0 workers)": lambda r: examples_dcgan.train(tv_root, args.images, r, tmp / "ex", workers=0)[1],
            "genmodels": lambda r: genmodels_run(cfg),
        }
        rates: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(args.rounds):
            for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
                seconds = variants[name](r)
                rates[name].append(args.images / seconds)
                print(f"round {r + 1}/{args.rounds}  {name:<22} {args.images} images in {seconds:6.1f}s "
                      f"= {args.images / seconds:6.0f} images/s", flush=True)
        precision = precision_speeds(args.precision_steps, args.rounds, tmp / "cache")
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios = {k: med["genmodels"] / v for k, v in med.items() if k != "genmodels"}
    flops, peak = flops_per_image(), matmul_peak_gflops(torch.device("cpu"))
    achieved = {k: v * flops["genmodels" if k == "genmodels" else "examples"] / 1e9 for k, v in med.items()}
    print()
    for name, value in med.items():
        print(f"{name:<22}: {value:6.0f} images/s, {achieved[name]:5.1f} GFLOP/s ({achieved[name] / peak:.0%} of "
              f"the {peak:.0f} GFLOP/s matmul peak)")
    for name, ratio in ratios.items():
        print(f"genmodels over {name}: {ratio:.2f}x")
    print(f"FLOPs per image: examples step {flops['examples'] / 1e6:.1f} M, genmodels step "
          f"{flops['genmodels'] / 1e6:.1f} M: less work gives {flops['examples'] / flops['genmodels']:.2f}x")
    write_result("gan_throughput", {
        "images_per_run": args.images, "rounds": args.rounds, "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__,
        "images_per_s": {k: round(v, 1) for k, v in med.items()},
        "images_per_s_all": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "ratio_genmodels_over": {k: round(v, 3) for k, v in ratios.items()}, "target_ratio": 2.0,
        "mflops_per_image": {k: round(v / 1e6, 2) for k, v in flops.items()},
        "flop_ratio_examples_over_genmodels": round(flops["examples"] / flops["genmodels"], 3),
        "achieved_gflops": {k: round(v, 1) for k, v in achieved.items()}, "matmul_peak_gflops_fp32": round(peak, 1),
        "bf16_units": bf16_units(), "precision": precision,
    })


if __name__ == "__main__":
    main()
