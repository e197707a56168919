"""Training throughput: a pytorch/examples-style VAE loop vs the genmodels Trainer, side by side.

Both train the same MLP VAE (784-400-20, Bernoulli, batch 128, Adam 1e-3) on the full
Fashion-MNIST training split for --epochs epochs, alternating within one process so both see the
same machine state, each timed end to end: data loading and, per epoch, the training pass, the
evaluation pass (pytorch/examples: test() with its reconstruction grid; genmodels: held-out
evaluation, checkpoints, TensorBoard) and a sample grid. Prints images/s for each, their ratio,
and achieved GFLOP/s against a matmul peak measured in the same run; writes
benchmarks/results/train_throughput.json (or train_throughput_<N>ep.json for --epochs N > 1).

Both loops run with flush-to-zero, which the genmodels CLI sets: from about the third epoch
Adam's moments of never-updated weights turn denormal, and without it either loop slows down.

    GENMODELS_DATA=../shared/datasets python benchmarks/train_throughput.py [--rounds 3] [--epochs 1]
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode
from torchvision import datasets, transforms
from torchvision.utils import save_image

from genmodels.config import Config
from genmodels.models import VAE
from genmodels.experiment import build
from genmodels.models import Updater
from genmodels.runtime import setup_process

from common import matmul_peak_gflops, torchvision_root

RESULTS = Path(__file__).parent / "results" / "train_throughput.json"


# --- (a) the pytorch/examples VAE, verbatim in structure -------------------------------------


class ExamplesVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def examples_run(root: Path, out: Path, device: torch.device, epochs: int) -> tuple[int, float]:
    """Training the pytorch/examples way (vae/main.py): torchvision datasets + DataLoaders; each
    epoch train() with its log line every 10 batches, then test() over the test set with its
    reconstruction grid, and a sample grid; the PNGs written to `out` as main.py writes them to
    results/. Timed from building the datasets, as the Trainer is timed from its construction."""
    kwargs = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    log = io.StringIO()  # main.py prints these lines; kept off the benchmark's own output
    start = time.perf_counter()
    train = datasets.FashionMNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    test = datasets.FashionMNIST(str(root), train=False, transform=transforms.ToTensor())
    train_loader = DataLoader(train, batch_size=128, shuffle=True, **kwargs)
    test_loader = DataLoader(test, batch_size=128, shuffle=False, **kwargs)
    model = ExamplesVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, epochs + 1):
        examples_train(model, optimizer, train_loader, epoch, device, log)
        examples_test(model, test_loader, epoch, device, out, log)
        with torch.no_grad():
            sample = model.decode(torch.randn(64, 20, device=device)).cpu()
            save_image(sample.view(64, 1, 28, 28), out / f"sample_{epoch}.png")
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(train) * epochs, time.perf_counter() - start


def examples_train(model, optimizer, train_loader, epoch, device, log) -> None:
    model.train()
    train_loss = 0.0
    for batch_idx, (data, _) in enumerate(train_loader):
        data = data.to(device)
        optimizer.zero_grad()
        recon, mu, logvar = model(data)
        loss = examples_loss(recon, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
        if batch_idx % 10 == 0:
            print(f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)} "
                  f"({100.0 * batch_idx / len(train_loader):.0f}%)]\tLoss: {loss.item() / len(data):.6f}", file=log)
    print(f"====> Epoch: {epoch} Average loss: {train_loss / len(train_loader.dataset):.4f}", file=log)


def examples_test(model, test_loader, epoch, device, out, log) -> None:
    model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for i, (data, _) in enumerate(test_loader):
            data = data.to(device)
            recon, mu, logvar = model(data)
            test_loss += examples_loss(recon, data, mu, logvar).item()
            if i == 0:
                n = min(data.size(0), 8)
                comparison = torch.cat([data[:n], recon.view(128, 1, 28, 28)[:n]])
                save_image(comparison.cpu(), out / f"reconstruction_{epoch}.png", nrow=n)
    print(f"====> Test set loss: {test_loss / len(test_loader.dataset):.4f}", file=log)


# --- (b) the genmodels Trainer --------------------------------------------------------------


def trainer_config(runs_dir: str, data_root: str, precision: str = "fp32", epochs: int = 1) -> Config:
    return Config.model_validate({
        "name": "throughput",
        "data": {"name": "fashion-mnist", "root": data_root, "heldout_fraction": 0.1},
        "model": {"kind": "vae", "arch": "mlp", "n_layers": 1, "hidden": 400, "latent_dim": 20},
        "optim": {"name": "adam", "lr": 1e-3},
        "train": {"epochs": epochs, "batch_size": 128, "precision": precision},
        "log": {"runs_dir": runs_dir, "n_images": 16},
    })


def trainer_run(cfg: Config, run_dir: Path) -> tuple[int, float]:
    """build() and fit, everything included: data load, held-out eval, TensorBoard,
    checkpoints."""
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    trainer = build(cfg, run_dir=run_dir, quiet=True)
    trainer.fit()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return len(trainer.data.train) * cfg.train.epochs, time.perf_counter() - start


# --- FLOPs and peak -------------------------------------------------------------------------


def flops_per_image(device: torch.device) -> float:
    """FLOPs of one training step (forward + backward) of the VAE, per image, counted by torch."""
    model = VAE((1, 28, 28), arch="mlp", n_layers=1, hidden=400, latent_dim=20).to(device)
    update = Updater(model.configure_optimizers(trainer_config(".", ".").optim), device)
    batch = torch.randint(0, 256, (128, 1, 28, 28), dtype=torch.uint8, device=device)
    with FlopCounterMode(display=False) as counter:
        model.training_step(batch, update)
    return counter.get_total_flops() / 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, each a full run of both loops")
    parser.add_argument("--warmup", type=int, default=1, help="rounds run first and not counted")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (pytorch/examples' main.py default: 10)")
    args = parser.parse_args()
    setup_process()  # flush-to-zero first, so torch's worker threads inherit it: the same for both loops
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        tv_root = torchvision_root(tmp / "tv")
        # The Trainer reads the same unzipped files, through the torchvision layout.
        runs = tmp / "runs"
        variants = {
            "examples": lambda: examples_run(tv_root, tmp, device, args.epochs),
            "genmodels": lambda: trainer_run(trainer_config(str(runs), str(tv_root), "fp32", args.epochs),
                                             runs / "throughput"),
            # Our optional bf16 autocast: same model, lower-precision matmuls. Not like-for-like
            # with the float32 examples loop, so it is reported beside the headline ratio.
            "genmodels_bf16": lambda: trainer_run(trainer_config(str(runs), str(tv_root), "bf16", args.epochs),
                                                  runs / "throughput"),
        }
        peak = matmul_peak_gflops(device)
        per_image = flops_per_image(device)
        rates: dict[str, list[float]] = {name: [] for name in variants}
        torch.manual_seed(0)
        for r in range(args.warmup + args.rounds):
            label = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}/{args.rounds}"
            # Every other round in reverse order, so neither loop always runs right after the other.
            for name in (list(variants) if r % 2 == 0 else list(reversed(variants))):
                images, seconds = variants[name]()
                if r >= args.warmup:
                    rates[name].append(images / seconds)
                print(f"{label:<12} {name:<15} {images} images in {seconds:6.2f}s  "
                      f"= {images / seconds:8.0f} images/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["genmodels"] / med["examples"]
    ratio_bf16 = med["genmodels_bf16"] / med["examples"]
    gflops = {k: v * per_image / 1e9 for k, v in med.items()}
    result = {
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rounds": args.rounds,
        "epochs_per_run": args.epochs,
        "images_per_s": {k: round(v, 1) for k, v in med.items()},
        "images_per_s_all": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "ratio_genmodels_over_examples": round(ratio, 3),
        "ratio_genmodels_bf16_over_examples": round(ratio_bf16, 3),
        "train_flops_per_image": per_image,
        "achieved_gflops": {k: round(v, 2) for k, v in gflops.items()},
        "matmul_peak_gflops_fp32": round(peak, 2),
        "fraction_of_fp32_peak": {k: round(v / peak, 4) for k, v in gflops.items()},
        "target_ratio": 3.0,
    }
    print()
    for name in variants:
        print(f"{name:<15}: {med[name]:8.0f} images/s  {gflops[name]:6.2f} GFLOP/s  "
              f"({gflops[name] / peak:.1%} of peak)")
    print(f"ratio fp32     : {ratio:.2f}x (target >= 3x)")
    print(f"ratio bf16     : {ratio_bf16:.2f}x")
    print(f"matmul peak    : {peak:.1f} GFLOP/s (float32, 2048x2048)")
    path = RESULTS if args.epochs == 1 else RESULTS.with_name(f"train_throughput_{args.epochs}ep.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
