"""Do early held-out reports rank trials as their final values do? Random configurations of
experiments/tune_vae_mnist.yaml's space, each trained to the end (5 epochs) with its reports
(4 an epoch, the default reports_per_epoch) kept: at each report step, the Spearman correlation
between the trials' values there and their final values, and how many of the final best tenth a
cut keeping the better half (successive halving's) at that step would keep. A first cut can come
as early as the reports still rank. Writes benchmarks/results/hpo_fidelity.json. A documented
run, not CI: about 4 minutes for 200 trials with --jobs 2 on 2 CPU cores (MNIST subset):

    GENMODELS_DATA=../shared/datasets python benchmarks/hpo_fidelity.py [--trials 200] [--jobs 2] [--seed 100]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time

import numpy as np
import optuna
from optuna.trial import TrialState
from scipy.stats import spearmanr

from common import write_result
from genmodels.runtime import setup_process
from hpo_efficiency import ROOT, SPACE, space_study


def random_trials(job: tuple[int, int, str]) -> tuple[list[dict[int, float]], int]:
    """`n` random configurations trained without pruning: each one's reports (step -> value), and
    the images of an epoch."""
    seed, n, runs = job
    setup_process(threads=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sections = {"sampler": {"name": "random"}, "pruner": {"name": "none"}}
    study, objective, epoch_images = space_study(sections, seed, runs, f"random-{seed}")
    study.optimize(objective, n_trials=n)
    return [dict(t.intermediate_values) for t in study.trials if t.state == TrialState.COMPLETE], epoch_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2, help="studies run side by side, one thread each")
    parser.add_argument("--seed", type=int, default=100, help="the first study's sampler seed (one study a job)")
    args = parser.parse_args()
    start = time.perf_counter()
    shares = [args.trials // args.jobs + (i < args.trials % args.jobs) for i in range(args.jobs)]
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="fidelity-") as runs, spawn.Pool(args.jobs) as pool:
        parts = pool.map(random_trials, [(args.seed + i, n, runs) for i, n in enumerate(shares)])
    curves, per_epoch = [c for part, _ in parts for c in part], parts[0][1]
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    values = np.array([[c[s] for s in steps] for c in curves])
    final = values[:, -1]
    best_tenth = final <= np.percentile(final, 10)
    rows = []
    for j, step in enumerate(steps):
        kept = values[:, j] <= np.median(values[:, j])
        rows.append({"images": step, "spearman_with_final": round(float(spearmanr(values[:, j], final)[0]), 3),
                     "best_tenth_kept_by_halving": f"{int((best_tenth & kept).sum())}/{int(best_tenth.sum())}"})
    print(f"{len(curves)} random trials of {steps[-1] / per_epoch:g} epochs ({per_epoch} training images an epoch)")
    print(f"{'epochs':>7} {'Spearman with final':>20} {'final best tenth kept by a top-half cut':>40}")
    for r in rows:
        print(f"{r['images'] / per_epoch:>7.2f} {r['spearman_with_final']:>20.3f} "
              f"{r['best_tenth_kept_by_halving']:>40}")
    minutes = (time.perf_counter() - start) / 60
    print(f"wall time: {minutes:.1f} min ({args.jobs} studies at a time)")
    write_result("hpo_fidelity", {"space": str(SPACE.relative_to(ROOT)), "trials": len(curves), "seeds": [
        args.seed + i for i in range(args.jobs)], "epoch_images": per_epoch, "wall_minutes": round(minutes, 1),
        "per_step": rows})


if __name__ == "__main__":
    main()
