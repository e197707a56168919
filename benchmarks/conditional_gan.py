"""Does class conditioning pay? experiments/dcgan_fashion.yaml trained unconditional and with
`model.n_classes: 10` (conditional BatchNorm in G, projection D), each for the same number of
training images and seeds, and scored once on the Fashion-MNIST test split with 10,000 samples:
FID for both, intra-FID and the labelled classifier's accuracy on each class's samples (mean and
worst class) for the conditional model. The paired difference in test FID is given with its
standard error over seeds (`common.paired_difference`).

    GENMODELS_DATA=../shared/datasets python benchmarks/conditional_gan.py \\
        [--images 162000] [--seeds 0 1] [--threads N]

Runs live in runs/conditional-<images>/ and resume from their last checkpoint when the command
is run again; results go to benchmarks/results/conditional_gan-<images>.json as each run ends, and
a run already scored there is not trained or scored again. Beside them, the classifier's accuracy
on the real test images of each class: the ceiling for the samples' class accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import RESULTS, machine, paired_difference, write_result
from genmodels.config import load_config
from genmodels.data import load_data
from genmodels.experiment import build, make_scorer
from genmodels.metrics.by_class import class_scores
from genmodels.runtime import setup_process

ROOT = Path(__file__).resolve().parents[1]
TEST_SAMPLES = 10_000
VARIANTS = {"unconditional": [], "conditional": ["model.n_classes=10"]}


def train_and_score(variant: str, seed: int, images: int, runs: Path) -> dict:
    """One run of the base recipe for `images` training images, its test report and wall time."""
    name = f"{variant}-{seed}"
    cfg = load_config(ROOT / "experiments" / "dcgan_fashion.yaml",
                      [f"name={name}", f"seed={seed}", f"log.runs_dir={runs}", f"train.max_images={images}",
                       "train.epochs=1000", "train.patience=null", f"train.eval_every_images={min(images, 162_000)}",
                       *VARIANTS[variant]])
    start = time.perf_counter()
    trainer = build(cfg, quiet=True, resume=(runs / name / "last.pt").is_file())
    trainer.fit()
    seconds = time.perf_counter() - start
    trainer.cfg.eval.fid_samples = TEST_SAMPLES  # the final report only: training evaluated on the config's
    metrics = trainer.evaluate("test", full=True)
    keep = ("fid", "fid_se", "intra_fid", "class_accuracy", "class_accuracy_min", "precision", "recall")
    return {k: round(metrics[k], 4) for k in keep if k in metrics} | {
        "features": trainer.scorer.name, "train_precision": trainer.cfg.train.precision,
        "train_seconds": round(seconds, 1)}


def real_ceiling() -> dict:
    """The labelled classifier's accuracy on the real test images, class by class: the most a
    generator's class_accuracy can be expected to reach (Fashion-MNIST's shirts are often read as
    T-shirts, pullovers or coats)."""
    cfg = load_config(ROOT / "experiments" / "dcgan_fashion.yaml")
    scorer, test = make_scorer(cfg, torch.device("cpu"), quiet=True), load_data(cfg.data).test
    features = scorer.real_features("test", test.images)  # the runs' test features, cached on disk
    scores = class_scores(features, test.labels, features, test.labels, scorer.extractor.logits)
    return {k: round(scores[k], 4) for k in ("class_accuracy", "class_accuracy_min")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=162_000, help="training images per run (3 epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    setup_process(args.threads)
    name = f"conditional_gan-{args.images}"
    path = RESULTS / f"{name}.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    out |= {"images": args.images, "test_samples": TEST_SAMPLES, "machine": machine(),
            "recipe": "experiments/dcgan_fashion.yaml"}
    runs = ROOT / "runs" / f"conditional-{args.images}"
    for seed in args.seeds:
        for variant in VARIANTS:
            if str(seed) in out.get(variant, {}):  # scored by an earlier invocation
                continue
            out.setdefault(variant, {})[str(seed)] = train_and_score(variant, seed, args.images, runs)
            print(f"{variant:<13} seed {seed}: {out[variant][str(seed)]}", flush=True)
            write_result(name, out)
    out["real_test_images"] = real_ceiling()
    print(f"real test images: {out['real_test_images']}", flush=True)
    write_result(name, out)
    seeds = [s for s in map(str, args.seeds) if s in out.get("conditional", {}) and s in out.get("unconditional", {})]
    if len(seeds) >= 2:
        cond = [out["conditional"][s]["fid"] for s in seeds]
        uncond = [out["unconditional"][s]["fid"] for s in seeds]
        mean, se, interval = paired_difference(cond, uncond)
        out["fid_difference"] = {"mean": round(mean, 3), "se_over_seeds": round(se, 3),
                                 "t95": [round(v, 3) for v in interval], "seeds": seeds,
                                 "relative": round(sum(cond) / sum(uncond) - 1, 4)}
        print(f"conditional - unconditional test FID: {mean:+.2f} (s.e. {se:.2f} over {len(seeds)} seeds, 95% "
              f"[{interval[0]:+.2f}, {interval[1]:+.2f}]); {out['fid_difference']['relative']:+.1%}", flush=True)
        write_result(name, out)


if __name__ == "__main__":
    main()
