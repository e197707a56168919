"""HPO efficiency: TPE + median pruning vs random search without pruning on the MNIST VAE.

Both search experiments/tune_vae_mnist.yaml's space with the same number of trials, for several
seeds. Cost is counted in training epochs (a pruned trial costs the epochs it ran). For each seed
we report the best held-out -ELBO against epochs consumed, and the fraction of random search's
total epochs that TPE + pruning needed to reach random search's final best (target: <= 50%).
Writes benchmarks/results/hpo_efficiency.json and a plot. A documented run, not CI:

    GENMODELS_DATA=../shared/datasets python benchmarks/hpo_efficiency.py [--trials 20] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from genmodels.study import tune_study  # noqa: E402
from genmodels.runtime import setup_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
STRATEGIES = {
    "random": ["sampler.name=random", "pruner.name=none"],
    "tpe+median": ["sampler.name=tpe", "pruner.name=median"],
}


def curve(study) -> list[tuple[int, float]]:
    """(cumulative epochs, best value so far) after each finished trial, in trial order."""
    epochs, best, out = 0, float("inf"), []
    for t in sorted(study.trials, key=lambda t: t.number):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        epochs += len(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            best = min(best, t.value)
        out.append((epochs, best))
    return out


def epochs_to_reach(points: list[tuple[int, float]], target: float) -> int | None:
    return next((e for e, v in points if v <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    setup_process()
    runs = Path(tempfile.mkdtemp(prefix="hpo-"))
    results = []
    fig, axes = plt.subplots(1, len(args.seeds), figsize=(5 * len(args.seeds), 3.6), squeeze=False)
    for ax, seed in zip(axes[0], args.seeds):
        curves = {}
        for name, overrides in STRATEGIES.items():
            study, _, _ = tune_study(
                str(ROOT / "experiments" / "tune_vae_mnist.yaml"),
                overrides + [f"sampler.seed={seed}", f"n_trials={args.trials}", f"runs_dir={runs}",
                             f"study_name={name.replace('+', '_')}-seed{seed}"],
                quiet=True,
            )
            curves[name] = curve(study)
            ax.step(*zip(*curves[name]), where="post", label=name)
        random_epochs, random_best = curves["random"][-1]
        reached = epochs_to_reach(curves["tpe+median"], random_best)
        row = {
            "seed": seed,
            "random_best": random_best,
            "random_epochs": random_epochs,
            "tpe_median_best": curves["tpe+median"][-1][1],
            "tpe_median_epochs": curves["tpe+median"][-1][0],
            "tpe_epochs_to_random_best": reached,
            "fraction": None if reached is None else reached / random_epochs,
            "curves": curves,
        }
        results.append(row)
        frac = "not reached" if reached is None else f"{row['fraction']:.0%}"
        print(f"seed {seed}: random best {random_best:.3f} in {random_epochs} epochs; TPE+median best "
              f"{row['tpe_median_best']:.3f} in {row['tpe_median_epochs']} epochs; reached random's best after "
              f"{reached} epochs = {frac} of random's", flush=True)
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("epochs consumed")
        ax.set_ylabel("best held-out -ELBO (nats)")
        ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "hpo_efficiency.png", dpi=110)
    fractions = [r["fraction"] for r in results if r["fraction"] is not None]
    summary = {
        "trials_per_study": args.trials,
        "seeds": args.seeds,
        "per_seed": results,
        "median_fraction": statistics.median(fractions) if fractions else None,
        "reached_in": f"{len(fractions)}/{len(results)} seeds",
        "target_fraction": 0.5,
    }
    (RESULTS / "hpo_efficiency.json").write_text(json.dumps(summary, indent=2) + "\n")
    med = summary["median_fraction"]
    print(f"\nTPE + median pruning reached random search's final best in {summary['reached_in']}; "
          f"median fraction of random's epochs: {'n/a' if med is None else f'{med:.0%}'} (target <= 50%)")
    shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
