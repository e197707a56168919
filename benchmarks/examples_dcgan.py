"""The pytorch/examples DCGAN training loop (dcgan/main.py), on the toolkit's DCGAN networks, as the
baseline the GAN benchmarks compare against.

What is kept from main.py: a torchvision dataset with ToTensor + Normalize(0.5, 0.5), a shuffling
DataLoader with its default 2 workers, batch 64, Adam 2e-4 with beta1 0.5 for both networks, the
non-saturating loss (BCE; with logits here, the same mathematics as its Sigmoid + BCELoss), one
generator pass per step reused for the generator update, a log line per iteration (with .item()
reads), a real and a fixed-noise sample grid written every 100 iterations, and both networks
saved after each epoch. No spectral norm, no EMA. What differs: the networks are genmodels'
DCGAN generator and discriminator for 28x28 images (main.py resizes to 64x64), so both loops
train the very same nets.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from torchvision.utils import save_image

from genmodels.models import GAN


def networks(seed: int, hidden: int = 64, latent_dim: int = 100) -> GAN:
    """genmodels' DCGAN (2 blocks, 64/128 channels), DCGAN-initialised from `seed`."""
    torch.manual_seed(seed)
    return GAN((1, 28, 28), arch="dcgan", n_layers=2, hidden=hidden, latent_dim=latent_dim, loss="ns")


def optimizers(gan: GAN) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """main.py's optimisers, discriminator's then generator's: Adam 2e-4 with beta1 0.5."""
    return (torch.optim.Adam(gan.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(gan.generator.parameters(), lr=2e-4, betas=(0.5, 0.999)))


def train(root: Path, images: int, seed: int, out_dir: Path, workers: int = 2, batch_size: int = 64,
          device: torch.device | str = "cpu") -> tuple[nn.Module, float]:
    """Train for `images` training images the main.py way; the generator and the wall time
    (dataset set-up included)."""
    start = time.perf_counter()
    log = io.StringIO()  # main.py prints these lines; kept off the benchmark's output
    out_dir.mkdir(parents=True, exist_ok=True)
    dataset = datasets.FashionMNIST(str(root), train=True, download=False, transform=transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))]))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(seed))
    gan = networks(seed).to(device)
    net_g, net_d = gan.generator, gan.discriminator
    fixed_noise = torch.randn(64, gan.latent_dim, device=device)
    opt_d, opt_g = optimizers(gan)
    done, epoch = 0, 0
    while done < images:
        for i, (real, _) in enumerate(loader):
            real = real.to(device)
            err_d, err_g, d_x, d_g_z1, d_g_z2 = step(net_g, net_d, opt_d, opt_g, real, gan.latent_dim)
            print(f"[{epoch}][{i}/{len(loader)}] Loss_D: {err_d.item():.4f} Loss_G: {err_g.item():.4f} "
                  f"D(x): {d_x:.4f} D(G(z)): {d_g_z1:.4f} / {d_g_z2:.4f}", file=log)
            if i % 100 == 0:
                save_image(real, out_dir / "real_samples.png", normalize=True)
                with torch.no_grad():
                    save_image(net_g(fixed_noise).detach(), out_dir / f"fake_samples_epoch_{epoch:03d}.png",
                               normalize=True)
            done += real.size(0)
            if done >= images:
                break
        torch.save(net_g.state_dict(), out_dir / f"netG_epoch_{epoch}.pth")
        torch.save(net_d.state_dict(), out_dir / f"netD_epoch_{epoch}.pth")
        epoch += 1
    return net_g, time.perf_counter() - start


def step(net_g: nn.Module, net_d: nn.Module, opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer,
         real: torch.Tensor, latent_dim: int) -> tuple[torch.Tensor, torch.Tensor, float, float, float]:
    """One iteration of main.py: the discriminator on a real and a fake batch, then the generator
    through the same fake batch. Its losses and main.py's D(x), D(G(z)) before / after D's update."""
    b = real.size(0)
    ones, zeros = torch.ones(b, device=real.device), torch.zeros(b, device=real.device)
    # (1) update D: maximize log(D(x)) + log(1 - D(G(z)))
    net_d.zero_grad()
    out_real = net_d(real).view(-1)
    err_d_real = F.binary_cross_entropy_with_logits(out_real, ones)
    err_d_real.backward()
    d_x = torch.sigmoid(out_real).mean().item()
    fake = net_g(torch.randn(b, latent_dim, device=real.device))
    out_fake = net_d(fake.detach()).view(-1)
    err_d_fake = F.binary_cross_entropy_with_logits(out_fake, zeros)
    err_d_fake.backward()
    d_g_z1 = torch.sigmoid(out_fake).mean().item()
    opt_d.step()
    # (2) update G: maximize log(D(G(z)))
    net_g.zero_grad()
    out = net_d(fake).view(-1)
    err_g = F.binary_cross_entropy_with_logits(out, ones)
    err_g.backward()
    d_g_z2 = torch.sigmoid(out).mean().item()
    opt_g.step()
    return err_d_real + err_d_fake, err_g, d_x, d_g_z1, d_g_z2


@torch.no_grad()
def sample(net_g: nn.Module, n: int, latent_dim: int = 100, seed: int = 0) -> torch.Tensor:
    """n images in [0, 1] from a generator trained by `train` (eval mode: BatchNorm's running
    statistics, as genmodels samples)."""
    net_g.eval()
    generator = torch.Generator().manual_seed(seed)
    chunks = [net_g(torch.randn(min(1000, n - s), latent_dim, generator=generator)) for s in range(0, n, 1000)]
    return ((torch.cat(chunks) + 1) / 2).clamp(0, 1)
