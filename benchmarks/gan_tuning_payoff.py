"""Does tuning a GAN pay off? The study's base config and its best config, each trained for the same
number of images with 2 seeds, beside the pytorch/examples DCGAN loop on the same nets and images;
every run scored once on the Fashion-MNIST test split with 10,000 samples (FID, FID extrapolated
to infinitely many samples, KID, precision, recall, each named with its feature extractor).

Then, over the study's completed trials, how well the held-out objectives rank trials: the
Spearman correlation of FID at 1,000 samples, KID and FID-infinity (held-out, at each trial's
best checkpoint) with that checkpoint's 10,000-sample test FID; and, for pruning, whether the raw
or the best-so-far held-out values at each report step rank the trials better.

    GENMODELS_DATA=../shared/datasets python benchmarks/gan_tuning_payoff.py \\
        --study runs/tune_dcgan_fashion [--images 162000] [--seeds 0 1] [--only base best examples ranking]

At the base recipe's own budget (20 epochs of the 54,000 training images), on seeds no trial used
(the study's trials all ran seed 0), the base and the best config side by side, one thread each:

    python benchmarks/gan_tuning_payoff.py --images 1080000 --seeds 2 --only base --threads 1 --tag 20ep &
    python benchmarks/gan_tuning_payoff.py --images 1080000 --seeds 2 --only best --threads 1 --tag 20ep

Runs live in runs/payoff-<tag>/ and resume from their last checkpoint when the command is run
again (Ctrl-C or SIGTERM saves one); each finished run's scores are merged into the results file.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import optuna
import torch
from scipy.stats import spearmanr
from torchvision.utils import make_grid, save_image

import examples_dcgan
from common import RESULTS, torchvision_root, write_result
from genmodels.config import load_config
from genmodels.data import DataConfig, load_data
from genmodels.evaluation import evaluate_split
from genmodels.experiment import build
from genmodels.metrics.quality import QUALITY_METRICS, EvalConfig, SampleQuality
from genmodels.models import EvalContext
from genmodels.runs import load_run
from genmodels.runtime import setup_process

ROOT = Path(__file__).resolve().parents[1]
TEST_SAMPLES = 10_000


def scorer(fid_samples: int = TEST_SAMPLES) -> SampleQuality:
    return SampleQuality(EvalConfig(fid_samples=fid_samples, metrics=list(QUALITY_METRICS)),
                         DataConfig(name="fashion-mnist"))


def test_scores(model: torch.nn.Module, test_images: torch.Tensor, quality: SampleQuality) -> dict[str, float]:
    """Every quality metric of TEST_SAMPLES samples against the test split (noise seed 0)."""
    ctx = EvalContext(torch.Generator().manual_seed(0), split="test", full=True, scorer=quality,
                      fid_samples=TEST_SAMPLES)
    metrics = evaluate_split(model, test_images, ctx, 1000, quiet=True)
    return {k: round(v, 4) for k, v in metrics.items()} | {"features": quality.name}


def train_config(path: Path, name: str, seed: int, images: int, runs: Path) -> tuple[dict, float]:
    """Train a run config for `images` training images (continuing its last checkpoint under `runs`
    if there is one); the test scores of its final weights and of its best held-out checkpoint,
    its precision and the wall time of this invocation. Held-out FID is evaluated (and a
    checkpoint kept) every 3 epochs' images or at the end, whichever comes first."""
    cfg = load_config(path, [f"name={name}", f"seed={seed}", f"log.runs_dir={runs}", f"train.max_images={images}",
                             "train.epochs=1000", "train.patience=null",
                             f"train.eval_every_images={min(images, 162_000)}"])
    start = time.perf_counter()
    trainer = build(cfg, quiet=True, resume=(runs / name / "last.pt").is_file())
    trainer.fit()
    seconds = time.perf_counter() - start
    quality = scorer()
    scores = test_scores(trainer.model, trainer.data.test.images, quality)
    heldout = [{"images": h["images"], "fid": round(h["fid"], 3)} for h in trainer.state.history if "fid" in h]
    # The checkpoint a user gets from the run (best.pt, by held-out FID) besides the final weights
    _, best, _ = load_run(runs / name, "best")
    at_best = test_scores(best, trainer.data.test.images, quality) | {"images": trainer.state.best["images"]}
    return scores | {"train_precision": trainer.cfg.train.precision, "heldout_curve": heldout,
                     "best_checkpoint": at_best}, seconds


def best_config(study_dir: Path) -> Path:
    """The study's best config; without the study's folder, the copy its results keep."""
    for best in (study_dir / "best_config.yaml", RESULTS / "tune_dcgan_fashion_best_config.yaml"):
        if best.is_file():
            return best
    raise SystemExit(f"{study_dir / 'best_config.yaml'}: no best config; run the study first (README's 'Tune a GAN')")


def record(name: str, images: int, label: str, seed: int, scores: dict) -> None:
    """Merge one run's scores into benchmarks/results/<name>.json, read afresh: runs of the same
    budget may finish in other processes."""
    path = RESULTS / f"{name}.json"
    out = json.loads(path.read_text()) if path.exists() else {}
    out["images"], out["test_samples"] = images, TEST_SAMPLES
    out.setdefault(label, {})[str(seed)] = scores
    write_result(name, out)


def ranking(study_dir: Path, study_name: str) -> dict:
    """Spearman correlations between held-out objectives and the 10,000-sample test FID over the
    study's completed trials; and raw vs best-so-far intermediate values for pruning."""
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{study_dir / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE
                and "duplicate_of" not in t.user_attrs]
    rows = []
    for t in complete:
        # A trial's run folder is inside the study's folder, wherever the study was started from.
        run = Path(t.user_attrs["run_dir"]).name
        cfg, model, _ = load_run(study_dir / run, "best")
        data = load_data(cfg.data)
        heldout = {}
        for n in (1000, cfg.eval.fid_samples):
            quality = SampleQuality(EvalConfig(fid_samples=n, metrics=["kid", "fid_inf"]), cfg.data)
            ctx = EvalContext(torch.Generator().manual_seed(cfg.eval.noise_seed), scorer=quality, fid_samples=n)
            heldout[n] = evaluate_split(model, data.heldout.images, ctx, 1000, quiet=True)
        test = test_scores(model, data.test.images, scorer())
        rows.append({"trial": t.number, "objective": t.value, "fid_1000": heldout[1000]["fid"],
                     "kid": heldout[cfg.eval.fid_samples]["kid"], "fid_inf": heldout[cfg.eval.fid_samples]["fid_inf"],
                     f"fid_{cfg.eval.fid_samples}": heldout[cfg.eval.fid_samples]["fid"],
                     "test_fid_10000": test["fid"], "intermediate": t.intermediate_values,
                     "run": run})
        print(f"trial {t.number}: objective {t.value:.3f}  held-out FID@1000 {rows[-1]['fid_1000']:.3f}  "
              f"KID {rows[-1]['kid']:.4f}  FID-inf {rows[-1]['fid_inf']:.3f}  test FID@10000 {test['fid']:.3f}",
              flush=True)
    test_fid = [r["test_fid_10000"] for r in rows]
    keys = ["objective", "fid_1000", "kid", "fid_inf"] + [k for k in rows[0] if k.startswith("fid_") and
                                                         k not in ("fid_1000", "fid_inf")] if rows else []
    spearman = ({k: round(float(spearmanr([r[k] for r in rows], test_fid).statistic), 3) for k in keys}
                if len(rows) > 2 else {})
    pruning = pruning_ranks(rows, study_dir)
    return {"completed_trials": len(rows), "spearman_with_test_fid_10000": spearman, "pruning_report": pruning,
            "trials": rows}


def pruning_ranks(rows: list[dict], study_dir: Path) -> dict:
    """At each report step, how well the latest held-out value and the best so far rank the trials by
    their final test FID (Spearman). The pruner saw one of the two (`pruner.report`); the other comes
    from the evaluation history in the trial's metrics.json, one entry per report (at the report step
    nearest its image count: an evaluation lands within a batch of its step)."""
    pruning = {}
    for r in rows:
        metrics = json.loads((study_dir / r["run"] / "metrics.json").read_text())
        steps = [int(s) for s in r["intermediate"]]
        r["raw"] = {min(steps, key=lambda s: abs(s - h["images"])): h[metrics["monitor"]] for h in metrics["history"]}
    for step in sorted({int(s) for r in rows for s in r["raw"]}):
        have = [r for r in rows if step in r["raw"]]
        if len(have) < 3:
            continue
        raw = [r["raw"][step] for r in have]
        best = [min(v for s, v in r["raw"].items() if s <= step) for r in have]
        target = [r["test_fid_10000"] for r in have]
        pruning[step] = {"trials": len(have), "raw": round(float(spearmanr(raw, target).statistic), 3),
                         "best_so_far": round(float(spearmanr(best, target).statistic), 3)}
    return pruning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default=str(ROOT / "runs" / "tune_dcgan_fashion"))
    parser.add_argument("--images", type=int, default=162_000, help="training images per run (3 epochs)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", nargs="+", default=["base", "best", "examples", "ranking"])
    parser.add_argument("--tag", default="", help="results in gan_tuning_payoff-<tag>.json, runs in runs/payoff-<tag>")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (runs side by side share the cores)")
    args = parser.parse_args()
    setup_process(args.threads)
    study_dir = Path(args.study)
    name = "gan_tuning_payoff" + (f"-{args.tag}" if args.tag else "")
    base = ROOT / "experiments" / "dcgan_fashion.yaml"  # the study's base: the recipe a user starts from
    best = best_config(study_dir) if "best" in args.only else None
    runs = ROOT / "runs" / f"payoff-{args.tag or args.images}"
    for label, path in (("base", base), ("best", best)):
        if label not in args.only:
            continue
        for seed in args.seeds:
            scores, seconds = train_config(path, f"{label}-{seed}", seed, args.images, runs)
            record(name, args.images, label, seed, {**scores, "train_seconds": round(seconds, 1)})
            print(f"{label:<8} seed {seed}: {scores}  ({seconds:.0f}s)", flush=True)
            if seed == args.seeds[0]:
                _, model, _ = load_run(runs / f"{label}-{seed}", "last")
                grid = make_grid(model.sample(64, torch.Generator().manual_seed(0)), nrow=8)
                save_image(grid, RESULTS / f"{name.replace('_payoff', '')}_{label}_samples.png")
    if "examples" in args.only:
        tv_root = torchvision_root(Path(tempfile.mkdtemp(prefix="payoff-tv-")))
        test = load_data(DataConfig(name="fashion-mnist")).test.images
        for seed in args.seeds:
            net_g, seconds = examples_dcgan.train(tv_root, args.images, seed, runs / f"examples-{seed}")
            fake = examples_dcgan.sample(net_g, TEST_SAMPLES, seed=0)
            quality = scorer()
            scores = {k: round(v, 4) for k, v in quality.score("test", test, fake, full=True).items()}
            record(name, args.images, "examples", seed, {**scores, "features": quality.name,
                                                         "train_seconds": round(seconds, 1)})
            print(f"examples seed {seed}: {scores}  ({seconds:.0f}s)", flush=True)
    if "ranking" in args.only:  # a study's folder is named after it
        out = json.loads((RESULTS / f"{name}.json").read_text()) if (RESULTS / f"{name}.json").exists() else {}
        out["ranking"] = ranking(study_dir, study_dir.name)
        print(json.dumps({k: v for k, v in out["ranking"].items() if k != "trials"}, indent=2), flush=True)
        write_result(name, out)


if __name__ == "__main__":
    main()
