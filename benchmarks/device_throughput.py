"""Training throughput of the toolkit's own recipes on one device, fp32 against bf16 autocast, in
one run: the MLP VAE of experiments/vae_mnist.yaml, the DCGAN of experiments/dcgan_fashion.yaml
and the 32 px ResNet GAN of experiments/sngan_cifar10.yaml (on a folder of 5,000 Fashion-MNIST
images padded to 32x32 colour: CIFAR-10 itself may not be on the machine).
Training steps are timed from the first step to the first evaluation (the FID extractor loads
after it); each (model, precision) pair runs `--rounds` times, alternating, and the median is kept.

    python benchmarks/device_throughput.py --device cuda          # what benchmarks/gpu_check.sh runs
    python benchmarks/device_throughput.py --device cpu --images 2000 --rounds 1

Writes benchmarks/results/device_throughput-<device type>.json with the device, torch version,
bf16 support and the fp32 matmul peak beside every figure.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from common import matmul_peak_gflops, write_result
from genmodels.callbacks import Callback
from genmodels.config import load_config
from genmodels.data import DataConfig, raw_splits
from genmodels.experiment import build
from genmodels.precision import bf16_units
from genmodels.runtime import setup_process

REPO = Path(__file__).resolve().parent.parent
RECIPES = {"vae": "experiments/vae_mnist.yaml", "dcgan": "experiments/dcgan_fashion.yaml",
           "resnet32": "experiments/sngan_cifar10.yaml"}


def colour_folder(folder: Path, n: int = 5000) -> list[str]:
    """n Fashion-MNIST training images padded to 32x32 RGB PNGs, and the overrides that train on them."""
    images = raw_splits(DataConfig(name="fashion-mnist"))["train"].images[:n]
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(torch.nn.functional.pad(image, (2, 2, 2, 2)) for image in images):
        Image.fromarray(image[0].numpy()).convert("RGB").save(folder / f"{i:05d}.png")
    return ["data.name=imagefolder", f"data.path={folder}", "data.image_size=32", "data.channels=3"]


class StepClock(Callback):
    """Seconds from the start of training to the first held-out evaluation."""

    def __init__(self) -> None:
        self.start, self.seconds = 0.0, None

    def on_fit_start(self, trainer) -> None:
        self._sync(trainer)
        self.start = time.perf_counter()

    def on_evaluation(self, trainer, metrics) -> None:
        if self.seconds is None:
            self.seconds = time.perf_counter() - self.start  # the evaluation ran after the last step

    @staticmethod
    def _sync(trainer) -> None:
        if trainer.model.device.type == "cuda":
            torch.cuda.synchronize()


def one_run(recipe: str, device: str, precision: str, images: int, runs_dir: Path, data: list[str]) -> float:
    cfg = load_config(REPO / recipe, [*data, f"train.device={device}", f"train.precision={precision}",
                                      f"train.max_images={images}", f"train.eval_every_images={images}",
                                      "train.patience=null", "eval.fid_samples=100", f"log.runs_dir={runs_dir}",
                                      f"name={Path(recipe).stem}-{precision}-{time.monotonic_ns()}"])
    clock = StepClock()
    result = build(cfg, callbacks=[clock], quiet=True).fit()
    return result.history[0]["images"] / clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default: cuda)")
    parser.add_argument("--images", type=int, default=20_000, help="training images per run (default: 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every pair, alternating (default: 3)")
    args = parser.parse_args()
    setup_process()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    bf16 = torch.cuda.is_bf16_supported() if device.type == "cuda" else bool(bf16_units())
    rates: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="throughput-") as runs:
        data = {"resnet32": colour_folder(Path(runs) / "colour32")}
        for _ in range(args.rounds):
            for name, recipe in RECIPES.items():
                for precision in ("fp32", "bf16"):
                    rate = one_run(recipe, args.device, precision, args.images, Path(runs), data.get(name, []))
                    rates.setdefault(f"{name}/{precision}", []).append(rate)
                    print(f"{name:<6} {precision}: {rate:10.0f} images/s", flush=True)
    medians = {k: statistics.median(v) for k, v in rates.items()}
    peak = matmul_peak_gflops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    summary = {"device": name, "torch": torch.__version__, "bf16_supported": bool(bf16),
               "fp32_matmul_peak_gflops": round(peak, 1), "images_per_run": args.images, "rounds": args.rounds,
               "images_per_second": {k: round(v, 1) for k, v in medians.items()}, "all_runs": rates,
               "bf16_over_fp32": {m: round(medians[f"{m}/bf16"] / medians[f"{m}/fp32"], 3) for m in RECIPES}}
    print(f"{name}, fp32 matmul peak {peak:.0f} GFLOP/s, bf16 supported: {bool(bf16)}")
    for m in RECIPES:
        print(f"{m:<6} fp32 {medians[f'{m}/fp32']:10.0f} img/s   bf16 {medians[f'{m}/bf16']:10.0f} img/s   "
              f"bf16/fp32 {summary['bf16_over_fp32'][m]:.2f}x")
    write_result(f"device_throughput-{device.type}", summary)


if __name__ == "__main__":
    main()
