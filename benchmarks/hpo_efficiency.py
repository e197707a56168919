"""HPO efficiency: search strategies on a tuning config's space (experiments/tune_vae_mnist.yaml by default,
--space for another, e.g. the GAN's), over many seeds.

Every strategy gets the same budget in training epochs (a pruned trial costs the images it trained;
random search without pruning spends it on 20 full trials: 20 five-epoch trials on the VAE space), and every
trial is evaluated on
the same schedule (4 times an epoch, the default reports_per_epoch, unless a strategy says
otherwise), so a configuration scores the same in every strategy. For each seed: the epochs a
strategy needs to reach random search's final best ("never" when it does not), and its best
held-out -ELBO after 25%, 50% and 100% of the budget beside random's at the same epochs. Medians
come with 95% bootstrap intervals; a plot shows best-so-far against epochs (median and
interquartile range over seeds). Each study's best trial (by held-out value) is then scored once on the
test split, the confirmation no strategy saw while choosing, and each study's wall time is set beside
random search's on the same seed (pruned trials are cheap in epochs but every report costs an
evaluation). Writes benchmarks/results/hpo_efficiency[-<tag>].json, .md and .png.
A documented run, not CI: about 4-5 minutes per strategy and 10 seeds with --jobs 2 on 2 CPU cores
(MNIST subset; random search can be reused from an earlier result made by the same code with
--random-from):

    GENMODELS_DATA=../shared/datasets python benchmarks/hpo_efficiency.py --seeds 0 1 2 3 4 5 6 7 8 9 [--jobs 2]
        [--strategies default tpe+sha2] [--random-from benchmarks/results/hpo_efficiency-seeds0-9.json]
        [--tag NAME [--resume]] [--space experiments/tune_gan_mnist.yaml --trial-epochs 4]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import optuna
import yaml
from optuna.trial import TrialState

from common import RESULTS, machine, write_result
from genmodels.config import Config
from genmodels.experiment import evaluate_run
from genmodels.runtime import setup_process
from genmodels.schema import validate
from genmodels.tuning.study import open_study
from genmodels.tuning.objective import Objective
from genmodels.tuning.config import load_tune_config

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "experiments" / "tune_vae_mnist.yaml"
# The tuning-config sections each strategy sets (sampler, pruner, reports_per_epoch); "default" is
# what a tuning config without them gets: TPE, successive halving by 2 from a quarter epoch, the
# random start-up trials stopped at the first cut. Every strategy evaluates its trials as often
# (4 times an epoch) unless it says otherwise, so a trial's value is the same number in all of them.
SHA2 = {"name": "sha", "min_resource": 1, "reduction_factor": 2}
STRATEGIES = {
    "random": {"sampler": {"name": "random"}, "pruner": {"name": "none"}},
    "tpe": {"sampler": {"name": "tpe"}, "pruner": {"name": "none"}},
    "gp": {"sampler": {"name": "gp"}, "pruner": {"name": "none"}},
    # The previous default: reports (and so the first cut) once an epoch, no screening.
    "tpe+sha2.epoch": {"reports_per_epoch": 1, "pruner": {**SHA2, "screen_startup": False}},
    # Screening with a first cut after a whole epoch.
    "tpe+sha2.epoch+screen": {"reports_per_epoch": 1, "pruner": SHA2},
    # Quarter-epoch reports without screening: the random start-up trials run as far as halving lets them.
    "tpe+sha2": {"pruner": {**SHA2, "screen_startup": False}},
    "tpe+hyperband": {"pruner": {"name": "hyperband", "min_resource": 1, "reduction_factor": 3}},
    "tpe+median": {"pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 1}},
    "default": {},
}


def cost(t: optuna.trial.FrozenTrial, epoch_images: int) -> float:
    """Epochs a finished trial trained: the images it saw (recorded by the tuner) over an epoch's."""
    return t.user_attrs.get("images", 0) / epoch_images


class Budget:
    """Stops the study once its trials have trained `epochs` epochs in all, or at a failed trial:
    failures cost no epochs, so a study whose trials all fail (no data, a full disk) would never
    end, and its curve would not be the strategy's anyway."""

    def __init__(self, epochs: int, epoch_images: int):
        self.epochs, self.epoch_images = epochs, epoch_images

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        spent = sum(cost(t, self.epoch_images) for t in study.get_trials(deepcopy=False))
        if trial.state == TrialState.FAIL or spent >= self.epochs:
            study.stop()


def space_data(space: Path, trial_epochs: int | None) -> dict[str, Any]:
    """The tuning config `space` as data, its base made absolute, and its trials' epochs set to
    `trial_epochs` where given (a cheaper version of the space)."""
    data = yaml.safe_load(space.read_text())
    data["base"] = str(space.parent / data["base"])
    if trial_epochs is not None:
        data["set"] = [s for s in data.get("set", []) if not s.startswith("train.epochs=")]
        data["set"].append(f"train.epochs={trial_epochs}")
    return data


def space_study(sections: dict[str, Any], seed: int, runs: str, name: str,
                space: dict[str, Any]) -> tuple[optuna.Study, Objective, int]:
    """A fresh study `name` in `runs` over the `space` (space_data's), with the tuning-config `sections`
    (sampler, pruner, reports_per_epoch) in place of the file's and the sampler seeded; with its
    objective and the images of an epoch (the training split's size)."""
    data = copy.deepcopy(space)
    for section in ("sampler", "pruner", "reports_per_epoch"):
        data.pop(section, None)
    data.update(copy.deepcopy(sections))
    data.setdefault("sampler", {})["seed"] = seed
    data.update(runs_dir=runs, study_name=name, n_trials=10_000)
    path = Path(runs) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    tune, base = load_tune_config(path)
    objective = Objective(tune, base, quiet=True)
    epoch_images = len(objective.data_for(validate(Config, base, str(path))).train)
    return open_study(tune, base), objective, epoch_images


Study = tuple[str, int, list[tuple[float, float]] | None, float, float | None]


def run_study(job: tuple[str, int, int, str, dict[str, Any]]) -> Study:
    """One (strategy, seed) study within the epoch budget: its best-so-far curve, wall time and its
    best trial's value on the test split."""
    strategy, seed, budget, runs, space = job
    setup_process(threads=1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = f"{strategy.replace('+', '_')}-{seed}"
    study, objective, epoch_images = space_study(STRATEGIES[strategy], seed, runs, name, space)
    start = time.perf_counter()
    study.optimize(objective, callbacks=[Budget(budget, epoch_images)], catch=(Exception,))
    seconds = time.perf_counter() - start
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    # A failed trial (no data, a full disk) makes the curve not this strategy's: none is kept.
    metric = objective.tune.objectives[0]
    points, test = (None, None) if failed else (curve(study, budget, epoch_images), confirm(study, metric, runs, name))
    if failed:
        t = failed[0]
        reason = t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason", "no reason stored")
        print(f"{strategy} seed {seed}: trial {t.number} failed ({reason})", flush=True)
    shutil.rmtree(Path(runs) / name)  # its trials' checkpoints: about half a gigabyte
    return strategy, seed, points, seconds, test


def confirm(study: optuna.Study, metric: str, runs: str, name: str) -> float:
    """The study's best trial (lowest held-out value, the one a user would take) scored on the test
    split with its best checkpoint, the weights its held-out value came from."""
    best = study.best_trial
    report = evaluate_run(Path(runs) / name / f"trial-{best.number:04d}", split="test", quiet=True)
    return report["metrics"][metric]


def curve(study: optuna.Study, budget: int, epoch_images: int) -> list[tuple[float, float]]:
    """(cumulative epochs, best held-out value so far) after each trial, up to the budget."""
    epochs, best, out = 0, math.inf, []
    for t in sorted(study.trials, key=lambda t: t.number):
        if not t.state.is_finished() or epochs >= budget:
            continue
        epochs += cost(t, epoch_images)
        if t.state == TrialState.COMPLETE:
            best = min(best, t.value)
        out.append((epochs, best))
    return out


def best_at(points: list[tuple[float, float]], epochs: float) -> float:
    return min([v for e, v in points if e <= epochs], default=math.inf)


def reach(points: list[tuple[float, float]], target: float, budget: float) -> float | None:
    """Epochs to the first best-so-far at or below `target`; None when not within the budget (the
    trial that crosses it may end past it)."""
    return next((e for e, v in points if v <= target and e <= budget), None)


def bootstrap_median(values: list[float], rounds: int = 2000) -> tuple[float, float, float]:
    """The median and a 95% percentile-bootstrap interval ("never" counts as infinity)."""
    rng = np.random.default_rng(0)
    data = np.asarray(values, dtype=float)
    medians = np.median(rng.choice(data, (rounds, len(data))), axis=1)
    return float(np.median(data)), float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--space", type=Path, default=SPACE, help="the tuning config whose space is searched")
    parser.add_argument("--trial-epochs", type=int, help="epochs per trial in place of the space's own (a cheaper "
                        "space)")
    parser.add_argument("--budget", type=int, help="training epochs per study (default: 20 full trials, 100 epochs "
                        "on the VAE space)")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--jobs", type=int, default=2, help="studies run side by side, one thread each")
    parser.add_argument("--tag", default="", help="suffix for the result files (e.g. the seed set)")
    parser.add_argument("--resume", action="store_true", help="reuse the studies an interrupted run of the same "
                        "--tag finished (benchmarks/results/hpo_efficiency-<tag>.partial.json)")
    parser.add_argument("--random-from", type=Path, help="an earlier result file whose random-search curves to "
                        "reuse: random search is deterministic for a seed on CPU, so rerunning it only costs time")
    args = parser.parse_args()
    space = space_data(args.space.resolve(), args.trial_epochs)
    budget = args.budget or 20 * trial_epochs(space)
    strategies = ["random"] + [s for s in args.strategies if s != "random"]
    name = f"hpo_efficiency{'-' + args.tag if args.tag else ''}"
    partial = RESULTS / f"{name}.partial.json"
    # Per (strategy, seed): the best-so-far curve, the best trial's test value, the study's wall time.
    done: dict[tuple[str, int], list] = {}
    tests: dict[tuple[str, int], float | None] = {}
    seconds_of: dict[tuple[str, int], float] = {}
    if args.random_from:
        reused(args.random_from, ["random"], args.seeds, budget, done, tests, seconds_of)
        if len(done) < len(args.seeds):
            raise SystemExit(f"{args.random_from}: needs random-search curves for seeds {args.seeds}")
    if args.resume and partial.exists():
        reused(partial, strategies, args.seeds, budget, done, tests, seconds_of)
    runs_dir = tempfile.TemporaryDirectory(prefix="hpo-")
    runs = runs_dir.name
    jobs = [(s, seed, budget, runs, space) for seed in args.seeds for s in strategies if (s, seed) not in done]
    start = time.perf_counter()
    with runs_dir, multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for strategy, seed, points, seconds, test in pool.imap_unordered(run_study, jobs):
            if points is None:
                continue
            done[strategy, seed], tests[strategy, seed], seconds_of[strategy, seed] = points, test, seconds
            print(f"{strategy:<22} seed {seed:>3}: best {points[-1][1]:.3f} after {points[-1][0]:.1f} epochs, "
                  f"test {test:.3f} ({seconds:.0f}s)", flush=True)
            # Each finished study at once: an interrupted run resumes from here with --resume.
            partial.write_text(json.dumps({"budget_epochs": budget, **encoded(done, tests, seconds_of)}))
    wall = time.perf_counter() - start
    missing = [f"{s} seed {seed}" for s, seed, *_ in jobs if (s, seed) not in done]
    if missing:
        raise SystemExit(f"{len(missing)} studies had failed trials ({', '.join(missing)}): fix the cause and "
                         f"run again with --tag {args.tag or '...'} --resume")
    table, summary = [], {}
    for s in strategies:
        rows = []
        for seed in args.seeds:
            ref, own = done["random", seed], done[s, seed]
            target = ref[-1][1]
            reached = reach(own, target, budget)
            row = {"seed": seed, "random_best": target, "best": own[-1][1], "epochs_to_random_best": reached,
                   "fraction": reached / budget if reached is not None else None}
            for share in (0.25, 0.5, 1.0):
                e = budget * share
                row[f"best_at_{share:.0%}"], row[f"random_at_{share:.0%}"] = best_at(own, e), best_at(ref, e)
            row["better_at_equal_epochs"] = row["best_at_100%"] < row["random_at_100%"]
            # The confirmation: the best trial's value on the test split, beside random search's.
            row["test"], row["random_test"] = tests.get((s, seed)), tests.get(("random", seed))
            row["test_better"] = (row["test"] < row["random_test"]) if None not in (row["test"], row["random_test"]) \
                else None
            # Wall time beside epochs: pruning saves epochs, but each report is an evaluation.
            own_s, ref_s = seconds_of.get((s, seed)), seconds_of.get(("random", seed))
            row["wall_share"] = own_s / ref_s if own_s and ref_s else None
            rows.append(row)
        fractions = [r["fraction"] if r["fraction"] is not None else math.inf for r in rows]
        med, lo, hi = bootstrap_median(fractions)
        summary[s] = {"reached": sum(r["fraction"] is not None for r in rows), "seeds": len(rows),
                      "median_fraction": med, "median_fraction_ci95": [lo, hi],
                      "better_at_equal_epochs": sum(r["better_at_equal_epochs"] for r in rows),
                      "median_best": statistics.median(r["best"] for r in rows),
                      "median_study_seconds": statistics.median([seconds_of[s, seed] for seed in args.seeds
                                                                 if (s, seed) in seconds_of] or [math.nan]),
                      "median_test": median_of([r["test"] for r in rows]),
                      "test_better": sum(bool(r["test_better"]) for r in rows),
                      "test_compared": sum(r["test_better"] is not None for r in rows),
                      "median_wall_share": median_of([r["wall_share"] for r in rows])}
        table.append({"strategy": s, "per_seed": rows})
    print(f"\n{'strategy':<22} {'reached':>8} {'median share of random epochs [95% CI]':>40} {'better at =epochs':>18}"
          f" {'median best':>12} {'median test':>12} {'test better':>12} {'study wall s':>13} {'wall share':>11}")
    for s, v in summary.items():
        ci = f"{v['median_fraction']:.0%} [{v['median_fraction_ci95'][0]:.0%}, {v['median_fraction_ci95'][1]:.0%}]"
        print(f"{s:<22} {v['reached']:>4}/{v['seeds']:<3} {ci.replace('inf%', 'never').replace('nan%', 'never'):>40} "
              f"{v['better_at_equal_epochs']:>14}/{v['seeds']:<3} {v['median_best']:>12.3f} "
              f"{v['median_test']:>12.3f} {v['test_better']:>8}/{v['test_compared']:<3} "
              f"{v['median_study_seconds']:>13.0f} {v['median_wall_share']:>11.0%}")
    print(f"wall time: {wall / 60:.1f} min for {len(jobs)} studies ({args.jobs} at a time)")
    metric = f"{space['objectives'][0]}"
    plot(done, strategies, args.seeds, budget, name, metric)
    (RESULTS / f"{name}.md").write_text(markdown(summary, table, args.seeds))
    write_result(name, {
        "space": str(args.space.resolve().relative_to(ROOT)), "trial_epochs": trial_epochs(space),
        "budget_epochs": budget, "seeds": args.seeds, "objective": metric, "machine": machine(),
        "random_from": str(args.random_from) if args.random_from else None,
        "wall_minutes": round(wall / 60, 1), "jobs": args.jobs, "summary": summary, "per_strategy": table,
        **encoded(done, tests, seconds_of),
    })
    partial.unlink(missing_ok=True)


def trial_epochs(space: dict[str, Any]) -> int:
    """The epochs each trial of the space trains: its `set` train.epochs=N, else its base config's."""
    for item in space.get("set", []):
        if item.startswith("train.epochs="):
            return int(item.split("=", 1)[1])
    return int(yaml.safe_load(Path(space["base"]).read_text())["train"]["epochs"])


def median_of(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else math.nan


def encoded(done: dict[tuple[str, int], list], tests: dict[tuple[str, int], float | None],
            seconds: dict[tuple[str, int], float]) -> dict[str, dict[str, Any]]:
    """Curves, test values and study wall times keyed "strategy/seed", as result files store them."""
    return {"curves": {f"{s}/{seed}": points for (s, seed), points in done.items()},
            "tests": {f"{s}/{seed}": value for (s, seed), value in tests.items()},
            "study_seconds": {f"{s}/{seed}": value for (s, seed), value in seconds.items()}}


def reused(path: Path, strategies: list[str], seeds: list[int], budget: int, done: dict, tests: dict,
           seconds: dict) -> None:
    """Adds to `done` and `tests` the curves and test values a result file (or an interrupted run's
    .partial.json) holds for these strategies and seeds, and to `seconds` the study wall times of a
    partial file only (an earlier run's times were measured apart from this run's)."""
    earlier = json.loads(path.read_text())
    if earlier["budget_epochs"] != budget:
        raise SystemExit(f"{path}: curves for a budget of {earlier['budget_epochs']} epochs, not {budget}")
    for key in (f"{s}/{seed}" for s in strategies for seed in seeds):
        if key in earlier["curves"]:
            s, seed = key.rsplit("/", 1)
            done[s, int(seed)] = [tuple(p) for p in earlier["curves"][key]]
            tests[s, int(seed)] = earlier.get("tests", {}).get(key)
            if path.name.endswith(".partial.json") and key in earlier.get("study_seconds", {}):
                seconds[s, int(seed)] = earlier["study_seconds"][key]


def markdown(summary: dict, table: list[dict], seeds: list[int]) -> str:
    """The summary and per-seed tables as Markdown, for docs/tuning.md."""
    lines = ["| strategy | reached random's best | median share of random's epochs [95% CI] | better at equal epochs "
             "| median best (held-out) | median test value of the best trial | test better than random's | "
             "median study wall time | median wall time / random's |", "|---|---|---|---|---|---|---|---|---|"]
    for s, v in summary.items():
        share = f"{v['median_fraction']:.0%} [{v['median_fraction_ci95'][0]:.0%}, {v['median_fraction_ci95'][1]:.0%}]"
        wall = "reused" if math.isnan(v["median_study_seconds"]) else f"{v['median_study_seconds']:.0f} s"
        test = "not measured" if math.isnan(v["median_test"]) else f"{v['median_test']:.2f}"
        wall_share = "not measured" if math.isnan(v["median_wall_share"]) else f"{v['median_wall_share']:.0%}"
        lines.append(f"| {s} | {v['reached']}/{v['seeds']} | {share.replace('inf%', 'never').replace('nan%', 'never')} "
                     f"| {v['better_at_equal_epochs']}/{v['seeds']} | {v['median_best']:.2f} | {test} "
                     f"| {v['test_better']}/{v['test_compared']} | {wall} | {wall_share} |")
    others = [t for t in table if t["strategy"] != "random"]
    lines += ["", "| seed | random best | " + " | ".join(f"{t['strategy']}: best (epochs to random's best)"
                                                     for t in others) + " |", "|---" * (2 + len(others)) + "|"]
    for i, seed in enumerate(seeds):
        cells = [f"{t['per_seed'][i]['best']:.2f} ({epochs_text(t['per_seed'][i]['epochs_to_random_best'])})"
                 for t in others]
        lines.append(f"| {seed} | {table[0]['per_seed'][i]['best']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def epochs_text(epochs: float | None) -> str:
    return "never" if epochs is None else f"{epochs:.1f}"


def plot(done: dict, strategies: list[str], seeds: list[int], budget: int, name: str, metric: str) -> None:
    grid = np.arange(1, budget + 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for s in strategies:
        values = np.array([[best_at(done[s, seed], e) for e in grid] for seed in seeds])
        values[np.isinf(values)] = np.nan
        with warnings.catch_warnings():  # epochs before any seed's first finished trial: no value, no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(values, axis=0)
            low, high = np.nanpercentile(values, 25, axis=0), np.nanpercentile(values, 75, axis=0)
        ax.plot(grid, median, label=s)
        ax.fill_between(grid, low, high, alpha=0.15)
    ax.set_xlabel("training epochs consumed")
    ax.set_ylabel({"neg_elbo": "best held-out -ELBO so far (nats)"}.get(metric, f"best held-out {metric} so far"))
    ax.set_title(f"median and interquartile range over {len(seeds)} seeds")
    early = [v for seed in seeds if math.isfinite(v := best_at(done["random", seed], budget * 0.25))]
    if early:  # the poor first trials would squash the curves that matter
        top = np.percentile(early, 90)
        ax.set_ylim(top=top + 0.05 * abs(top))
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{name}.png", dpi=110)


if __name__ == "__main__":
    main()
