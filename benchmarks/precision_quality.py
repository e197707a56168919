"""Does bf16 train as well as fp32? The recipes `train.precision: auto` picks bf16 for on a CPU with bf16
matrix units (the MLP VAE of `make demo`, the DCGAN recipe), each trained in fp32 and in bf16 for the same
images and seeds, side by side in one run.

Reports per recipe: the held-out metric after the last epoch (-ELBO in nats for the VAE, FID in the
toolkit's classifier features for the GAN; the last evaluation, not the best, so both precisions are scored
after exactly the same images), the training wall time, the bf16 - fp32 difference paired by seed with its
standard error over seeds and a 95% t interval (benchmarks/common.paired_difference), and fp32's own
seed-to-seed standard deviation for scale. "Within noise" means the interval holds 0. Writes
benchmarks/results/precision_quality.json. A documented run, not CI: about 15 minutes on 2 CPU cores with
the defaults (MNIST subset, 4 seeds):

    GENMODELS_DATA=../shared/datasets python benchmarks/precision_quality.py [--seeds 0 1 2 3] [--only vae dcgan]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import machine, paired_difference, write_result
from genmodels.config import load_config
from genmodels.experiment import build
from genmodels.runtime import setup_process

ROOT = Path(__file__).resolve().parents[1]
# recipe -> (config, overrides, the held-out metric compared). Fixed epochs and no early stopping:
# equal images in both precisions.
RECIPES = {
    "vae": ("vae_mnist.yaml", ["train.epochs=20", "train.patience=null"], "neg_elbo"),
    "dcgan": ("dcgan_fashion.yaml", ["data.name=mnist", "train.epochs=10", "eval.fid_samples=2000"], "fid"),
}


def train_once(recipe: str, seed: int, precision: str, runs: str) -> tuple[float, float]:
    """The held-out metric after the last epoch and the training wall time of one run."""
    config, overrides, metric = RECIPES[recipe]
    cfg = load_config(ROOT / "experiments" / config, [*overrides, f"seed={seed}", f"train.precision={precision}",
                                                      f"name={recipe}-{precision}-{seed}", f"log.runs_dir={runs}"])
    trainer = build(cfg, quiet=True)
    if trainer.scorer.loaded or cfg.model.kind == "gan":
        trainer.scorer.extractor  # train or load the FID classifier before the clock starts
    start = time.perf_counter()
    result = trainer.fit()
    return result.heldout[metric], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--only", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    args = parser.parse_args()
    setup_process()
    out = {"machine": machine(), "seeds": args.seeds, "recipes": {}}
    with tempfile.TemporaryDirectory(prefix="precision-") as runs:
        for recipe in args.only:
            values: dict[str, list[float]] = {"fp32": [], "bf16": []}
            seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
            for seed in args.seeds:
                for precision in ("fp32", "bf16"):  # interleaved: a drift in the machine's speed hits both
                    value, wall = train_once(recipe, seed, precision, runs)
                    values[precision].append(value)
                    seconds[precision].append(wall)
                    print(f"{recipe} seed {seed} {precision}: {RECIPES[recipe][2]} {value:.3f} in {wall:.0f}s",
                          flush=True)
            mean, se, (low, high) = paired_difference(values["bf16"], values["fp32"])
            row = {"config": RECIPES[recipe][0], "overrides": RECIPES[recipe][1], "metric": RECIPES[recipe][2],
                   "values": values, "train_seconds": seconds,
                   "bf16_minus_fp32": mean, "se_over_seeds": se, "ci95": [low, high], "within_noise": low <= 0 <= high,
                   "fp32_seed_sd": statistics.stdev(values["fp32"]) if len(args.seeds) > 1 else None,
                   "speedup": sum(seconds["fp32"]) / sum(seconds["bf16"])}
            out["recipes"][recipe] = row
            print(f"{recipe}: bf16 - fp32 = {mean:+.3f} (s.e. over {len(args.seeds)} seeds {se:.3f}, 95% t interval "
                  f"[{low:+.3f}, {high:+.3f}]; fp32 seed sd {row['fp32_seed_sd']:.3f}); "
                  f"{'within' if row['within_noise'] else 'outside'} noise; bf16 trains {row['speedup']:.2f}x as fast",
                  flush=True)
    print(f"machine: {out['machine']}")
    write_result("precision_quality", out)


if __name__ == "__main__":
    main()
