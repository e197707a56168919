"""Fine-tuning vs training from scratch: an MNIST VAE adapted to a few Fashion-MNIST images.

Pretrains experiments/vae_mnist.yaml on MNIST, then on N Fashion-MNIST training images (N = 100,
1,000, 10,000; `data.limit`) trains the same model three ways with the same epochs and seed:
from scratch, fine-tuned (all layers), fine-tuned with the encoder frozen. Reports the final
test -ELBO (best held-out checkpoint, full 10,000-image test split) and plots the held-out
curves for N = 1,000. Writes benchmarks/results/finetune_vs_scratch.{json,png}. Not CI:

    GENMODELS_DATA=../shared/datasets python benchmarks/finetune_vs_scratch.py [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt

from genmodels.config import load_config
from genmodels.data import DataConfig, load_data
from genmodels.experiment import build
from genmodels.runs import load_run
from genmodels.runtime import setup_process

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = {
    "scratch": [],
    "fine-tune": ["finetune.from={source}"],
    "fine-tune, encoder frozen": ["finetune.from={source}", "finetune.freeze=encoder.*"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    args = parser.parse_args()
    setup_process()
    runs = Path(tempfile.mkdtemp(prefix="ft-"))
    config = ROOT / "experiments" / "vae_mnist.yaml"
    pre = build(load_config(config, [f"log.runs_dir={runs}", "name=pretrain"]), quiet=True)
    pretrain = pre.fit()
    source = pre.run_dir
    print(f"pretrained on MNIST: {pretrain.epochs} epochs, held-out -ELBO {pretrain.best['value']:.2f}", flush=True)
    full_test = load_data(DataConfig(name="fashion-mnist"), pre.device).test

    table, curves = [], {}
    for n in args.sizes:
        row = {"images": n}
        for name, extra in VARIANTS.items():
            cfg = load_config(config, [f"log.runs_dir={runs}", f"name={name.replace(' ', '').replace(',', '_')}-{n}",
                                       "data.name=fashion-mnist", f"data.limit={n}", f"train.epochs={args.epochs}",
                                       "train.patience=null"] + [e.format(source=source) for e in extra])
            trainer = build(cfg, quiet=True)
            result = trainer.fit()
            _, best_model, _ = load_run(trainer.run_dir, "best", trainer.device)
            trainer.model = best_model
            trainer.data.test = full_test
            test = trainer.evaluate("test")
            row[name] = {"test_neg_elbo": test["neg_elbo"], "best_epoch": result.best["epoch"],
                         "heldout_best": result.best["value"], "train_images": len(trainer.data.train)}
            if n == 1000:
                curves[name] = [(h["epoch"], h["neg_elbo"]) for h in result.history]
            print(f"N={n:<6} {name:<26} test -ELBO {test['neg_elbo']:8.2f} (best epoch {result.best['epoch']})",
                  flush=True)
        table.append(row)

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, points in curves.items():
        ax.plot(*zip(*points), label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out -ELBO (nats)")
    ax.set_title("Fashion-MNIST, 1,000 images")
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "finetune_vs_scratch.png", dpi=110)
    (RESULTS / "finetune_vs_scratch.json").write_text(json.dumps(
        {"epochs": args.epochs, "pretrain": {"epochs": pretrain.epochs, "heldout_neg_elbo": pretrain.best["value"]},
         "results": table, "curves_1000": curves}, indent=2) + "\n")
    print(f"\n{'images':>7} " + " ".join(f"{name:>26}" for name in VARIANTS))
    for row in table:
        print(f"{row['images']:>7} " + " ".join(f"{row[name]['test_neg_elbo']:>26.2f}" for name in VARIANTS))
    shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
