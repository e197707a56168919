"""Helpers the benchmarks share: the datasets in torchvision's layout, a matmul peak, the machine, a paired
difference over seeds, results."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from genmodels.data import find_dataset
from genmodels.precision import bf16_units, cpu_flags

RESULTS = Path(__file__).resolve().parent / "results"


def torchvision_root(tmp: Path) -> Path:
    """torchvision reads <root>/FashionMNIST/raw/*-ubyte (unzipped); build that from our files."""
    paths, tried = find_dataset("fashion-mnist")
    if not paths:
        raise SystemExit(f"fashion-mnist not found (looked in {', '.join(map(str, tried))}); set GENMODELS_DATA")
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for pair in paths.values():
        for src in pair:
            dst = raw / src.name.removesuffix(".gz")
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
    return tmp


def write_result(name: str, data: Any) -> Path:
    """benchmarks/results/<name>.json, printed path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"written to {path}")
    return path


def matmul_peak_gflops(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    """float32 matmul GFLOP/s on `device`: the ceiling that achieved rates are read against."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def machine() -> str:
    """The CPU, its cores and its bf16 matrix units: a wall time holds for this machine only."""
    name, _ = cpu_flags()
    return f"{name}, {os.cpu_count()} cores, bf16 units: {', '.join(bf16_units()) or 'none'}"


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float, tuple[float, float]]:
    """mean(a - b) over runs paired by seed, its standard error over seeds (the sample standard
    deviation of the differences over sqrt(seeds)) and a 95% Student t interval with seeds - 1 degrees
    of freedom: the spread a fresh set of seeds would show, where runs of different seeds are
    independent (tests/test_benchmark_stats.py checks its coverage by simulation)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("paired_difference needs two lists of the same length, at least 2")
    d = [x - y for x, y in zip(a, b)]
    n = len(d)
    mean = sum(d) / n
    se = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5 / n ** 0.5
    half = float(stats.t.ppf(0.975, n - 1)) * se
    return mean, se, (mean - half, mean + half)
