import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from genmodels import checkpoint as ckpt
from genmodels.errors import Interrupted, NonFiniteLossError, UserError
from genmodels.models import VAE
from genmodels.experiment import build
from genmodels.train import Callback

from conftest import tiny_config


def scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    # sorted by step: a resumed run has two event files, read in file-name order
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_same_seed_same_numbers(tmp_path):
    a = build(tiny_config(tmp_path, "name=a", "train.epochs=2"), quiet=True)
    b = build(tiny_config(tmp_path, "name=b", "train.epochs=2"), quiet=True)
    ra, rb = a.fit(), b.fit()
    assert ra.history == rb.history
    assert all(torch.equal(x, y) for x, y in zip(params(a.model), params(b.model)))
    sa, sb = scalars(a.run_dir), scalars(b.run_dir)
    assert sa["train/loss"] == sb["train/loss"] and len(sa["train/loss"]) >= 5
    c = build(tiny_config(tmp_path, "name=c", "train.epochs=2", "seed=1"), quiet=True)
    assert c.fit().history != ra.history


def test_resume_equivalence(tmp_path):
    """2 epochs straight == 1 epoch, checkpoint, resume for 1 more: bitwise parameters, same logs."""
    straight = build(tiny_config(tmp_path, "name=straight", "train.epochs=2"), quiet=True)
    straight.fit()
    first = build(tiny_config(tmp_path, "name=split", "train.epochs=1"), quiet=True)
    first.fit()
    resumed = build(tiny_config(tmp_path, "name=split", "train.epochs=2"), quiet=True, resume=True)
    result = resumed.fit()
    assert result.epochs == 2 and resumed.state.step == straight.state.step
    for a, b in zip(params(straight.model), params(resumed.model)):
        assert torch.equal(a, b)
    for name, opt in straight.optimizers.items():
        sa, sb = opt.state_dict()["state"], resumed.optimizers[name].state_dict()["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    s1, s2 = scalars(straight.run_dir), scalars(resumed.run_dir)
    for tag in ("train/loss", "train/recon", "train/kl", "heldout/neg_elbo", "heldout/recon"):
        assert s1[tag] == s2[tag], tag
    assert straight.state.history == resumed.state.history


class InterruptingVAE(VAE):
    """Sends itself a signal in the middle of an epoch, as a user (Ctrl-C) or a scheduler would."""

    interrupt_at = 7
    signum = signal.SIGINT

    def training_step(self, batch, update):
        out = super().training_step(batch, update)
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.interrupt_at:
            os.kill(os.getpid(), self.signum)
        return out


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_epoch_then_resume_is_exact(tmp_path, signum):
    straight = build(tiny_config(tmp_path, "name=straight", "train.epochs=2"), quiet=True)
    straight.fit()
    cfg = tiny_config(tmp_path, "name=interrupted", "train.epochs=2")
    torch.manual_seed(cfg.seed)
    model = InterruptingVAE((1, 28, 28), hidden=32, latent_dim=4)
    model.signum = signum
    interrupted = build(cfg, model=model, quiet=True)
    with pytest.raises(Interrupted) as stopped:
        interrupted.fit()
    assert stopped.value.signum == signum and stopped.value.exit_code == 128 + signum
    state = ckpt.load_checkpoint(interrupted.run_dir / "last.pt")
    assert state.epoch == 0 and state.batch_index == 7 and state.step == 7
    resumed = build(cfg, quiet=True, resume=True)
    resumed.fit()
    for a, b in zip(params(straight.model), params(resumed.model)):
        assert torch.equal(a, b)
    assert scalars(straight.run_dir)["heldout/neg_elbo"] == scalars(resumed.run_dir)["heldout/neg_elbo"]


def test_run_dir_contents_and_tensorboard_tags(tmp_path):
    trainer = build(tiny_config(tmp_path, "train.epochs=2"), quiet=True)
    trainer.fit()
    run = trainer.run_dir
    for name in ("config.yaml", "metrics.json", "last.pt", "best.pt", "samples.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and metrics["monitor"] == "neg_elbo"
    assert set(metrics["heldout"]) >= {"recon", "kl", "neg_elbo"}

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "train/recon", "train/kl", "heldout/neg_elbo", "heldout/kl",
            "hparams/heldout_neg_elbo"} <= set(tags["scalars"])
    assert {"samples/fixed_noise", "samples/reconstructions"} <= set(tags["images"])
    assert len(acc.Images("samples/fixed_noise")) == 2  # one grid per epoch
    hparams = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(hparams)
    start = hparams["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(start).session_start_info
    assert info.hparams["optim.lr"].number_value == pytest.approx(1e-3)
    assert info.hparams["model.kind"].string_value == "vae"


def test_checkpoint_loads_weights_only(tmp_path):
    trainer = build(tiny_config(tmp_path), quiet=True)
    trainer.fit()
    state = torch.load(trainer.run_dir / "last.pt", weights_only=True)
    assert state["format_version"] == ckpt.FORMAT_VERSION and state["epoch"] == 1
    assert ckpt.load_checkpoint(trainer.run_dir / "last.pt").images_seen == len(trainer.data.train)
    assert not list(trainer.run_dir.glob("*.tmp"))
    (trainer.run_dir / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="broken.pt: not a readable checkpoint"):
        ckpt.load_checkpoint(trainer.run_dir / "broken.pt")


def test_early_stopping(tmp_path):
    # min_delta larger than any possible gain: every epoch after the first counts as no gain.
    trainer = build(tiny_config(tmp_path, "train.epochs=10", "train.patience=2", "train.min_delta=1e9"), quiet=True)
    result = trainer.fit()
    assert result.epochs == 3 and result.best["epoch"] == 1
    assert "early stop" in result.stop_reason


def test_nan_loss_raises(tmp_path):
    trainer = build(tiny_config(tmp_path, "optim.lr=1e12", "optim.name=sgd", "train.log_every=1"), quiet=True)
    with pytest.raises(NonFiniteLossError, match="training diverged: train/"):
        trainer.fit()
    # nothing of the diverged weights is left to look like a result
    assert not (trainer.run_dir / "metrics.json").exists() and not (trainer.run_dir / "samples.png").exists()
    assert "train/" in json.loads((trainer.run_dir / "failed.json").read_text())["reason"]


def test_callback_sees_each_epoch(tmp_path):
    seen = []

    class Recorder(Callback):
        def on_evaluation(self, trainer, metrics):
            seen.append((trainer.state.epoch, metrics["neg_elbo"]))
            if trainer.state.epoch == 2:
                trainer.state.should_stop = True

    build(tiny_config(tmp_path, "train.epochs=5"), callbacks=[Recorder()], quiet=True).fit()
    assert [e for e, _ in seen] == [1, 2]


def watch_steps(trainer):
    """The global gradient norm each optimizer step sees, and the dtype the first layer computes in."""
    norms, dtypes = [], set()
    optimizer = trainer.optimizers["vae"]

    def before_step(opt, args, kwargs):
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    optimizer.register_step_pre_hook(before_step)
    first_linear = next(m for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.Linear))
    first_linear.register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    return norms, dtypes


def test_grad_clip_and_bf16_apply(tmp_path):
    clipped = build(tiny_config(tmp_path, "name=clipped", "train.grad_clip=0.5", "train.precision=bf16"), quiet=True)
    norms, dtypes = watch_steps(clipped)
    assert clipped.fit().heldout["neg_elbo"] > 0
    assert max(norms) <= 0.5 * (1 + 1e-5) and torch.bfloat16 in dtypes
    plain = build(tiny_config(tmp_path, "name=plain", "train.precision=fp32"), quiet=True)
    norms, dtypes = watch_steps(plain)
    plain.fit()
    assert max(norms) > 0.5 and dtypes == {torch.float32}  # without them the same run would fail the above


FLUSH_PROBE = """
import sys, torch
from genmodels.runtime import flush_denormals
if sys.argv[1] == "flush" and not flush_denormals():
    sys.exit(3)  # this CPU has no flush-to-zero mode
torch.set_num_threads(2)
x = torch.full((1_000_000,), 1e-39)  # denormal float32; a million elements run on every worker thread
print(int(((x * 1.0) != 0).sum()))
"""


@pytest.mark.parametrize("mode, nonzero", [("flush", 0), ("plain", 1_000_000)])
def test_flush_denormals_reaches_worker_threads(mode, nonzero):
    out = subprocess.run([sys.executable, "-c", FLUSH_PROBE, mode], capture_output=True, text=True)
    if out.returncode == 3:
        pytest.skip("no flush-to-zero mode on this CPU")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == nonzero
