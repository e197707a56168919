"""GAN quality: DCGAN (experiments/dcgan_fashion.yaml) on Fashion-MNIST and MNIST.

Trains through the Trainer, then reports held-out and test FID (and KID, precision/recall on
test) next to the real-data floor: the FID between two disjoint real sets of the same sizes
(the split's real images vs as many training images as there are generated ones). Writes
benchmarks/results/gan_quality.json and a sample grid per dataset. A documented run, not CI:

    GENMODELS_DATA=../shared/datasets python benchmarks/gan_quality.py [--fashion-epochs 10] [--mnist-epochs 40]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from genmodels.config import load_config
from genmodels.metrics.features import extract
from genmodels.metrics.frechet import fid_from_features
from genmodels.experiment import build
from genmodels.runtime import setup_process
from genmodels.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def real_floor(trainer: Trainer, split: str, n_fake: int) -> float:
    """FID between the split's real images and n_fake training images: what a perfect generator
    would score with this many samples and this extractor."""
    images = {"heldout": trainer.data.heldout, "test": trainer.data.test}[split].images
    real = trainer.scorer.real_features(split, images)
    other = extract(trainer.scorer.extractor, trainer.data.train.images[:n_fake])
    return fid_from_features(real, other)


def run(dataset: str, epochs: int, runs_dir: Path) -> dict:
    cfg = load_config(ROOT / "experiments" / "dcgan_fashion.yaml",
                      [f"data.name={dataset}", f"train.epochs={epochs}", f"name=dcgan_{dataset}",
                       f"log.runs_dir={runs_dir}"])
    shutil.rmtree(cfg.run_dir(), ignore_errors=True)
    trainer = build(cfg)
    trainer.scorer.extractor  # train/load the feature classifier before timing training
    start = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - start
    test = trainer.evaluate("test", full=True)
    n = cfg.eval.fid_samples
    out = {
        "dataset": dataset,
        "epochs": result.epochs,
        "train_images": len(trainer.data.train),
        "train_wall_s": round(wall, 1),
        "device": str(trainer.device),
        "features": trainer.scorer.name,
        "feature_classifier_test_accuracy": trainer.scorer.extractor.info.get("test_accuracy"),
        "fid_samples": n,
        "heldout_fid": result.heldout["fid"],
        "heldout_fid_best": result.best["value"],
        "heldout_real_floor": real_floor(trainer, "heldout", n),
        "test": test,
        "test_real_floor": real_floor(trainer, "test", n),
        "heldout_fid_per_epoch": [round(h["fid"], 3) for h in result.history],
    }
    images = trainer.model.sample(64, torch.Generator(trainer.device).manual_seed(0))
    save_image(images.cpu(), RESULTS / f"gan_{dataset}_samples.png", nrow=8)
    print(json.dumps(out, indent=2), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion-epochs", type=int, default=10)
    parser.add_argument("--mnist-epochs", type=int, default=40)
    parser.add_argument("--runs-dir", default=str(ROOT / "runs" / "benchmarks"))
    args = parser.parse_args()
    setup_process()
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = [run("fashion-mnist", args.fashion_epochs, Path(args.runs_dir)),
               run("mnist", args.mnist_epochs, Path(args.runs_dir))]
    print(f"\n{'dataset':<14} {'epochs':>6} {'wall s':>7} {'held-out FID':>12} {'floor':>6} {'test FID':>8} "
          f"{'floor':>6} {'KID':>7} {'prec':>5} {'recall':>6}")
    for r in results:
        t = r["test"]
        print(f"{r['dataset']:<14} {r['epochs']:>6} {r['train_wall_s']:>7.0f} {r['heldout_fid']:>12.2f} "
              f"{r['heldout_real_floor']:>6.2f} {t['fid']:>8.2f} {r['test_real_floor']:>6.2f} {t['kid']:>7.4f} "
              f"{t['precision']:>5.2f} {t['recall']:>6.2f}")
    (RESULTS / "gan_quality.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {RESULTS / 'gan_quality.json'}")


if __name__ == "__main__":
    main()
