"""Is the label-free extractor a good yardstick? A panel of image sets of known order, scored by
FID in the label-free (contrastive) features, in the labelled classifier's, and in Inception's
where its weights are on disk.

The panel (Heusel et al. 2017's protocol): a random half of the real test split against the other
half under increasing disturbance, 4 levels each: Gaussian noise, Gaussian blur, black rectangles, a
swirl, salt-and-pepper, mixing in the other dataset's images, and mode dropping (classes
removed); plus samples of the shipped VAE and GAN recipes at several training points (--models).
Reported: Spearman's rank correlation between extractors over the whole panel, and for each
disturbance whether FID rises with its level (strictly, level 0 being the undisturbed half).
Writes benchmarks/results/extractor_agreement-<dataset>.{json,png}.

    GENMODELS_DATA=../shared/datasets python benchmarks/extractor_agreement.py --dataset fashion-mnist
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torchvision.transforms.functional import gaussian_blur

from common import RESULTS, write_result
from genmodels.config import load_config
from genmodels.data import DataConfig, load_data
from genmodels.errors import UserError
from genmodels.experiment import build
from genmodels.metrics.extractor import extract
from genmodels.metrics.features import load_extractor
from genmodels.metrics.frechet import frechet_distance, gaussian_stats
from genmodels.runs import load_run

ROOT = Path(__file__).resolve().parents[1]
N_FAKE = 2000  # images per disturbed set: one size for all, as FID's bias depends on it
LEVELS = {
    "gaussian noise": [0.05, 0.1, 0.2, 0.4],  # standard deviation, images in [0, 1]
    "blur": [0.5, 1.0, 1.5, 2.5],  # Gaussian sigma, pixels
    "black rectangles": [1, 2, 4, 8],  # rectangles a quarter of the side, per image
    "swirl": [1.0, 2.0, 4.0, 8.0],  # strength
    "salt and pepper": [0.02, 0.05, 0.1, 0.2],  # share of pixels
    "other dataset": [0.1, 0.25, 0.5, 0.75],  # share of images from the other dataset
    "classes removed": [1, 2, 4, 6],  # of 10
}
OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}


def disturb(kind: str, level: float, x: torch.Tensor, labels: torch.Tensor, other: torch.Tensor,
            order: torch.Tensor) -> torch.Tensor:
    """N_FAKE images (floats in [0, 1]) of `x` under disturbance `kind` at `level`. Every level of
    a disturbance starts from the same images (the first N_FAKE of `order`, as the undisturbed set
    does) and the same random draws (a generator seeded by the disturbance's name), so a level
    differs from the one below it by the disturbance alone: rectangles, corrupted pixels, swapped
    images and removed classes are nested, noise and swirls grow in place."""
    n, _, h, w = x.shape
    g = torch.Generator().manual_seed(sum(map(ord, kind)))
    pick = order[:N_FAKE]
    if kind == "classes removed":
        removed = torch.randperm(10, generator=g)[: int(level)]
        kept = order[~torch.isin(labels[order], removed)]
        return x[kept[:N_FAKE]]
    y = x[pick].clone()
    if kind == "gaussian noise":
        y = y + level * torch.randn(y.shape, generator=g)
    elif kind == "blur":
        y = gaussian_blur(y, [2 * math.ceil(3 * level) + 1] * 2, [level, level])
    elif kind == "black rectangles":
        side, ar_h, ar_w = h // 4, torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
        for _ in range(int(level)):
            top = torch.randint(0, h - side, (N_FAKE, 1, 1), generator=g)
            left = torch.randint(0, w - side, (N_FAKE, 1, 1), generator=g)
            box = (ar_h >= top) & (ar_h < top + side) & (ar_w >= left) & (ar_w < left + side)
            y = y.masked_fill(box.unsqueeze(1), 0.0)
    elif kind == "swirl":  # skimage's swirl: the angle added falls off with the radius
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        r, phi = torch.sqrt(xs**2 + ys**2), torch.atan2(ys, xs)
        phi = phi + level * torch.exp(-r / 0.5 * math.log(2)) / 4
        grid = torch.stack([r * torch.cos(phi), r * torch.sin(phi)], -1).expand(N_FAKE, h, w, 2)
        y = F.grid_sample(y, grid, align_corners=True)
    elif kind == "salt and pepper":
        u = torch.rand(y.shape, generator=g)
        y = torch.where(u < level / 2, 0.0, torch.where(u < level, 1.0, y))
    elif kind == "other dataset":
        swap = torch.rand(N_FAKE, generator=g) < level
        y[swap] = other[torch.randperm(len(other), generator=g)[: int(swap.sum())]]
    return y.clamp(0, 1)


def model_sets(dataset: str, runs: Path, points: list[int]) -> dict[str, torch.Tensor]:
    """N_FAKE samples of the shipped VAE and DCGAN recipes after each of `points` training images."""
    recipes = {"vae": "vae_mnist.yaml", "gan": "dcgan_fashion.yaml"}
    out = {}
    for kind, recipe in recipes.items():
        for images in points:
            cfg = load_config(ROOT / "experiments" / recipe, [
                f"data.name={dataset}", f"name={kind}-{images}", f"log.runs_dir={runs}", "train.epochs=1000",
                f"train.max_images={images}", "train.patience=null", "train.eval_every_images=null",
                "eval.fid_samples=500", "eval.features=classifier"])
            build(cfg, quiet=True).fit()
            _, model, _ = load_run(runs / f"{kind}-{images}", "last")
            with torch.no_grad():
                out[f"{kind} after {images:,} images"] = model.sample(N_FAKE, torch.Generator().manual_seed(0))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(OTHER))
    parser.add_argument("--models", type=int, nargs="*", default=[2000, 8000, 32000],
                        help="training images at which the VAE's and the GAN's samples join the panel")
    args = parser.parse_args()
    data = DataConfig(name=args.dataset)
    test = load_data(data).test
    # Two random halves: MNIST's test split is two writer populations, first and last 5,000, and
    # halves along that line differ more (FID 6.05 in the label-free features) than most of the
    # mildest disturbances do.
    half = len(test) // 2
    halves = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))
    real = test.images[halves[:half]]
    pool, labels = test.images[halves[half:]].float() / 255, test.labels[halves[half:]]
    other = load_data(DataConfig(name=OTHER[args.dataset])).test.images.float() / 255
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))
    panel = {"real (level 0)": pool[order[:N_FAKE]]}
    for kind, levels in LEVELS.items():
        for level in levels:
            panel[f"{kind} {level:g}"] = disturb(kind, level, pool, labels, other, order)
    with tempfile.TemporaryDirectory() as runs:
        panel |= model_sets(args.dataset, Path(runs), args.models)
    extractors = {}
    for kind in ("contrastive", "classifier", "inception"):
        try:
            extractors[kind] = load_extractor(kind, data)
        except UserError as exc:  # Inception without weights on disk: left out, and said
            print(f"{kind}: left out ({exc})")
    fid: dict[str, dict[str, float]] = {}
    for kind, extractor in extractors.items():
        stats = gaussian_stats(extract(extractor, real))
        fid[kind] = {name: round(frechet_distance(*stats, *gaussian_stats(extract(extractor, images))), 4)
                     for name, images in panel.items()}
        print(kind, extractor.name, fid[kind])
    names = list(panel)
    spearman = {f"{a} vs {b}": round(float(spearmanr([fid[a][n] for n in names], [fid[b][n] for n in names])[0]),
                                     4) for i, a in enumerate(fid) for b in list(fid)[i + 1:]}
    rises = {kind: {d: all(fid[kind][x] < fid[kind][y] for x, y in zip(
        ["real (level 0)", *[f"{d} {v:g}" for v in LEVELS[d]]], [f"{d} {v:g}" for v in LEVELS[d]]))
        for d in LEVELS} for kind in fid}
    result = {"dataset": args.dataset, "real_images": half, "images_per_set": N_FAKE, "sets": len(names),
              "extractors": {k: e.name for k, e in extractors.items()}, "spearman": spearman,
              "rises_with_level": rises, "fid": fid}
    print("spearman:", spearman)
    print("rises with level:", rises)
    write_result(f"extractor_agreement-{args.dataset}", result)
    plot(fid, args.dataset)


def plot(fid: dict[str, dict[str, float]], dataset: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    a, b = fid["contrastive"], fid["classifier"]
    for name in a:
        group = next((d for d in LEVELS if name.startswith(d)), "models" if "after" in name else "real")
        colour = f"C{list(LEVELS).index(group)}" if group in LEVELS else "C8" if group == "models" else "k"
        axes[0].scatter(b[name], a[name], s=14, label=group, c=colour)
    handles, labels = axes[0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    axes[0].legend(unique.values(), unique.keys(), fontsize=7)
    axes[0].set(xscale="log", yscale="log", xlabel="classifier FID", ylabel="label-free FID",
                title=f"{dataset}: the panel in both extractors")
    for i, d in enumerate(LEVELS):
        values = [a["real (level 0)"]] + [a[f"{d} {v:g}"] for v in LEVELS[d]]
        axes[1].plot(range(5), values, marker="o", label=d, c=f"C{i}")
    axes[1].set(yscale="log", xlabel="disturbance level (0: undisturbed)", ylabel="label-free FID",
                title="label-free FID by disturbance level")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"extractor_agreement-{dataset}.png", dpi=110)


if __name__ == "__main__":
    main()
