"""The tuning config: which run config to start from, what to optimise and over which fields,
how to search (sampler, pruner) and where the study lives."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from genmodels.config import Config
from genmodels.data import load_data
from genmodels.errors import ConfigError
from genmodels.experiment import check_metrics, resolved
from genmodels.metrics.quality import QUALITY_METRICS
from genmodels.models import model_class
from genmodels.schema import StrictModel, apply_overrides, read_yaml, set_dotted, validate

# Objectives every run reports besides its model's held-out metrics.
RUN_METRICS = {"train_seconds": "minimize"}


Scalar = str | bool | int | float | None


class ParamSpec(StrictModel):
    """One searched config field: float (optionally log), int, or a categorical choice."""

    type: Literal["float", "int", "categorical"] = Field(description="the kind of value searched")
    low: float | None = Field(None, allow_inf_nan=False, description="float, int: smallest value")
    high: float | None = Field(None, allow_inf_nan=False, description="float, int: largest value")
    log: bool = Field(False, description="float, int: sample on a log scale")
    step: float | None = Field(None, gt=0, allow_inf_nan=False, description="float, int: spacing (a grid needs it "
                                                                            "for floats)")
    # Scalars, or lists for a field that holds a list (optim.betas: [[0.5, 0.999], [0.0, 0.9]]).
    choices: list[Scalar | list[Scalar]] | None = Field(None, max_length=10_000, description="categorical: the "
                                                                                             "values, scalars or lists")

    @model_validator(mode="after")
    def _complete(self) -> "ParamSpec":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty 'choices' list")
            return self
        if self.choices is not None:
            raise ValueError(f"'choices' belongs to type categorical, not {self.type}")
        if self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"{self.type} needs 'low' <= 'high'")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log' cannot be combined")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError("an int range needs whole numbers for 'low', 'high' and 'step'")
        return self

    def labels(self) -> list[Scalar]:
        """The choices as Optuna stores them: a list choice by its JSON text."""
        return [json.dumps(c) if isinstance(c, list) else c for c in self.choices or []]

    def value(self, label: Any) -> Any:
        """The config value of a stored parameter (a list choice decoded again)."""
        if self.type == "categorical" and isinstance(label, str) and label in self.labels():
            return self.choices[self.labels().index(label)]
        return label

    def probes(self) -> list[Any]:
        """Values that must all be valid for the field: every choice, or both ends and, for a
        float range, a fractional value between them (which an int field refuses)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        inside = [v for f in (0.5, 0.37, 0.123) if not (v := self.low + (self.high - self.low) * f).is_integer()]
        return [self.low, self.high] + inside[:1]

    def grid(self) -> list[Any]:
        """The values a grid search visits."""
        if self.type == "categorical":
            return self.labels()
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ValueError("a float searched by grid needs 'step' (or use type: categorical)")
        n = int(round((self.high - self.low) / self.step))
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]


class SamplerConfig(StrictModel):
    name: Literal["tpe", "random", "grid", "gp", "cmaes", "nsga2"] = Field("tpe", description="how trials "
                                                                                          "choose their values")
    seed: int = Field(0, ge=0, lt=2**63, description="the study's seed; each worker and rerun derives its own")
    n_startup_trials: int | None = Field(None, ge=0, description="random trials before TPE/GP/CMA-ES model the "
                                                                 "space (none: one per searched field, at least 5)")

    def startup_trials(self, searched: int) -> int:
        # One per searched field (at least 5) beat twice that in benchmarks/hpo_efficiency.py
        # (docs/tuning.md): with pruning, TPE's model pays off sooner than more random trials.
        return self.n_startup_trials if self.n_startup_trials is not None else max(5, searched)


class PrunerConfig(StrictModel):
    # Report steps are epochs, or images seen when trials evaluate every K images (reports_per_epoch
    # or the base's train.eval_every_images); warm-ups and rungs count reports either way.
    # Successive halving by default, with the random start-up trials screened at its first cut:
    # measured on 40 seeds (docs/tuning.md, "Tuning efficiency and the defaults").
    name: Literal["median", "percentile", "sha", "hyperband", "none"] = Field(
        "sha", description="which trials stop early: below the median or a percentile of finished trials at the "
                           "same step, successive halving, hyperband")
    percentile: float = Field(25.0, gt=0, lt=100, description="percentile: a trial goes on while it is in this best "
                                                              "percentage of the finished trials at the same step")
    n_startup_trials: int = Field(3, ge=0, description="median, percentile: trials that finish before any is pruned")
    n_warmup_steps: int = Field(1, ge=0, description="median, percentile: pruning may act from this report on (0 "
                                                     "or 1: the first)")
    min_resource: int = Field(1, ge=1, description="sha, hyperband: reports before the first cut")
    reduction_factor: int = Field(2, ge=2, description="sha, hyperband: 1 in this many trials goes on at each cut")
    screen_startup: bool = Field(True, description="sha with tpe: the random start-up trials stop at the first cut "
                                                   "(their first reports still guide TPE); other pairs: off")
    report: Literal["last", "best"] = Field("last", description="the value reported at each step: the latest, or "
                                                                "the best so far (steadier for GANs)")

    def screens(self, sampler: str) -> bool:
        """Whether start-up screening applies: it needs successive halving's first cut, and a
        sampler that learns from pruned trials (TPE; CMA-ES and GP learn from complete ones)."""
        return self.screen_startup and self.name == "sha" and sampler == "tpe"


class TuneConfig(StrictModel):
    base: str = Field(description="the run config every trial starts from, relative to this file")
    study_name: str = Field("study", pattern=r"^[A-Za-z0-9._-]+$", max_length=200,
                            description="the study's name and folder <runs_dir>/<study_name>")
    objectives: list[str] = Field(default_factory=lambda: ["neg_elbo"], min_length=1,
                                  description="held-out metrics to optimise (train_seconds too); several: a "
                                              "Pareto front")
    directions: list[Literal["minimize", "maximize"]] | None = Field(
        None, description="one per objective (default: the model's direction for each metric)")
    n_trials: int = Field(20, ge=1, le=1_000_000, description="finished trials the study holds, across workers "
                                                              "and reruns")
    timeout: float | None = Field(None, gt=0, description="seconds per invocation (none: no limit)")
    # Four reports an epoch let successive halving's first cut come after a quarter epoch: on the
    # VAE space a quarter epoch ranks trials nearly as well as a whole one (Spearman 0.85 and 0.89
    # with the final value, benchmarks/hpo_fidelity.py).
    reports_per_epoch: int = Field(4, ge=1, le=1000, description="held-out evaluations per epoch in each trial, each "
                                                                 "a report to the pruner (unless the base sets "
                                                                 "train.eval_every_images)")
    cv_folds: int | None = Field(None, ge=2, description="k-fold cross-validation: the mean over k held-out "
                                                         "folds (none: one held-out split)")
    set: list[str] = Field(default_factory=list, description="overrides for every trial, e.g. train.epochs=5")
    space: dict[str, ParamSpec] = Field(description="searched fields by dotted path: {type: float|int|categorical, "
                                                    "low, high, log, step, choices}")
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = Field(PrunerConfig(), description="successive halving by default; none with sampler gp")
    runs_dir: str = Field("runs", description="parent of the study folder")
    storage: str | None = Field(None, description="Optuna storage URL (none: sqlite:///<runs_dir>/<study_name>/"
                                                  "study.db)")
    retrain_best: bool = Field(False, description="train the best config on train+held-out and score the test "
                                                  "split at the end")

    @model_validator(mode="after")
    def _check(self) -> "TuneConfig":
        if self.directions is not None and len(self.directions) != len(self.objectives):
            raise ValueError("'directions' needs one entry per objective")
        if not self.space:
            raise ValueError("'space' needs at least one field to search")
        if self.sampler.name == "gp" and self.pruner.name != "none":
            # Optuna's GP models completed trials only: a pruned trial leaves no trace, so the GP
            # proposes the same parameters again and again (each then a zero-cost duplicate).
            if "pruner" in self.model_fields_set:
                raise ValueError(f"pruner: '{self.pruner.name}' cannot go with sampler 'gp', which learns nothing "
                                 "from pruned trials and proposes them again; use pruner: {name: none}, or sampler "
                                 "'tpe'")
            object.__setattr__(self, "pruner", PrunerConfig(name="none"))
        if ("screen_startup" in self.pruner.model_fields_set and self.pruner.screen_startup
                and not self.pruner.screens(self.sampler.name)):
            raise ValueError(f"pruner.screen_startup: goes with pruner 'sha' and sampler 'tpe' only, not "
                             f"'{self.pruner.name}' and '{self.sampler.name}'")
        return self

    def trial_budget(self) -> int:
        """Trials the study runs: n_trials, or fewer when a grid has fewer points."""
        if self.sampler.name != "grid":
            return self.n_trials
        return min(self.n_trials, math.prod(len(spec.grid()) for spec in self.space.values()))

    def study_dir(self) -> Path:
        return Path(self.runs_dir) / self.study_name

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{self.study_dir() / 'study.db'}"


def with_params(base: dict[str, Any], params: dict[str, Any], name: str, tune: TuneConfig | None = None
                ) -> dict[str, Any]:
    """A copy of the base run config with searched values set by dotted path, named `name`
    (stored Optuna parameters are decoded with the tuning config's space)."""
    data = copy.deepcopy(base)
    for key, value in params.items():
        spec = tune.space.get(key) if tune else None
        set_dotted(data, key.split("."), spec.value(value) if spec else value)
    data["name"] = name
    return data


def with_reports(tune: TuneConfig, base: dict[str, Any], cfg: Config, path: Path) -> dict[str, Any]:
    """The base with trials evaluating `reports_per_epoch` times an epoch: train.eval_every_images
    from the training split's size, and patience, checkpoint_every and log.images_every (counted
    in evaluations) scaled so that they mean the epochs they meant. A base that sets train.eval_every_images
    keeps it; cross-validated trials report once per fold."""
    explicit = "reports_per_epoch" in tune.model_fields_set
    if cfg.train.eval_every_images is not None or tune.cv_folds:
        if explicit:
            why = (f"the base sets train.eval_every_images={cfg.train.eval_every_images}" if tune.cv_folds is None
                   else "cross-validated trials report once per fold")
            raise ConfigError(f"{path}: reports_per_epoch: {why}; leave reports_per_epoch out")
        return base
    n = tune.reports_per_epoch
    if n == 1:
        return base
    train = {**base.get("train", {}), "eval_every_images": math.ceil(len(load_data(cfg.data).train) / n),
             "checkpoint_every": cfg.train.checkpoint_every * n}
    if cfg.train.patience is not None:
        train["patience"] = cfg.train.patience * n
    # Image grids (PNG-encoded for TensorBoard) cost a tiny VAE trial more than its evaluation does.
    log = {**base.get("log", {}), "images_every": cfg.log.images_every * n}
    return {**base, "train": train, "log": log}


def load_tune_config(path: str | Path, overrides: list[str] | None = None) -> tuple[TuneConfig, dict[str, Any]]:
    """The tuning config (directions filled in) and the raw base run config (a dict, with the
    tuning `set` applied, and a fine-tuning source's model section filled in).

    Everything is checked up front, so a mistake is one error line now, not a failed trial
    later: every objective is a metric the model reports, and every searched field exists.
    """
    path = Path(path)
    tune = validate(TuneConfig, apply_overrides(read_yaml(path), overrides or []), str(path))
    base_path = (path.parent / tune.base) if not Path(tune.base).is_absolute() else Path(tune.base)
    base = apply_overrides(read_yaml(base_path), list(tune.set))
    cfg = validate(Config, base, f"{base_path} (with {path.name} set)")
    if cfg.finetune is not None:  # the source's model section (and image size), read once per study
        cfg = resolved(cfg)
        base = {**base, "model": cfg.model.model_dump(mode="json"), "data": {**base.get("data", {}),
                                                                           **cfg.data.model_dump(mode="json")}}
    directions = model_class(cfg.model.kind).metrics
    of_model = [o for o in tune.objectives if o not in RUN_METRICS]
    quality = [o for o in of_model if o in QUALITY_METRICS and o not in cfg.eval.metrics]
    if quality:  # objectives computed only on request: every evaluation computes them
        base = {**base, "eval": {**base.get("eval", {}), "metrics": list(cfg.eval.metrics) + quality}}
    check_metrics(validate(Config, base, str(base_path)), of_model, f"{path}: objectives")
    if tune.directions is None:
        tune.directions = [RUN_METRICS.get(o) or directions[o] for o in tune.objectives]
    base = with_reports(tune, base, cfg, path)
    if len(of_model) == 1 == len(tune.objectives):
        # best.pt, early stopping and the trial's result all follow the objective
        base = {**base, "train": {**base.get("train", {}), "monitor": of_model[0]}}
    for key, spec in tune.space.items():
        for probe in spec.probes():
            try:
                validate(Config, set_dotted(copy.deepcopy(base), key.split("."), probe), "")
            except ConfigError as exc:
                problem = str(exc).splitlines()[0].removeprefix(": ")
                if problem.startswith("unknown key"):
                    raise ConfigError(f"{path}: space.{key}: {problem}") from None
                what = "choice" if spec.type == "categorical" else "value"
                raise ConfigError(f"{path}: space.{key}: {what} {probe!r} is not valid for the field "
                                  f"({problem.split(': ', 1)[-1]})") from None
    if tune.sampler.name == "grid":
        for key, spec in tune.space.items():
            if spec.type == "float" and spec.step is None:
                raise ConfigError(f"{path}: space.{key}: a float searched by grid needs 'step' "
                                  f"(or use type: categorical)")
        if tune.trial_budget() > 100_000:
            raise ConfigError(f"{path}: space: the grid has more than 100,000 points; give coarser steps")
    return tune, base
