"""Fine-tuning from a related source against training from scratch, on a small target set.

A source model is trained on some Fashion-MNIST classes (default 0-7, 48,000 images) and adapted
to unseen classes (default 8 and 9, bag and ankle boot) with N training images (N = 100 and
1,000, `data.limit`), beside the same model trained from scratch on those N with the same images,
seeds and schedule. `data.limit` caps each split, so the held-out split is up to N images of the
target classes from the dataset's own held-out split (the same for every recipe), not carved from
the N. Every run keeps its best held-out checkpoint, which is scored once on all of the target
classes' test images (2,000 for two classes).

GAN (experiments/dcgan_fashion.yaml; test FID with 10,000 samples): scratch, scratch +
DiffAugment, fine-tune, fine-tune + FreezeD, fine-tune + FreezeD + DiffAugment. VAE
(experiments/vae_mnist.yaml on Fashion-MNIST; test -ELBO): scratch, all layers, encoder frozen.
For each fine-tuning recipe it also reports the training images it needed to reach the best
held-out value of the best from-scratch recipe, as a share of the images that recipe needed.
The digits -> clothes case, where transfer does not help, is benchmarks/finetune_vs_scratch.py.

    GENMODELS_DATA=../shared/datasets python benchmarks/finetune_related.py \\
        [--family gan vae] [--sizes 100 1000] [--seeds 0 1] [--source-classes 0 1 2 3 4 5 6 7] \\
        [--target-classes 8 9] [--source-images 162000] [--target-images 64000]

Runs live in runs/finetune-related/ and resume from their last checkpoint (a finished one is not
trained again); results go to benchmarks/results/finetune_related-<family>.json as each run ends.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import machine, write_result
from genmodels.config import load_config
from genmodels.data import DataConfig, load_data
from genmodels.experiment import build
from genmodels.runs import load_run
from genmodels.runtime import setup_process

ROOT = Path(__file__).resolve().parents[1]
AUGMENT = "model.diffaugment=[translation,cutout]"
FAMILIES = {
    "gan": {"config": "dcgan_fashion.yaml", "data": [], "monitor": "fid", "test_samples": 10_000,
            "recipes": {"scratch": [], "scratch + DiffAugment": [AUGMENT],
                        "fine-tune": ["finetune.from={source}"],
                        "fine-tune + FreezeD": ["finetune.from={source}", "finetune.freeze_d_blocks={freeze_d}"],
                        "fine-tune + FreezeD + DiffAugment": ["finetune.from={source}",
                                                              "finetune.freeze_d_blocks={freeze_d}", AUGMENT]}},
    "vae": {"config": "vae_mnist.yaml", "data": ["data.name=fashion-mnist"], "monitor": "neg_elbo",
            "test_samples": None,
            "recipes": {"scratch": [], "fine-tune": ["finetune.from={source}"],
                        "fine-tune, encoder frozen": ["finetune.from={source}", "finetune.freeze=encoder.*"]}},
}


def classes(values: list[int]) -> str:
    return "data.classes=[" + ",".join(map(str, values)) + "]"


def train(family: str, name: str, overrides: list[str], runs: Path):
    """Train (or finish) one run; its result (history and best) as the Trainer returns it."""
    spec = FAMILIES[family]
    cfg = load_config(ROOT / "experiments" / spec["config"], [f"name={name}", f"log.runs_dir={runs}",
                                                                 *spec["data"], *overrides])
    trainer = build(cfg, quiet=True, resume=(runs / name / "last.pt").is_file())
    return trainer, trainer.fit()


def test_score(family: str, trainer, target: list[int]) -> float:
    """The best checkpoint's monitor on every test image of the target classes."""
    spec = FAMILIES[family]
    _, trainer.model, _ = load_run(trainer.run_dir, "best", trainer.device)
    trainer.data.test = load_data(DataConfig(name="fashion-mnist", classes=target), trainer.device).test
    if spec["test_samples"]:
        trainer.cfg.eval.fid_samples = spec["test_samples"]
    return trainer.evaluate("test")[spec["monitor"]]


def images_to_reach(history: list[dict], monitor: str, target: float) -> int | None:
    """Training images at the first held-out evaluation at or below `target` (None: never)."""
    return next((h["images"] for h in history if h[monitor] <= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--source-classes", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--target-classes", type=int, nargs="+", default=[8, 9])
    parser.add_argument("--source-images", type=int, default=162_000, help="the source's training images")
    parser.add_argument("--target-images", type=int, default=64_000, help="each target run's training images")
    parser.add_argument("--evaluations", type=int, default=16, help="held-out evaluations per target run")
    parser.add_argument("--freeze-d", type=int, default=1, help="FreezeD: the discriminator's first k blocks")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    setup_process(args.threads)
    runs = ROOT / "runs" / "finetune-related"
    for family in args.family:
        spec, name = FAMILIES[family], f"finetune_related-{family}"
        out = {"machine": machine(), "source_classes": args.source_classes, "target_classes": args.target_classes,
               "source_images": args.source_images, "target_images": args.target_images, "results": {}}
        source, _ = train(family, f"{family}-source", [classes(args.source_classes),
                                                       f"train.max_images={args.source_images}", "train.epochs=1000",
                                                       "train.patience=null"], runs)
        every = max(1, args.target_images // args.evaluations)
        for n in args.sizes:
            for seed in args.seeds:
                row = {}
                for recipe, extra in spec["recipes"].items():
                    overrides = [classes(args.target_classes), f"data.limit={n}", f"seed={seed}",
                                 f"train.max_images={args.target_images}", "train.epochs=100000",
                                 "train.patience=null", f"train.eval_every_images={every}",
                                 *(e.format(source=source.run_dir, freeze_d=args.freeze_d) for e in extra)]
                    slug = recipe.replace(" + ", "_").replace(", ", "-").replace(" ", "-")
                    trainer, result = train(family, f"{family}-{n}-{seed}-{slug}", overrides, runs)
                    row[recipe] = {"test": round(test_score(family, trainer, args.target_classes), 4),
                                   "heldout_best": round(result.best["value"], 4), "best_images": result.best["images"],
                                   "history": [{"images": h["images"], spec["monitor"]: h[spec["monitor"]]}
                                               for h in result.history]}
                    print(f"{family} N={n} seed {seed} {recipe:<34} test {spec['monitor']} {row[recipe]['test']:.3f}",
                          flush=True)
                scratch = min((r for r in row if r.startswith("scratch")), key=lambda r: row[r]["heldout_best"])
                goal, needed = row[scratch]["heldout_best"], row[scratch]["best_images"]
                for recipe in row:
                    if not recipe.startswith("scratch"):
                        reached = images_to_reach(row[recipe]["history"], spec["monitor"], goal)
                        row[recipe]["images_to_best_scratch"] = reached
                        row[recipe]["share_of_scratch_images"] = None if reached is None else round(reached / needed, 4)
                out["results"].setdefault(str(n), {})[str(seed)] = {"best_scratch": scratch, **row}
                write_result(name, out)
        print(json.dumps({n: {s: {r: v["test"] for r, v in row.items() if isinstance(v, dict)}
                              for s, row in per.items()} for n, per in out["results"].items()}, indent=1))


if __name__ == "__main__":
    main()
