"""Tune a GAN on a folder of one's own images, end to end, as the README's quick start does it.

Fashion-MNIST's 60,000 training images are written as PNGs into one flat folder (no labels: the
toolkit sees a folder, nothing else), `genmodels tune experiments/tune_gan_own_images.yaml` runs
on it (held-out FID-infinity in the label-free extractor's features, the held-out split carved
from the folder's training split), then the study's base config and its best config are each
trained for the same number of images with seeds no trial used, and scored once against
Fashion-MNIST's official test split (never seen by the study, the runs or either extractor) with
10,000 samples, in the label-free extractor's features and in the labelled classifier's.
Writes benchmarks/results/own_images_study.json and the two sample grids.

    GENMODELS_DATA=../shared/datasets python benchmarks/own_images_study.py [--trials 12]
        [--trial-images 27000] [--images 54000] [--seeds 100 101]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from torchvision.utils import save_image

from common import RESULTS, write_result
from genmodels.config import load_config
from genmodels.data import DataConfig, load_data, raw_splits
from genmodels.experiment import build
from genmodels.images import grid_columns
from genmodels.metrics.extractor import extract
from genmodels.metrics.features import load_extractor
from genmodels.metrics.quality import EvalConfig, quality_scores

ROOT = Path(__file__).resolve().parents[1]
TEST_SAMPLES = 10_000


def export_folder(folder: Path) -> None:
    """Fashion-MNIST's training images as 00000.png ... in one folder (once)."""
    images = raw_splits(DataConfig(name="fashion-mnist"))["train"].images
    if folder.is_dir() and len(list(folder.glob("*.png"))) == len(images):
        return
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(np.asarray(image[0])).save(folder / f"{i:05d}.png")


def run_study(work: Path, folder: Path, trials: int, trial_images: int) -> tuple[Path, float]:
    tune = yaml.safe_load((ROOT / "experiments" / "tune_gan_own_images.yaml").read_text())
    tune["base"] = str(ROOT / "experiments" / tune["base"])
    tune["n_trials"] = trials
    tune["runs_dir"] = str(work)
    tune["set"] = [s for s in tune["set"] if not s.startswith(("train.max_images", "train.eval_every_images"))]
    tune["set"] += [f"train.max_images={trial_images}", f"train.eval_every_images={trial_images // 3}",
                    f"data.path={folder}", f"log.runs_dir={work}"]
    path = work / "tune_gan_own_images.yaml"
    path.write_text(yaml.safe_dump(tune, sort_keys=False))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "genmodels", "tune", str(path), "--workers", "2"], check=True)
    return work / tune["study_name"], time.perf_counter() - start


def train_and_score(config: Path, folder: Path, name: str, seed: int, images: int, work: Path,
                    extractors: dict) -> dict:
    cfg = load_config(config, [f"name={name}", f"seed={seed}", f"data.path={folder}", f"log.runs_dir={work}",
                               f"train.max_images={images}", "train.epochs=1000", "train.patience=null",
                               "train.eval_every_images=null"])
    start = time.perf_counter()
    trainer = build(cfg, quiet=True)
    trainer.fit()
    seconds = time.perf_counter() - start
    model = trainer.model.eval()
    with torch.no_grad():
        samples = model.sample(TEST_SAMPLES, torch.Generator().manual_seed(0))
    save_image(samples[:64], RESULTS / f"own_images_{name}.png", nrow=grid_columns(64))
    out = {"train_seconds": round(seconds, 1)}
    for kind, (extractor, real) in extractors.items():
        scores = quality_scores(real, extract(extractor, samples), {"fid_inf"}, EvalConfig())
        out[kind] = {k: round(v, 4) for k, v in scores.items()} | {"features": extractor.name}
    print(name, out, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default=str(ROOT / "runs" / "own_images"))
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--trial-images", type=int, default=27_000)
    parser.add_argument("--images", type=int, default=54_000, help="training images of each base/best run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101], help="seeds no trial used")
    args = parser.parse_args()
    work = Path(args.work)
    folder = work / "fashion_images"
    export_folder(folder)
    study_dir, study_seconds = run_study(work, folder, args.trials, args.trial_images)
    best = study_dir / "best_config.yaml"
    base = Path(yaml.safe_load((work / "tune_gan_own_images.yaml").read_text())["base"])
    fashion_test = load_data(DataConfig(name="fashion-mnist")).test.images
    folder_data = DataConfig(name="imagefolder", path=str(folder))
    extractors = {}
    for kind, data in (("label_free", folder_data), ("classifier", DataConfig(name="fashion-mnist"))):
        extractor = load_extractor("contrastive" if kind == "label_free" else "classifier", data)
        extractors[kind] = (extractor, extract(extractor, fashion_test))
    runs = {which: {seed: train_and_score(path, folder, f"{which}-seed{seed}", seed, args.images, work, extractors)
                    for seed in args.seeds} for which, path in (("base", base), ("best", best))}
    gain = {kind: {seed: round(1 - runs["best"][seed][kind]["fid"] / runs["base"][seed][kind]["fid"], 4)
                   for seed in args.seeds} for kind in extractors}
    result = {"folder_images": len(list(folder.glob("*.png"))), "trials": args.trials,
              "trial_images": args.trial_images, "study_seconds": round(study_seconds, 1),
              "images_per_run": args.images, "seeds": args.seeds, "test_samples": TEST_SAMPLES,
              "scored_against": "fashion-mnist test split (10,000)",
              "best_config": yaml.safe_load(best.read_text()), "runs": runs,
              "fid_lower_than_base": gain}
    print("best config's test FID lower than the base's by:", gain)
    write_result("own_images_study", result)


if __name__ == "__main__":
    main()
