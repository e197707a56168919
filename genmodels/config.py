"""The run configuration: the sections defined beside what they configure (data, model families,
optimizer, sample quality, fine-tuning) assembled into one `Config`, plus the sections of the loop itself.

Every field has a type, a default and a description; an unknown key is an error that names the
closest valid key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SerializeAsAny, field_validator, model_validator
from pydantic_core import PydanticCustomError

from genmodels.data import DataConfig
from genmodels.finetune import FinetuneConfig
from genmodels.metrics.quality import EvalConfig
from genmodels.models import MODELS, ModelSection
from genmodels.optim import OptimConfig
from genmodels.schema import StrictModel, apply_overrides, read_yaml, validate


class TrainConfig(StrictModel):
    epochs: int = Field(10, ge=1, le=1_000_000, description="passes over the training split")
    batch_size: int = Field(128, ge=1, le=1_000_000, description="images per training step")
    eval_batch_size: int = Field(1000, ge=1, description="images per evaluation batch")
    grad_clip: float | None = Field(None, gt=0.0, description="max global gradient norm (none: off)")
    # auto: bfloat16 autocast on CUDA (float16 + loss scaling where bf16 is missing); on a CPU,
    # bf16 where it has bf16 matrix units and the model measures faster with it (precision.py);
    # fp32 for a GAN, which bf16 trained worse.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="autocast dtype; auto: bf16 "
                                                                                "on CUDA; on CPU bf16 where "
                                                                                "measured >= 1.3x faster (bf16 "
                                                                                "units), else fp32; fp32 for "
                                                                                "a GAN on any device")
    compile: bool = Field(False, description="torch.compile the model's trained networks (the first steps wait "
                                             "for the compiler; on CPU a C++ compiler is needed)")
    max_images: int | None = Field(None, ge=1, description="stop after this many training images (epochs "
                                                           "bound the run too)")
    eval_every_images: int | None = Field(None, ge=1, description="held-out evaluation (and a tuning trial's "
                                                                  "report to its pruner) every this many training "
                                                                  "images; default: after every epoch")
    monitor: str | None = Field(None, description="held-out metric for early stopping, best.pt and a trial's "
                                                  "result; default: the model's (neg_elbo, fid)")
    patience: int | None = Field(None, ge=1, description="early stopping: evaluations without a held-out gain")
    stop_on_failure: bool = Field(True, description="stop a run its model calls failed (a GAN whose samples "
                                                    "collapsed or whose discriminator wins outright)")
    min_delta: float = Field(0.0, ge=0.0, description="smallest held-out change that counts as a gain")
    log_every: int = Field(10, ge=1, description="steps between train/ scalars (the mean over the window)")
    checkpoint_every: int = Field(1, ge=1, description="evaluations between last.pt saves")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present, else CPU")
    sync_batchnorm: bool = Field(True, description="under torchrun, BatchNorm statistics over every process's "
                                                   "share of the batch (as one process sees it)")


class LogConfig(StrictModel):
    runs_dir: str = Field("runs", description="parent folder of run folders")
    n_images: int = Field(64, ge=1, le=1024, description="images in each TensorBoard grid and samples.png")
    images_every: int = Field(1, ge=1, description="evaluations between TensorBoard image grids")


class Config(StrictModel):
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]+$", max_length=200, description="run folder name")
    seed: int = Field(0, ge=0, lt=2**63, description="fixes initialisation, data order and sampling")
    data: DataConfig = DataConfig()
    # The family's schema is chosen by `kind` from the registry when the config is validated;
    # a fine-tuning config may leave it out and take its source checkpoint's.
    model: SerializeAsAny[ModelSection] | None = None
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    log: LogConfig = LogConfig()
    finetune: FinetuneConfig | None = Field(None, description="start from a trained run (genmodels finetune)")

    @model_validator(mode="before")
    @classmethod
    def _default_model(cls, data: Any) -> Any:
        """No model section and nothing to take one from: the default VAE."""
        if isinstance(data, dict) and data.get("model") is None and not data.get("finetune"):
            data = {**data, "model": {"kind": "vae"}}
        return data

    @field_validator("model", mode="wrap")
    @classmethod
    def _model_section(cls, value: Any, handler: Any) -> Any:
        if value is None or isinstance(value, ModelSection):
            return value
        if not isinstance(value, dict):
            return handler(value)  # pydantic's own "expected a mapping" error
        kind = value.get("kind", "vae")
        if kind not in MODELS:
            raise PydanticCustomError("model_kind", "expected one of {expected}, got {kind}",
                                      {"expected": ", ".join(MODELS), "kind": repr(kind)})
        return MODELS[kind].Config.model_validate(value)

    def run_dir(self) -> Path:
        return Path(self.log.runs_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def flat(self) -> dict[str, Any]:
        """Dotted keys to scalars, for TensorBoard's HParams view."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            elif isinstance(value, list):
                out[prefix] = str(value)
            else:
                out[prefix] = "none" if value is None else value

        walk("", self.to_dict())
        return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """The run config in `path` with `--set` overrides applied. Reads nothing but that file."""
    data = apply_overrides(read_yaml(path), overrides or [])
    source = f"{path}" + (" (with --set)" if overrides else "")
    return validate(Config, data, source)
