"""The GAN overfitting watch: d_auc against pairwise counting, r_t / r_v / d_gap against the
discriminator re-run by hand, the curves in TensorBoard, and model.overfit_gap ending a run."""

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from genmodels.config import Config
from genmodels.experiment import build
from genmodels.images import to_unit
from genmodels.models.gan_watch import auc, overfitting


def test_auc_is_the_share_of_real_over_fake_pairs():
    g = torch.Generator().manual_seed(0)
    d_real, d_fake = torch.randn(70, 1, generator=g) + 0.5, torch.randn(50, 1, generator=g)
    pairs = (d_real.flatten()[:, None] > d_fake.flatten()[None, :]).double().mean()
    assert abs(auc(d_real, d_fake) - float(pairs)) < 1e-12


def test_overfitting_in_closed_form():
    train, split = torch.tensor([2.0, 1.0, -0.5, 3.0]), torch.tensor([1.0, -1.0, -2.0, 0.5])
    out = overfitting(train, split)
    assert out == {"r_t": 0.5, "r_v": 0.0, "d_real": -0.375, "d_gap": 1.375 - -0.375}
    assert overfitting(None, split) == {"r_v": 0.0, "d_real": -0.375}


def config(tmp_path, name, gap=None):
    # 100 training and 100 held-out images, a balanced hinge GAN: its D fits the 100 within epochs
    return Config.model_validate({
        "name": name, "seed": 0, "data": {"name": "mnist", "limit": 200, "heldout_fraction": 0.5},
        "model": {"kind": "gan", "arch": "dcgan", "n_layers": 2, "hidden": 16, "latent_dim": 16, "loss": "hinge",
                  "spectral_norm": True, "overfit_gap": gap},
        "train": {"epochs": 5, "batch_size": 25, "precision": "fp32", "stop_on_failure": False},
        "eval": {"fid_samples": 100}, "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 4}})


def test_the_watch_is_the_discriminator_on_both_splits_and_can_stop_a_run(tmp_path):
    trainer = build(config(tmp_path, "watch"), quiet=True)
    trainer.fit()
    history = trainer.state.history
    last, n = history[-1], min(len(trainer.data.heldout), 100)
    model = trainer.model.eval()
    with torch.no_grad():
        d_train = model.discriminator(to_unit(trainer.data.train.images[:n]) * 2 - 1).flatten().double()
        d_split = model.discriminator(to_unit(trainer.data.heldout.images[:n]) * 2 - 1).flatten().double()
    assert abs(last["r_t"] - float(d_train.sign().mean())) < 1e-9
    assert abs(last["r_v"] - float(d_split.sign().mean())) < 1e-9
    assert abs(last["d_gap"] - float(d_train.mean() - d_split.mean())) < 1e-4
    events = EventAccumulator(str(tmp_path / "runs" / "watch"))
    events.Reload()
    for tag in ("heldout/r_t", "heldout/r_v", "heldout/d_gap", "heldout/fid"):
        assert len(events.Scalars(tag)) == len(history), tag
    # The same run with a threshold under its first opening gap stops at that evaluation.
    gaps = [h["r_t"] - h["r_v"] for h in history]
    first = next(i for i, g in enumerate(gaps) if g > 0.05)
    stopped = build(config(tmp_path, "stopped", gap=gaps[first] - 0.01), quiet=True)
    stopped.fit()
    assert len(stopped.state.history) == first + 1, gaps
    assert stopped.state.stop_reason.startswith("the discriminator overfits: r_t - r_v = ")
