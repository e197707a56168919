"""`train.precision: auto` on a CPU: bfloat16 autocast where this CPU has bf16 matrix units
(AVX512-BF16 or AMX) *and* the run's own model trains measurably faster with it, float32 elsewhere.
A GAN is float32 on every device: bf16 trained the DCGAN recipe to a worse FID at equal images
(benchmarks/precision_quality.py), so it is no free speed there.

Whether bf16 pays depends on the CPU and on the model: on AMX a wide convolution runs several
times faster, while a small network spends its step converting tensors and gets slower. So
the choice is measured, not assumed: a few training steps of a copy of the model on a copy of
its optimizers, float32 and bf16 interleaved, the RNG left as it was. The measurement is cached
per (CPU, torch, model section, image shape, batch size) in $GENMODELS_CACHE/precision.json, so
the same run on the same machine always makes the same choice (same seed, same numbers), and
the choice is written into the run's config (a resumed run keeps it).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from genmodels.config import Config
from genmodels.data.roots import cache_root
from genmodels.data.tensors import DataSplits
from genmodels.files import write_json
from genmodels.models import GenerativeModel, Updater

#: bf16 must be at least this much faster to be worth its 8-bit mantissa. On one AMX machine
#: short measurements of the DCGAN and conv VAE recipes moved between 1.2x and 1.7x with the
#: load on the machine, the ResNet GAN's between 1.4x and 3.9x (benchmarks/gan_throughput.py,
#: alone: DCGAN 1.38x, ResNet 2.04x); small test-size networks measure below 1x.
MIN_SPEEDUP = 1.3
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> tuple[str, set[str]]:
    """This CPU's model name and feature flags (Linux's /proc/cpuinfo; elsewhere none known)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), set()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    return fields.get("model name", platform.machine()), set(fields.get("flags", "").split())


def bf16_units() -> list[str]:
    """Which bf16 matrix units this CPU has (empty: bf16 would be emulated, always slower)."""
    return [flag for flag in BF16_FLAGS if flag in cpu_flags()[1]]


def step_seconds(model: GenerativeModel, cfg: Config, batch: torch.Tensor, precision: str, steps: int,
                 labels: torch.Tensor | None = None) -> float:
    """Seconds per training step of a copy of `model` (its optimizers fresh), after one warm-up
    step; `labels`: the batch's, for a conditional model."""
    trial = copy.deepcopy(model).train()
    updater = Updater(trial.configure_optimizers(cfg.optim), batch.device, precision, cfg.train.grad_clip)
    extra = (labels,) if labels is not None else ()  # an unconditional model takes none
    trial.training_step(batch, updater, *extra)
    start = time.perf_counter()
    for _ in range(steps):
        trial.training_step(batch, updater, *extra)
    return (time.perf_counter() - start) / steps


def measure(model: GenerativeModel, cfg: Config, batch: torch.Tensor, budget_s: float = 10.0,
            rounds: int = 2, steps: int | None = None, labels: torch.Tensor | None = None) -> dict[str, float]:
    """Seconds per step in fp32 and bf16, interleaved so that load on the machine falls on both
    alike: best of `rounds` rounds, stopping early once `budget_s` is spent. `steps` per timing
    (default: 2, or n_critic for a GAN)."""
    # a GAN's generator step comes once every n_critic
    steps = steps or max(2, getattr(model, "n_critic", 1))
    best = {"fp32": float("inf"), "bf16": float("inf")}
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        for round_ in range(rounds):
            if round_ and time.perf_counter() - start > budget_s:
                break
            for precision in best:
                best[precision] = min(best[precision], step_seconds(model, cfg, batch, precision, steps, labels))
    return best


def choose_precision(cfg: Config, model: GenerativeModel, data: DataSplits, device: torch.device,
                     quiet: bool = False) -> Config:
    """`cfg` with train.precision 'auto' resolved for a CPU run (on CUDA, autocast_dtype decides:
    bf16, or fp16 where bf16 is missing). Under torchrun the ranks would measure apart, so there
    it is fp32. A family whose reduced precision trained measurably worse (a GAN) is fp32 on any
    device: 'auto' promises speed where it costs no quality."""
    if cfg.train.precision != "auto":
        return cfg
    units = bf16_units()
    if not type(model).auto_reduced_precision:
        choice, why = "fp32", f"{cfg.model.kind}: bf16 trained it to a worse FID than fp32 at equal images"
    elif device.type != "cpu":
        return cfg
    elif not units or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        choice, why = "fp32", "no bf16 matrix units on this CPU" if not units else "torchrun: not measured per rank"
    else:
        choice, why = _measured(cfg, model, data, units)
    if not quiet:
        print(f"train.precision auto: {choice} ({why})", file=sys.stderr, flush=True)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": choice})})


def _measured(cfg: Config, model: GenerativeModel, data: DataSplits, units: list[str]) -> tuple[str, str]:
    cpu, _ = cpu_flags()
    key = hashlib.sha256(json.dumps([cpu, torch.__version__, torch.get_num_threads(), cfg.model.model_dump(mode="json"),
                                     list(data.image_shape), cfg.train.batch_size, cfg.optim.name],
                                    sort_keys=True).encode()).hexdigest()[:24]
    path = cache_root() / "precision.json"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known or set(known[key]) != {"fp32", "bf16"}:
        batch, labels = data.train.images[: cfg.train.batch_size], data.train.labels[: cfg.train.batch_size]
        known[key] = {k: round(v, 6) for k, v in measure(model, cfg, batch,
                                                         labels=labels if model.conditional else None).items()}
        try:
            write_json(path, known)
        except OSError:
            pass  # no writable cache: measured again next time
    seconds = known[key]
    speedup = seconds["fp32"] / max(seconds["bf16"], 1e-12)
    choice = "bf16" if speedup >= MIN_SPEEDUP else "fp32"
    return choice, f"bf16 {speedup:.2f}x the speed of fp32 for this model on {'/'.join(units)}, measured once; " \
                   f"bf16 needs {MIN_SPEEDUP}x"
