"""The shared training loop. It knows the model contract (models/base.py) and nothing about model
families, fine-tuning, datasets or feature extractors: `genmodels.experiment` assembles those.

    trainer = experiment.build(load_config("experiments/vae_mnist.yaml"))
    result = trainer.fit()

What is not the loop lives beside it: best/last checkpoints, early stopping, pruning (callbacks),
what one process and torchrun do differently (strategy), what a run writes (recorder), and its
progress (run_state).
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path
from typing import Sequence

import torch
from pydantic import BaseModel

from genmodels.callbacks import Callback, Checkpointing, EarlyStopping, ModelStopping
from genmodels.checkpoint import (RunCheckpoint, load_weights, own_streams, rng_state, save_checkpoint, saved_section,
                                 set_rng_state)
from genmodels.config import Config
from genmodels.data import DataSplits, take
from genmodels.errors import ConfigError, Interrupted, NonFiniteLossError, RunFailed
from genmodels.evaluation import eval_context, evaluate_split, image_grids, progress
from genmodels.models.base import GenerativeModel, SampleScorer, Updater
from genmodels.recorder import HParams, RunRecorder
from genmodels.run_state import FitResult, LossWindow, TrainState
from genmodels.runtime import SignalFlag, signals_deferred
from genmodels.strategy import strategy_from_env


class Trainer:
    """Trains `model` on `data` as `cfg` says, evaluating on the held-out split.

    Owns seeding, epochs, batching (labels for conditional models only), logging (through the
    recorder), checkpoints with exact resume, Ctrl-C/SIGTERM and a progress bar. `start` continues a
    run from its checkpoint (weights, optimizer moments, RNG streams, data order, progress); `hparams`:
    what the HParams record shows. The held-out `train.monitor` (or the model's default) picks best.pt.
    """

    def __init__(self, cfg: Config, data: DataSplits, model: GenerativeModel, callbacks: Sequence[Callback] = (),
                 run_dir: str | Path | None = None, scorer: SampleScorer | None = None, quiet: bool = False,
                 start: RunCheckpoint | None = None, hparams: HParams | None = None):
        if cfg.model is None:
            raise ConfigError("model: the config has no model section (genmodels.experiment.build fills it in "
                              "from a fine-tuning source)")
        self.strategy = strategy_from_env()
        self.strategy.check_batch_size(cfg.train.batch_size)
        self.cfg, self.data, self.scorer, self.quiet = cfg, data, scorer, quiet
        self.device = self.strategy.device(cfg.train.device)
        self.model = self.strategy.prepare(model.to(self.device), cfg.train.sync_batchnorm)
        self.monitor = cfg.train.monitor or model.monitor
        builtin = [ModelStopping(), *([EarlyStopping(cfg.train.patience)] if cfg.train.patience else [])]
        self.callbacks = [*builtin, Checkpointing(cfg.train.checkpoint_every), *callbacks]
        self.run_dir = Path(run_dir) if run_dir else cfg.run_dir()
        self.recorder = RunRecorder(self.run_dir, cfg, enabled=self.strategy.is_main, quiet=quiet, hparams=hparams)
        self.optimizers = self.model.configure_optimizers(cfg.optim)
        self.updater = Updater(self.optimizers, self.device, cfg.train.precision, cfg.train.grad_clip,
                               self.strategy.average_gradients)
        self.shuffle = torch.Generator().manual_seed(cfg.seed + 1)  # the same data order on every rank
        self.state = TrainState()
        self.losses = LossWindow()
        self._signal = SignalFlag()
        self._failed = False
        self._start_rng = self._restore(start) if start is not None else None

    # --- checkpoints -------------------------------------------------------------------------

    def _checkpoint(self) -> RunCheckpoint:
        rng = rng_state(self.shuffle)
        ranks = self.strategy.rng_states()  # every rank's own noise streams, for an exact resume on as many
        if ranks is not None:
            rng["ranks"] = ranks
        return RunCheckpoint(
            kind=self.cfg.model.kind, config=self.cfg.to_dict(), image_shape=self.data.image_shape,
            model=self.model.state_dict(), optimizers={k: o.state_dict() for k, o in self.optimizers.items()},
            scalers={k: s.state_dict() for k, s in self.updater.scalers.items()}, rng=rng, **self.state.saved())

    def _restore(self, ckpt: RunCheckpoint) -> dict:
        """Load `ckpt` (the run's own last.pt); returns this rank's RNG streams, set when fit starts."""
        source = str(self.run_dir / "last.pt")
        own = self.cfg.model.model_dump(mode="json")
        if saved_section(self.cfg.model, ckpt.config.get("model")) != own:
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
        self.state = TrainState.from_checkpoint(ckpt)
        return own_streams(ckpt.rng, self.strategy.rank, self.strategy.world)

    def save(self, *names: str) -> Path:
        """Checkpoint the full training state to run_dir/<name> for each name (one serialization,
        copied). Under torchrun every rank takes part (their noise streams go in) and rank 0 writes."""
        names = names or ("last.pt",)
        ckpt = self._checkpoint()
        if self.strategy.is_main:
            if "last.pt" in names:
                # The events on disk reach this step before the checkpoint does: a run killed later
                # resumes here, and its new writer drops what the killed one wrote after this step.
                self.recorder.flush()
            save_checkpoint(self.run_dir / names[0], ckpt, *(self.run_dir / n for n in names[1:]))
        return self.run_dir / names[0]

    # --- the loop ----------------------------------------------------------------------------

    def fit(self) -> FitResult:
        """Train until cfg.train.epochs (or max_images), early stopping or a callback says stop;
        a run built from a checkpoint continues exactly as if it had never stopped. The caller's
        global RNG is left as it was: training draws from its own stream."""
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            if self._start_rng is not None:
                set_rng_state(self._start_rng, self.shuffle)
            else:
                # The global RNG drives e.g. the VAE's reparameterisation noise: each rank its own.
                torch.manual_seed(self.cfg.seed + 1000 * self.strategy.rank)
            self.strategy.sync(self.model)  # every rank starts from rank 0's weights
            self.recorder.open(self.state.step if self._start_rng is not None else None)
            start = time.perf_counter()
            try:
                with signals_deferred() as self._signal:
                    self._run()
            except Interrupted as exc:
                self.save("last.pt")
                what = "interrupted" if exc.signum == signal.SIGINT else f"stopped by signal {exc.signum}"
                self.recorder.log(f"{what} at epoch {self.state.epoch + 1}, step {self.state.step}; saved "
                                  f"{self.run_dir / 'last.pt'}; continue with --resume")
                raise
            except RunFailed as exc:
                # No checkpoint, metrics or samples of the failed weights: last.pt and best.pt keep
                # the last good state, and the reason goes where a reader of the run looks.
                self.state.stop_reason, self._failed = str(exc), True
                self.recorder.failed({"reason": str(exc), "epoch": self.state.epoch, "step": self.state.step,
                                      "images": self.state.images_seen})
                raise
            finally:
                result = self._finish(time.perf_counter() - start)
                self.recorder.close()
        return result

    def _run(self) -> None:
        for cb in self.callbacks:
            cb.on_fit_start(self)
        while not self.done():
            self._train_epoch()
        s = self.state
        if not s.stop_reason and (not s.history or s.history[-1].get("images") != s.images_seen):
            self._evaluation()  # the final weights are always evaluated

    def done(self) -> bool:
        cap, s = self.cfg.train.max_images, self.state
        return s.should_stop or s.epoch >= self.cfg.train.epochs or (cap is not None and s.images_seen >= cap)

    def _evaluation_due(self) -> bool:
        every, history = self.cfg.train.eval_every_images, self.state.history
        last = history[-1].get("images", 0) if history else 0
        return every is not None and self.state.images_seen // every > last // every

    def _train_epoch(self) -> None:
        train, labels, bs, s = self.data.train.images, self.data.train.labels, self.cfg.train.batch_size, self.state
        if s.perm is None:
            s.perm = torch.randperm(train.shape[0], generator=self.shuffle)
        perm = s.perm.to(self.device)
        n_batches = self.strategy.n_batches(len(train), bs)
        self._start_training()
        bar = progress(n_batches, f"epoch {s.epoch + 1}/{self.cfg.train.epochs}",
                       self.quiet or not self.strategy.is_main, s.batch_index)
        try:
            while s.batch_index < n_batches and not self.done():
                batch = perm[s.batch_index * bs : (s.batch_index + 1) * bs]
                mine = self.strategy.shard(batch)
                extra = (labels[mine],) if self.model.conditional else ()  # never labels for an unconditional model
                losses = self.model.training_step(take(train, mine), self.updater, *extra)
                s.step, s.batch_index, s.images_seen = s.step + 1, s.batch_index + 1, s.images_seen + len(batch)
                self.losses.add(losses)
                if s.step % self.cfg.train.log_every == 0:
                    bar.set_postfix(self._flush(), refresh=False)
                bar.update()
                if self.strategy.any(self._signal.signum is not None):  # Ctrl-C or SIGTERM: stop, saved
                    raise Interrupted(self._signal.signum or signal.SIGTERM)
                if self._evaluation_due():
                    self._flush()
                    self._evaluation()
                    self._start_training()
        finally:
            self._flush()  # the partial window, also when interrupted, so nothing is lost
            bar.close()
        if s.batch_index == n_batches:
            s.epoch, s.perm, s.batch_index = s.epoch + 1, None, 0
            if self.cfg.train.eval_every_images is None:
                self._evaluation()

    def _start_training(self) -> None:
        self.model.train()
        for cb in self.callbacks:
            cb.on_train_epoch_start(self)

    def _flush(self) -> dict[str, float]:
        """Log each loss's mean over the window as train/<k> (rank 0's)."""
        values = self.losses.flush()
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLossError(f"training diverged: train/{bad[0]} = {values[bad[0]]} at step "
                                     f"{self.state.step} (lower optim.lr or set train.grad_clip)")
        self.recorder.scalars("train", values, self.state.step)
        return values

    def evaluate(self, split: str = "heldout", full: bool = False, options: BaseModel | None = None
                 ) -> dict[str, float]:
        """The model's metrics on the held-out or test split, with fixed noise: same weights,
        same numbers. full=True asks for the final-report metrics too (e.g. KID, precision/recall);
        `options` are the model family's own evaluation options."""
        images = {"heldout": self.data.heldout, "test": self.data.test}[split].images
        ctx = eval_context(self.cfg, self.device, split, self.data, self.model.conditional, full, self.scorer, options)
        return evaluate_split(self.model, images, ctx, self.cfg.train.eval_batch_size, self.quiet)

    def _evaluation(self) -> None:
        """Held-out metrics (computed by rank 0, shared with all), their logs, the checks (finite,
        not failed), the best value so far, then the callbacks (checkpoints and early stopping
        among them), whose outcome on rank 0 decides for every rank."""
        s, strategy = self.state, self.strategy
        # Rank 0's buffers (BatchNorm statistics) everywhere. Not its parameters: averaged gradients
        # keep them equal on every rank, and a rank that drifted must show, not be papered over.
        strategy.sync(self.model, parameters=False)
        metrics = strategy.broadcast(self.evaluate("heldout") if strategy.is_main else None)
        epoch = round(s.epoch + s.batch_index / math.ceil(len(self.data.train) / self.cfg.train.batch_size), 4)
        self.recorder.scalars("heldout", metrics, s.step)
        self.recorder.train_vs_heldout(self.losses.since_evaluation(), metrics, s.step)
        if strategy.is_main and ((len(s.history) + 1) % self.cfg.log.images_every == 0 or self.done()):
            self.recorder.images(image_grids(self.model, self.data.heldout, self.cfg.log.n_images,
                                             self._fixed_noise()), s.step)
        s.history.append({"epoch": epoch, "step": s.step, "images": s.images_seen, **metrics})
        value = metrics[self.monitor]
        if not math.isfinite(value):
            raise NonFiniteLossError(f"training diverged: heldout/{self.monitor} = {value} at epoch {epoch} "
                                     f"(lower optim.lr or set train.grad_clip)")
        reason = self.model.failed(metrics, len(s.history)) if self.cfg.train.stop_on_failure else None
        if reason:
            raise RunFailed(f"run stopped at epoch {epoch}: {reason}")
        if self._improved(value):
            s.best = {"epoch": epoch, "step": s.step, "images": s.images_seen, "value": value, "metrics": metrics}
            s.bad_evaluations = 0
        else:
            s.bad_evaluations += 1
        where = f"epoch {epoch:g}" + (f" ({s.images_seen:,} images)" if self.cfg.train.eval_every_images else "")
        self.recorder.log(f"{where}: " + "  ".join(f"heldout/{k}={v:.4f}" for k, v in metrics.items()))
        s.should_stop = strategy.decide(lambda: self._callbacks_on_evaluation(metrics), lambda: s.should_stop)

    def _callbacks_on_evaluation(self, metrics: dict[str, float]) -> None:
        for cb in self.callbacks:
            cb.on_evaluation(self, metrics)

    def _improved(self, value: float) -> bool:
        if self.state.best is None:
            return True
        delta, best = self.cfg.train.min_delta, self.state.best["value"]
        return value > best + delta if self.model.metrics[self.monitor] == "maximize" else value < best - delta

    def _fixed_noise(self) -> torch.Generator:
        """The same noise for every sample grid of a run (TensorBoard each epoch, samples.png)."""
        return torch.Generator(self.device).manual_seed(self.cfg.seed + 3)

    def _finish(self, seconds: float) -> FitResult:
        s = self.state
        final = {k: v for k, v in (s.history[-1] if s.history else {}).items() if k not in ("epoch", "step", "images")}
        result = FitResult(name=self.cfg.name, run_dir=str(self.run_dir), device=str(self.device),
                           processes=self.strategy.world, epochs=s.epoch, steps=s.step, images_seen=s.images_seen,
                           monitor=self.monitor, heldout=final, best=s.best, stop_reason=s.stop_reason,
                           train_seconds=round(seconds, 3), history=s.history,
                           features=self.scorer.name if self.scorer is not None and self.scorer.loaded else None)
        if final and not self._failed and self.strategy.is_main:
            self.model.eval()
            self.recorder.finish(result, self.model.sample(self.cfg.log.n_images, self._fixed_noise()), s.step)
        return result
