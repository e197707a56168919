"""The shared training loop. It knows the model contract (models/base.py) and nothing about model
families, fine-tuning, datasets or feature extractors: `genmodels.experiment` assembles those.

Under torchrun each process trains on its own share of every batch (train.batch_size is the
global batch), gradients are averaged over processes at every optimizer step, rank 0 evaluates
and writes, and its decisions (stop, prune) reach every rank.

    trainer = experiment.build(load_config("experiments/vae_mnist.yaml"))
    result = trainer.fit()
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from pydantic import BaseModel

from genmodels import distributed as dist
from genmodels.checkpoint import RunCheckpoint, load_checkpoint, load_weights, rng_state, save_checkpoint, set_rng_state
from genmodels.config import Config
from genmodels.data import DataSplits, take
from genmodels.errors import ConfigError, Interrupted, NonFiniteLossError, RunFailed
from genmodels.evaluation import eval_context, evaluate_split, progress
from genmodels.models.base import GenerativeModel, SampleScorer, Updater
from genmodels.recorder import RunRecorder
from genmodels.runtime import SignalFlag, pick_device, signals_deferred


class Callback:
    """Hooks into the loop; override the ones you need. A hook may raise to stop the run (the
    tuner's pruning callback raises optuna.TrialPruned) or set `trainer.should_stop`."""

    def on_fit_start(self, trainer: "Trainer") -> None:
        """After resuming, before the first step."""

    def on_train_epoch_start(self, trainer: "Trainer") -> None:
        """After the model is put in training mode, before (more of) an epoch's steps."""

    def on_evaluation(self, trainer: "Trainer", metrics: dict[str, float]) -> None:
        """After each held-out evaluation (every epoch, or every train.eval_every_images) and its
        checkpoint."""


class RunStopped(Exception):
    """Rank 0 ended the run (a callback raised there, e.g. the pruner); the other ranks stop too."""


class Trainer:
    def __init__(
        self,
        cfg: Config,
        data: DataSplits,
        model: GenerativeModel,
        callbacks: Sequence[Callback] = (),
        run_dir: str | Path | None = None,
        scorer: SampleScorer | None = None,
        quiet: bool = False,
    ):
        if cfg.model is None:
            raise ConfigError("model: the config has no model section (genmodels.experiment.build fills it in "
                              "from a fine-tuning source)")
        self.rank, self.world = dist.rank(), dist.world_size()
        if cfg.train.batch_size % self.world:
            raise ConfigError(f"train.batch_size: {cfg.train.batch_size} is the global batch; it must divide "
                              f"evenly over {self.world} processes")
        self.cfg = cfg
        self.device = pick_device(dist.device_name(cfg.train.device))
        self.data = data
        self.model = model.to(self.device)
        self.monitor = cfg.train.monitor or model.monitor
        if self.monitor not in model.metrics:
            raise ConfigError(f"train.monitor: '{self.monitor}' is not a metric a '{cfg.model.kind}' model reports "
                              f"(expected one of {', '.join(model.metrics)})")
        self.callbacks = list(callbacks)
        self.run_dir = Path(run_dir) if run_dir else cfg.run_dir()
        self.scorer = scorer
        self.quiet = quiet
        self.recorder = RunRecorder(self.run_dir, cfg, enabled=dist.is_main(), quiet=quiet)
        self.optimizers = self.model.configure_optimizers(cfg.optim)
        self.updater = Updater(self.optimizers, self.device, cfg.train.precision, cfg.train.grad_clip)
        self.shuffle = torch.Generator().manual_seed(cfg.seed + 1)  # the same data order on every rank
        # Progress, all of it saved in checkpoints.
        self.epoch = 0  # completed epochs
        self.step = 0  # completed training steps (training_step calls)
        self.images_seen = 0  # over all ranks
        self.batch_index = 0  # within the current epoch
        self.perm: torch.Tensor | None = None  # the current epoch's order
        self.best: dict[str, Any] | None = None  # {"epoch", "step", "images", "value", "metrics"}
        self.bad_evaluations = 0  # since the best one
        self.history: list[dict[str, Any]] = []  # one entry per held-out evaluation
        self.should_stop = False
        self.stop_reason = ""
        # Training losses since the last log line, and their sums since the last evaluation (for
        # the train-vs-held-out curves). Reduced once per log window, not per step: a tensor add
        # per loss per step costs more, and reading a value back stalls a GPU.
        self._window: dict[str, list[torch.Tensor]] = {}
        self._since_eval: dict[str, tuple[float, int]] = {}
        self._signal = SignalFlag()
        self._failed = False
        self._resume_rng: dict[str, Any] | None = None

    # --- checkpoints -------------------------------------------------------------------------

    def checkpoint(self) -> RunCheckpoint:
        rng = rng_state(self.shuffle)
        if self.world > 1:  # every rank's own noise stream, for an exact resume on as many ranks
            rng["ranks"] = dist.gather(torch.get_rng_state())
        return RunCheckpoint(
            kind=self.cfg.model.kind, config=self.cfg.to_dict(), image_shape=self.data.image_shape,
            model=self.model.state_dict(),
            optimizers={k: o.state_dict() for k, o in self.optimizers.items()},
            scalers={k: s.state_dict() for k, s in self.updater.scalers.items()},
            rng=rng, epoch=self.epoch, step=self.step, batch_index=self.batch_index,
            perm=self.perm, best=self.best, bad_epochs=self.bad_evaluations, history=self.history,
            stop_reason=self.stop_reason, images_seen=self.images_seen,
        )

    def restore(self, ckpt: RunCheckpoint, source: str) -> None:
        """Continue from `ckpt` at the next fit(): weights, optimizer moments, RNG streams, data
        order, progress."""
        own = self.cfg.model.model_dump(mode="json")
        if ckpt.config.get("model") != own:
            raise ConfigError(f"{source}: checkpoint was trained with model {ckpt.config.get('model')}, "
                              f"the config now says {own}")
        load_weights(self.model, ckpt.model, source)
        for name, opt in self.optimizers.items():
            if name not in ckpt.optimizers:
                raise ConfigError(f"{source}: checkpoint has no state for optimizer '{name}'")
            opt.load_state_dict(ckpt.optimizers[name])
        for name, scaler in self.updater.scalers.items():
            scaler.load_state_dict(ckpt.scalers.get(name, {}))
        self.shuffle.set_state(ckpt.rng["shuffle"].cpu())
        ranks = ckpt.rng.get("ranks")
        own_stream = ranks[self.rank] if ranks is not None and len(ranks) == self.world else ckpt.rng["torch"]
        # The global streams are set when fit starts, inside its own RNG scope.
        self._resume_rng = {**ckpt.rng, "torch": own_stream}
        self.epoch, self.step, self.batch_index = ckpt.epoch, ckpt.step, ckpt.batch_index
        self.perm, self.images_seen = ckpt.perm, ckpt.images_seen
        self.best, self.bad_evaluations, self.history = ckpt.best, ckpt.bad_epochs, ckpt.history
        # An early-stopped run is finished: resuming it reports, it does not train on.
        self.stop_reason = ckpt.stop_reason
        self.should_stop = bool(self.stop_reason)

    def save(self, name: str = "last.pt", *also: str) -> Path:
        """Checkpoint the full training state to run_dir/name, and to run_dir/<also> (copies).
        Under torchrun every rank takes part (their noise streams go in) and rank 0 writes."""
        path = self.run_dir / name
        ckpt = self.checkpoint()
        if dist.is_main():
            if "last.pt" in (name, *also):
                # The events on disk reach this step before the checkpoint does: a run killed later
                # resumes here, and its new writer drops what the killed one wrote after this step.
                self.recorder.flush()
            save_checkpoint(path, ckpt, *(self.run_dir / n for n in also))
        return path

    # --- the loop ----------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train until cfg.train.epochs (or max_images), early stopping or a callback says stop.

        resume=True continues exactly from run_dir/last.pt (unless `restore` already loaded a
        checkpoint): same parameters, optimizer moments, RNG streams and data order as if
        training had never stopped. The caller's global RNG is left as it was: training draws
        from its own stream.
        """
        if resume and self._resume_rng is None:
            last = self.run_dir / "last.pt"
            self.restore(load_checkpoint(last, self.device), str(last))
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if self._resume_rng is not None:
                set_rng_state(self._resume_rng, self.shuffle)
            else:
                # The global RNG drives e.g. the VAE's reparameterisation noise: each rank its own.
                torch.manual_seed(self.cfg.seed + 1000 * self.rank)
            dist.sync_module(self.model)  # every rank starts from rank 0's weights
            return self._fit(resumed=self._resume_rng is not None)

    def _fit(self, resumed: bool) -> dict[str, Any]:
        self.recorder.open(self.step if resumed else None)
        start = time.perf_counter()
        try:
            with signals_deferred() as self._signal:
                for cb in self.callbacks:
                    cb.on_fit_start(self)
                while not self._done():
                    self._train_epoch()
                if not self.stop_reason and (not self.history or self.history[-1].get("images") != self.images_seen):
                    self._evaluation()  # the final weights are always evaluated
        except Interrupted as exc:
            self.save()
            what = "interrupted" if exc.signum == signal.SIGINT else f"stopped by signal {exc.signum}"
            self.recorder.log(f"{what} at epoch {self.epoch + 1}, step {self.step}; saved {self.run_dir / 'last.pt'}; "
                              f"continue with --resume")
            raise
        except RunFailed as exc:
            # No checkpoint, metrics or samples of the failed weights: last.pt and best.pt keep
            # the last good state, and the reason goes where a reader of the run looks.
            self.stop_reason, self._failed = str(exc), True
            self.recorder.failed({"reason": str(exc), "epoch": self.epoch, "step": self.step,
                                  "images": self.images_seen})
            raise
        finally:
            result = self._finish(time.perf_counter() - start)
            self.recorder.close()
        return result

    def _done(self) -> bool:
        cap = self.cfg.train.max_images
        return self.should_stop or self.epoch >= self.cfg.train.epochs or (cap is not None and self.images_seen >= cap)

    def _evaluation_due(self) -> bool:
        every = self.cfg.train.eval_every_images
        last = self.history[-1].get("images", 0) if self.history else 0
        return every is not None and self.images_seen // every > last // every

    def _train_epoch(self) -> None:
        train = self.data.train.images
        bs = self.cfg.train.batch_size
        if self.perm is None:
            self.perm = torch.randperm(train.shape[0], generator=self.shuffle)
        perm = self.perm.to(self.device)
        # Under torchrun a final batch too small to give every rank an image is left out.
        n_batches = len(train) // bs + (len(train) % bs >= self.world)
        self._start_training()
        bar = progress(n_batches, f"epoch {self.epoch + 1}/{self.cfg.train.epochs}", self.quiet or self.rank > 0,
                       self.batch_index)
        try:
            while self.batch_index < n_batches and not self._done():
                batch = perm[self.batch_index * bs : (self.batch_index + 1) * bs]
                idx = batch.tensor_split(self.world)[self.rank]  # this rank's share
                losses = self.model.training_step(take(train, idx), self.updater)
                self.step += 1
                self.batch_index += 1
                self.images_seen += len(batch)
                for k, v in losses.items():
                    self._window.setdefault(k, []).append(v)
                if self.step % self.cfg.train.log_every == 0:
                    bar.set_postfix(self._flush(), refresh=False)
                bar.update()
                if dist.any_rank(self._signal.signum is not None):  # Ctrl-C or SIGTERM: stop after this step, saved
                    raise Interrupted(self._signal.signum or signal.SIGTERM)
                if self._evaluation_due():
                    self._flush()
                    self._evaluation()
                    self._start_training()
        finally:
            self._flush()  # the partial window, also when interrupted, so nothing is lost
            bar.close()
        if self.batch_index == n_batches:
            self.epoch += 1
            self.perm, self.batch_index = None, 0
            if self.cfg.train.eval_every_images is None:
                self._evaluation()

    def _start_training(self) -> None:
        self.model.train()
        for cb in self.callbacks:
            cb.on_train_epoch_start(self)

    def _flush(self) -> dict[str, float]:
        """Log each loss's mean over the window as train/<k> (rank 0's) and add the window to the
        sums since the last evaluation."""
        window, self._window = self._window, {}
        if not window:
            return {}
        sums = {k: torch.stack(vs).sum().item() for k, vs in window.items()}
        values = {k: sums[k] / len(window[k]) for k in window}
        for k, total in sums.items():
            so_far, n = self._since_eval.get(k, (0.0, 0))
            self._since_eval[k] = (so_far + total, n + len(window[k]))
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(f"training diverged: train/{bad[0]} = {values[bad[0]]} at step {self.step} "
                                     f"(lower optim.lr or set train.grad_clip)")
        self.recorder.scalars("train", values, self.step)
        return values

    def evaluate(self, split: str = "heldout", full: bool = False, options: BaseModel | None = None
                 ) -> dict[str, float]:
        """The model's metrics on the held-out or test split, with fixed noise: same weights,
        same numbers. full=True asks for the final-report metrics too (e.g. KID, precision/recall);
        `options` are the model family's own evaluation options."""
        images = {"heldout": self.data.heldout, "test": self.data.test}[split].images
        ctx = eval_context(self.cfg, self.device, split, full, self.scorer, options)
        return evaluate_split(self.model, images, ctx, self.cfg.train.eval_batch_size, self.quiet)

    def _evaluation(self) -> None:
        """Held-out metrics (computed by rank 0, shared with all), their logs, the checks (finite,
        not failed), best and last checkpoints, early stopping, then the callbacks."""
        dist.sync_module(self.model)  # rank 0's buffers (BatchNorm statistics, an EMA's) everywhere
        metrics = dist.broadcast(self.evaluate("heldout") if dist.is_main() else None)
        n_batches = math.ceil(len(self.data.train) / self.cfg.train.batch_size)
        epoch = round(self.epoch + self.batch_index / n_batches, 4)
        self.recorder.scalars("heldout", metrics, self.step)
        self.recorder.train_vs_heldout({k: total / n for k, (total, n) in self._since_eval.items()}, metrics, self.step)
        self._since_eval = {}
        if dist.is_main() and ((len(self.history) + 1) % self.cfg.log.images_every == 0 or self._done()):
            n = min(self.cfg.log.n_images, len(self.data.heldout))
            self.model.eval()
            self.recorder.images(self.model.image_grids(self.data.heldout.images[:n], self._fixed_noise()), self.step)
        self.history.append({"epoch": epoch, "step": self.step, "images": self.images_seen, **metrics})
        value = metrics[self.monitor]
        if not math.isfinite(value):
            raise NonFiniteLossError(f"training diverged: heldout/{self.monitor} = {value} at epoch {epoch} "
                                     f"(lower optim.lr or set train.grad_clip)")
        reason = self.model.failed(metrics, len(self.history)) if self.cfg.train.stop_on_failure else None
        if reason:
            raise RunFailed(f"run stopped at epoch {epoch}: {reason}")
        names = []
        if self._improved(value):
            self.best = {"epoch": epoch, "step": self.step, "images": self.images_seen, "value": value,
                         "metrics": metrics}
            self.bad_evaluations = 0
            names.append("best.pt")
        else:
            self.bad_evaluations += 1
            if self.cfg.train.patience and self.bad_evaluations >= self.cfg.train.patience:
                self.should_stop = True
                self.stop_reason = (f"early stop: no heldout/{self.monitor} gain in {self.bad_evaluations} "
                                    f"evaluations")
        if len(self.history) % self.cfg.train.checkpoint_every == 0 or self._done():
            names.append("last.pt")
        if names:  # the same state: serialized once, copied to the other name
            self.save(*names)
        where = f"epoch {epoch:g}" + (f" ({self.images_seen:,} images)" if self.cfg.train.eval_every_images else "")
        self.recorder.log(f"{where}: " + "  ".join(f"heldout/{k}={v:.4f}" for k, v in metrics.items()))
        self._callbacks_after_evaluation(metrics)

    def _callbacks_after_evaluation(self, metrics: dict[str, float]) -> None:
        """Run the callbacks; rank 0's outcome (stop, or an exception such as a pruned trial)
        decides for every rank."""
        error: BaseException | None = None
        try:
            for cb in self.callbacks:
                cb.on_evaluation(self, metrics)
        except Exception as exc:
            error = exc
        stop, stopped_by = dist.broadcast((self.should_stop, repr(error) if error is not None else None))
        if error is not None and dist.is_main():
            raise error
        if stopped_by is not None:
            raise RunStopped(f"rank 0 stopped the run: {stopped_by}")
        self.should_stop = stop

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        delta = self.cfg.train.min_delta
        if self.model.metrics[self.monitor] == "maximize":
            return value > self.best["value"] + delta
        return value < self.best["value"] - delta

    def _fixed_noise(self) -> torch.Generator:
        """The same noise for every sample grid of a run (TensorBoard each epoch, samples.png)."""
        return torch.Generator(self.device).manual_seed(self.cfg.seed + 3)

    def _finish(self, seconds: float) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        final = {k: v for k, v in last.items() if k not in ("epoch", "step", "images")}
        result = {
            "name": self.cfg.name,
            "run_dir": str(self.run_dir),
            "device": str(self.device),
            "processes": self.world,
            "epochs": self.epoch,
            "steps": self.step,
            "images_seen": self.images_seen,
            "monitor": self.monitor,
            "heldout": final,
            "best": self.best,
            "stop_reason": self.stop_reason,
            "train_seconds": round(seconds, 3),
            "history": self.history,
        }
        if final and not self._failed and dist.is_main():
            self.model.eval()
            self.recorder.finish(result, self.model.sample(self.cfg.log.n_images, self._fixed_noise()), self.step)
        return result
