"""FID speed: our Frechet distance vs pytorch-fid's calculate_frechet_distance, side by side.

On 10,000 x 2048 features (the Inception feature size) both compute the distance from the same
means/covariances, alternating over rounds; we report the median times, the speed-up and the
relative disagreement. Then the full FID wall time for 10,000 generated images on this device:
sampling a DCGAN, features from the toolkit's classifier, statistics and distance.
Writes benchmarks/results/fid_speed.json.

    GENMODELS_DATA=../shared/datasets python benchmarks/fid_speed.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_fid.fid_score import calculate_frechet_distance

from genmodels.data import load_splits
from genmodels.metrics.features import extract, load_classifier
from genmodels.metrics.frechet import fid_from_features, frechet_distance
from genmodels.models import GAN
from genmodels.runtime import setup_process

RESULTS = Path(__file__).parent / "results" / "fid_speed.json"


def correlated_features(n: int, dim: int, seed: int) -> np.ndarray:
    """Features with a realistic, non-diagonal covariance (a random low-rank mix plus noise)."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((dim // 4, dim)) / np.sqrt(dim)
    return rng.standard_normal((n, dim // 4)) @ mix + 0.1 * rng.standard_normal((n, dim)) + 0.05 * seed


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=2048)
    args = parser.parse_args()
    setup_process()

    a, b = correlated_features(args.n, args.dim, 1), correlated_features(args.n, args.dim, 2)
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    times: dict[str, list[float]] = {"pytorch_fid": [], "genmodels": []}
    values = {}
    for r in range(args.rounds):
        values["pytorch_fid"], t_ref = timed(lambda: calculate_frechet_distance(mu1, s1, mu2, s2))
        values["genmodels"], t_ours = timed(lambda: frechet_distance(mu1, s1, mu2, s2))
        times["pytorch_fid"].append(t_ref)
        times["genmodels"].append(t_ours)
        print(f"round {r + 1}/{args.rounds}: pytorch-fid {t_ref:7.2f}s  genmodels {t_ours:6.2f}s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    rel = abs(values["genmodels"] - values["pytorch_fid"]) / abs(values["pytorch_fid"])

    # Full FID for 10,000 generated images: sample, extract, fit Gaussians, distance.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    extractor = load_classifier("mnist", device=device)
    splits = load_splits("mnist", device=device)
    real = extract(extractor, splits.test.images)
    torch.manual_seed(0)
    gan = GAN((1, 28, 28), "dcgan", 2, 64, 100).to(device)
    start = time.perf_counter()
    fake_images = gan.sample(args.n, torch.Generator(device).manual_seed(0))
    t_sample = time.perf_counter() - start
    fake = extract(extractor, fake_images)
    t_features = time.perf_counter() - start - t_sample
    fid = fid_from_features(real, fake)
    t_total = time.perf_counter() - start

    result = {
        "features_shape": [args.n, args.dim],
        "rounds": args.rounds,
        "seconds": {k: round(v, 3) for k, v in med.items()},
        "seconds_all": times,
        "speedup": round(med["pytorch_fid"] / med["genmodels"], 2),
        "fid": values,
        "relative_difference": rel,
        "target_speedup": 4.0,
        "full_fid_10k_generated": {
            "device": str(device),
            "extractor": extractor.name,
            "sample_s": round(t_sample, 2),
            "features_s": round(t_features, 2),
            "stats_and_distance_s": round(t_total - t_sample - t_features, 2),
            "total_s": round(t_total, 2),
            "fid_untrained_dcgan_vs_test": round(fid, 2),
        },
    }
    print(f"\ndistance on {args.n} x {args.dim}: pytorch-fid {med['pytorch_fid']:.2f}s, "
          f"genmodels {med['genmodels']:.2f}s -> {result['speedup']:.1f}x (target >= 4x)")
    print(f"values: {values['pytorch_fid']:.6f} vs {values['genmodels']:.6f} (relative difference {rel:.2e})")
    print(f"full FID, {args.n} generated images on {device}: {t_total:.2f}s "
          f"(sample {t_sample:.2f}s, features {t_features:.2f}s, "
          f"distance {result['full_fid_10k_generated']['stats_and_distance_s']:.2f}s; "
          f"extractor {extractor.name})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
