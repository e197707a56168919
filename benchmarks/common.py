"""Helpers the benchmarks share: the datasets in torchvision's layout, a matmul peak, results."""

from __future__ import annotations

import gzip
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from genmodels.data import find_dataset

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
