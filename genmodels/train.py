"""The shared training loop. It knows the model contract (models/base.py) and nothing about VAEs or GANs.

    trainer = Trainer(load_config("experiments/vae_mnist.yaml"))
    result = trainer.fit()
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import save_image
from tqdm.auto import tqdm

from genmodels import checkpoint as ckpt
from genmodels.config import Config
from genmodels import finetune
from genmodels.data import DataSplits, load_data, take
from genmodels.errors import ConfigError, NonFiniteLossError
from genmodels.metrics.quality import SampleQuality
from genmodels.models import GenerativeModel, build_model
from genmodels.models.base import EvalContext
from genmodels.tblog import grid, log_hparams


def flush_denormals() -> bool:
    """Compute denormal floats (float32: below 1.2e-38) as zero on the CPU, as TensorFlow does by
    default; False where the CPU cannot (then nothing changes).

    Adam's first moment of a weight whose gradient stays zero (an always-black pixel's, a dead
    ReLU's) shrinks by beta1 each step into the denormal range after ~600 steps, where x86
    arithmetic is many times slower: without this, a CPU step of the MLP VAE gets 35% slower from
    the third Fashion-MNIST epoch on. The mode is per thread and torch's worker threads copy it
    when they start, so it is set before any parallel work: first thing in the CLI and in tuning
    workers, and again when a Trainer is built (then it reaches the worker threads only if none
    ran yet). Changes no result beyond 1e-38.
    """
    return torch.set_flush_denormal(True)


def pick_device(name: str = "auto") -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device: 'cuda' asked for but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def iter_batches(images: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive slices of a split: evaluation needs no shuffling."""
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size]


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a `train.precision` setting means on `device`; None is float32."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision: 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def bar_iter(items: Iterator[torch.Tensor], bar: tqdm) -> Iterator[torch.Tensor]:
    for item in items:
        yield item
        bar.update()


class Updater:
    """Applies one optimizer update for a model's training_step.

    Mixed precision and gradient clipping live here, once, so no model repeats them. float16
    gets a GradScaler per optimizer (its gradients underflow otherwise); bfloat16 has float32's
    range and needs none.
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], device: torch.device,
                 amp_dtype: torch.dtype | None = None, grad_clip: float | None = None):
        self.optimizers = optimizers
        self.device = device
        self.amp_dtype = amp_dtype
        use_scaler = amp_dtype == torch.float16
        self.scalers = {name: torch.amp.GradScaler(device.type, enabled=use_scaler) for name in optimizers}
        self.grad_clip = grad_clip

    @classmethod
    def plain(cls, optimizers: dict[str, torch.optim.Optimizer]) -> "Updater":
        """For using a model without the Trainer: float32, no clipping."""
        return cls(optimizers, torch.device("cpu"))

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def step(self, name: str, loss: torch.Tensor) -> None:
        opt, scaler = self.optimizers[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if self.grad_clip is not None:
            scaler.unscale_(opt)
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        scaler.step(opt)
        scaler.update()


class Callback(Protocol):
    def on_epoch_end(self, trainer: "Trainer", epoch: int, metrics: dict[str, float]) -> None:
        """Called after each epoch's held-out evaluation and checkpoint. May raise to stop
        (the tuner's pruning callback raises optuna.TrialPruned) or set trainer.should_stop."""


class Trainer:
    def __init__(
        self,
        cfg: Config,
        data: DataSplits | None = None,
        model: GenerativeModel | None = None,
        callbacks: Sequence[Callback] = (),
        run_dir: str | Path | None = None,
        quiet: bool = False,
    ):
        flush_denormals()
        self.cfg = cfg
        self.device = pick_device(cfg.train.device)
        self.run_dir = Path(run_dir) if run_dir else cfg.run_dir()
        self.callbacks = list(callbacks)
        self.quiet = quiet
        torch.manual_seed(cfg.seed)
        source = finetune.load_source(cfg.finetune) if cfg.finetune else None
        source_shape = tuple(source["image_shape"]) if source else None
        self.data = data or load_data(cfg.data, self.device, source_shape)
        if source_shape and self.data.image_shape != source_shape:
            raise ConfigError(f"finetune.from: the checkpoint's model takes images {source_shape}, "
                              f"data '{cfg.data.name}' has {self.data.image_shape}")
        # Sample-quality metrics (FID & co.); the feature extractor loads only if a model asks.
        self.quality = SampleQuality(
            cfg.eval.features, cfg.data.name, cfg.data.root, cfg.data.split_seed, cfg.data.heldout_fraction,
            self.device, quiet, cfg.eval.kid_subsets, cfg.eval.kid_subset_size, cfg.eval.pr_k,
        )
        torch.manual_seed(cfg.seed)  # the same init whatever loading consumed
        self.model = (model or build_model(cfg.model, self.data.image_shape)).to(self.device)
        # Fine-tuning: source weights in, chosen parameters re-drawn or frozen, before the
        # optimizers are built so frozen parameters never reach one.
        self.finetune_info = finetune.prepare(self.model, cfg.model.kind, cfg.finetune, source) if source else None
        self._frozen_modules = finetune.frozen_modules(self.model) if source else []
        self.optimizers = self.model.configure_optimizers(cfg.optim)
        self.updater = Updater(self.optimizers, self.device, autocast_dtype(cfg.train.precision, self.device),
                               cfg.train.grad_clip)
        self.shuffle = torch.Generator().manual_seed(cfg.seed + 1)
        # Progress, all of it saved in checkpoints.
        self.epoch = 0  # completed epochs
        self.step = 0  # completed optimizer steps (training_step calls)
        self.batch_index = 0  # within the current epoch
        self.perm: torch.Tensor | None = None  # the current epoch's order
        self.best: dict[str, Any] | None = None  # {"epoch", "value", "metrics"}
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []
        self.should_stop = False
        self.stop_reason = ""
        self._epoch_train: dict[str, float] = {}
        self._layout_written = False
        self._interrupted = False
        self._writer: SummaryWriter | None = None

    # --- checkpoints -------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.cfg.model.kind,
            "config": self.cfg.to_dict(),
            "image_shape": list(self.data.image_shape),
            "model": self.model.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scalers": {k: s.state_dict() for k, s in self.updater.scalers.items()},
            "rng": ckpt.rng_state(self.shuffle),
            "epoch": self.epoch,
            "step": self.step,
            "batch_index": self.batch_index,
            "perm": self.perm,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"]["model"] != self.cfg.model.model_dump(mode="json"):
            raise ConfigError(
                f"{self.run_dir}: checkpoint was trained with model {state['config']['model']}, "
                f"the config now says {self.cfg.model.model_dump(mode='json')}"
            )
        self.model.load_state_dict(state["model"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, scaler in self.updater.scalers.items():
            scaler.load_state_dict(state["scalers"][name])
        ckpt.set_rng_state(state["rng"], self.shuffle)
        self.epoch, self.step, self.batch_index = state["epoch"], state["step"], state["batch_index"]
        self.perm = state["perm"]
        self.best, self.bad_epochs, self.history = state["best"], state["bad_epochs"], state["history"]
        # An early-stopped run is finished: resuming it reports, it does not train on.
        self.stop_reason = state["stop_reason"]
        self.should_stop = bool(self.stop_reason)

    def save(self, name: str = "last.pt", *also: str) -> Path:
        """Checkpoint the full training state to run_dir/name, and to run_dir/<also> (copies)."""
        path = self.run_dir / name
        ckpt.save_checkpoint(path, self.state_dict(), *(self.run_dir / n for n in also))
        return path

    # --- the loop ----------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until cfg.train.epochs, early stopping or a callback says stop.

        resume=True continues exactly from run_dir/last.pt: same parameters, optimizer moments,
        RNG streams and data order as if training had never stopped.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.load_state_dict(ckpt.load_checkpoint(self.run_dir / "last.pt", self.device))
        else:
            # The global RNG drives e.g. the VAE's reparameterisation noise. Seeding it here, not
            # only at construction, keeps two Trainers built side by side independent.
            torch.manual_seed(self.cfg.seed)
        ckpt.write_text(self.run_dir / "config.yaml", yaml.safe_dump(self.cfg.to_dict(), sort_keys=False))
        # purge_step drops events a crashed run wrote after its last checkpoint (those at the
        # checkpoint's own step were written before it and stay).
        self._writer = SummaryWriter(str(self.run_dir), purge_step=self.step + 1 if resume else None)
        start = time.perf_counter()
        try:
            with self._interrupt_guard():
                while self.epoch < self.cfg.train.epochs and not self.should_stop:
                    self._train_epoch()
                    self._end_epoch()
        except KeyboardInterrupt:
            self.save()
            self._log(f"interrupted at epoch {self.epoch + 1}, step {self.step}; saved {self.run_dir / 'last.pt'}; "
                      f"continue with --resume")
            raise
        finally:
            result = self._finish(time.perf_counter() - start)
            self._writer.close()
        return result

    def _train_epoch(self) -> None:
        train = self.data.train.images
        bs = self.cfg.train.batch_size
        if self.perm is None:
            self.perm = torch.randperm(train.shape[0], generator=self.shuffle)
        perm = self.perm.to(self.device)
        n_batches = math.ceil(train.shape[0] / bs)
        # Each loss's values since the last log line (a GAN reports g_loss only on its generator
        # steps), and its epoch sum and count for the epoch mean beside the held-out metrics.
        # Reduced once per log window, not per step: a tensor add per loss per step costs more.
        window: dict[str, list[torch.Tensor]] = {}
        epoch_sums: dict[str, tuple[float, int]] = {}
        self.model.train()
        for module in self._frozen_modules:
            module.eval()  # frozen BatchNorm keeps its statistics
        bar = self._progress(n_batches, f"epoch {self.epoch + 1}/{self.cfg.train.epochs}", self.batch_index)
        try:
            while self.batch_index < n_batches:
                idx = perm[self.batch_index * bs : (self.batch_index + 1) * bs]
                losses = self.model.training_step(take(train, idx), self.updater)
                self.step += 1
                self.batch_index += 1
                for k, v in losses.items():
                    window.setdefault(k, []).append(v)
                if self.step % self.cfg.train.log_every == 0:
                    bar.set_postfix(self._flush(window, epoch_sums), refresh=False)
                    window = {}
                bar.update()
                if self._interrupted:
                    raise KeyboardInterrupt
        finally:
            if window:  # log the partial window, also when interrupted, so nothing is lost
                self._flush(window, epoch_sums)
            bar.close()
        self.perm = None
        self.batch_index = 0
        self._epoch_train = {k: total / n for k, (total, n) in epoch_sums.items()}

    def _flush(self, window: dict[str, list[torch.Tensor]],
               epoch_sums: dict[str, tuple[float, int]]) -> dict[str, float]:
        """Log each loss's mean over the window as train/<k> and add the window to the epoch sums."""
        sums = {k: torch.stack(vs).sum().item() for k, vs in window.items()}
        values = {k: sums[k] / len(window[k]) for k in window}
        for k, total in sums.items():
            epoch_total, n = epoch_sums.get(k, (0.0, 0))
            epoch_sums[k] = (epoch_total + total, n + len(window[k]))
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(f"non-finite train/{bad[0]} = {values[bad[0]]} at step {self.step}")
        for k, v in values.items():
            self._writer.add_scalar(f"train/{k}", v, self.step)
        return values

    def evaluate(self, split: str = "heldout", full: bool = False, iwae_k: int = 0) -> dict[str, float]:
        """The model's metrics on the held-out or test split, with fixed noise: same weights,
        same numbers. full=True asks for the final-report metrics too (e.g. KID, precision/recall)."""
        images = {"heldout": self.data.heldout, "test": self.data.test}[split].images
        self.model.eval()
        ctx = EvalContext(
            generator=torch.Generator(self.device).manual_seed(self.cfg.seed + 2),
            split=split, full=full, iwae_k=iwae_k, quality=self.quality, fid_samples=self.cfg.eval.fid_samples,
        )
        bs = self.cfg.train.eval_batch_size
        with self._progress(math.ceil(len(images) / bs), f"evaluating ({split})") as bar:
            return self.model.evaluate(bar_iter(iter_batches(images, bs), bar), ctx)

    def _end_epoch(self) -> None:
        metrics = self.evaluate("heldout")
        self.epoch += 1
        for k, v in metrics.items():
            self._writer.add_scalar(f"heldout/{k}", v, self.step)
        self._log_train_vs_heldout(metrics)
        self._log_images()
        self.history.append({"epoch": self.epoch, "step": self.step, **metrics})
        value = metrics[self.model.monitor]
        if not math.isfinite(value):
            raise NonFiniteLossError(f"non-finite heldout/{self.model.monitor} = {value} at epoch {self.epoch}")
        names = []
        if self._improved(value):
            self.best = {"epoch": self.epoch, "value": value, "metrics": metrics}
            self.bad_epochs = 0
            names.append("best.pt")
        else:
            self.bad_epochs += 1
            if self.cfg.train.patience and self.bad_epochs >= self.cfg.train.patience:
                self.should_stop = True
                self.stop_reason = f"early stop: no heldout/{self.model.monitor} gain in {self.bad_epochs} epochs"
        if self.epoch % self.cfg.train.checkpoint_every == 0 or self.should_stop or self.epoch == self.cfg.train.epochs:
            names.append("last.pt")
        if names:  # the same state: serialized once, copied to the other name
            self.save(*names)
        self._log(f"epoch {self.epoch}: " + "  ".join(f"heldout/{k}={v:.4f}" for k, v in metrics.items()))
        for cb in self.callbacks:
            cb.on_epoch_end(self, self.epoch, metrics)

    def _log_train_vs_heldout(self, metrics: dict[str, float]) -> None:
        """Epoch means of the training losses as epoch_train/<k>, and a TensorBoard custom-scalars
        chart per loss the held-out split also reports: overfitting shows as the curves part."""
        train = self._epoch_train
        for k, v in train.items():
            self._writer.add_scalar(f"epoch_train/{k}", v, self.step)
        common = [k for k in train if k in metrics]
        if common and not self._layout_written:
            self._writer.add_custom_scalars({"train vs held-out": {
                k: ["Multiline", [f"epoch_train/{k}", f"heldout/{k}"]] for k in common}})
            self._layout_written = True

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        delta = self.cfg.train.min_delta
        if self.model.monitor_mode == "max":
            return value > self.best["value"] + delta
        return value < self.best["value"] - delta

    def _log_images(self) -> None:
        n = min(self.cfg.log.n_images, len(self.data.heldout))
        nrow = max(1, int(math.sqrt(n)))
        self.model.eval()
        for name, images in self.model.image_grids(self.data.heldout.images[:n], self._fixed_noise()).items():
            self._writer.add_image(f"samples/{name}", grid(images, nrow), self.step)

    def _fixed_noise(self) -> torch.Generator:
        """The same noise for every sample grid of a run (TensorBoard each epoch, samples.png)."""
        return torch.Generator(self.device).manual_seed(self.cfg.seed + 3)

    def _finish(self, seconds: float) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        final = {k: v for k, v in last.items() if k not in ("epoch", "step")}
        result = {
            "name": self.cfg.name,
            "run_dir": str(self.run_dir),
            "device": str(self.device),
            "epochs": self.epoch,
            "steps": self.step,
            "monitor": self.model.monitor,
            "heldout": final,
            "best": self.best,
            "stop_reason": self.stop_reason,
            "train_seconds": round(seconds, 3),
            "history": self.history,
        }
        if final:
            log_hparams(self._writer, self.cfg.flat(), {f"heldout_{k}": v for k, v in final.items()}, self.step)
            ckpt.write_json(self.run_dir / "metrics.json", result)
            self.model.eval()
            images = self.model.sample(self.cfg.log.n_images, self._fixed_noise())
            nrow = max(1, int(math.sqrt(self.cfg.log.n_images)))
            ckpt.atomic_write(self.run_dir / "samples.png",
                              lambda tmp: save_image(images.cpu(), tmp, nrow=nrow, format="png"))
        return result

    # --- small helpers -----------------------------------------------------------------------

    def _progress(self, total: int, desc: str, initial: int = 0) -> tqdm:
        """A progress bar on stderr, silent with --quiet or when stderr is not a terminal."""
        return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True,
                    disable=self.quiet or not sys.stderr.isatty())

    def _log(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)

    @contextlib.contextmanager
    def _interrupt_guard(self) -> Iterator[None]:
        """First Ctrl-C: finish the current step, checkpoint, stop. Second: stop at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self._interrupted:
                raise KeyboardInterrupt
            self._interrupted = True

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            self._interrupted = False
