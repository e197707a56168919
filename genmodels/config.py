"""Typed run configuration: pydantic models for every section, YAML loading and --set overrides.

Every field has a type and a default; an unknown key is an error that names the closest valid key.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from genmodels.errors import ConfigError


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    name: Literal["mnist", "fashion-mnist", "imagefolder"] = "mnist"
    root: str | None = None  # else $GENMODELS_DATA, else ~/.cache/genmodels/data
    path: str | None = None  # imagefolder: a folder of PNG/JPEG images (class subfolders optional)
    image_size: int | None = Field(None, ge=4)  # imagefolder: resize to this side (default 28)
    channels: Literal[1, 3] | None = None  # imagefolder: 1 grey or 3 RGB (default 1)
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # imagefolder: it has no official test split
    classes: list[int] | None = None  # keep only these labels (every split)
    limit: int | None = Field(None, ge=1)  # at most this many images per split
    heldout_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    # Fixes which images are held out, apart from the run seed: runs with different seeds are
    # scored on the same held-out images, and the FID classifier is trained without them.
    split_seed: int = 0
    download: bool = True  # try torchvision's download when no files are found


class VAEConfig(StrictModel):
    kind: Literal["vae"] = "vae"
    arch: Literal["mlp", "conv"] = "mlp"
    n_layers: int = Field(1, ge=1, le=8)
    hidden: int = Field(400, ge=1)  # units (mlp) or base channels (conv)
    latent_dim: int = Field(20, ge=1)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    beta: float = Field(1.0, ge=0.0)
    binarize: bool = False  # dynamic binarisation: a proper Bernoulli likelihood on MNIST


class GANConfig(StrictModel):
    kind: Literal["gan"] = "gan"
    arch: Literal["mlp", "dcgan"] = "dcgan"
    n_layers: int = Field(2, ge=1, le=8)
    hidden: int = Field(64, ge=1)  # units (mlp) or base channels (dcgan), both networks
    latent_dim: int = Field(64, ge=1)
    loss: Literal["ns", "hinge", "wgan-gp"] = "ns"
    spectral_norm: bool = False  # on the discriminator
    n_critic: int = Field(1, ge=1)  # discriminator updates per generator update
    gp_weight: float = Field(10.0, ge=0.0)  # WGAN-GP penalty weight
    ema: float | None = Field(None, ge=0.0, lt=1.0)  # decay of the generator EMA used to sample
    lr_g: float | None = Field(None, gt=0.0)  # default: optim.lr
    lr_d: float | None = Field(None, gt=0.0)
    betas_g: tuple[float, float] | None = None  # default: optim.betas
    betas_d: tuple[float, float] | None = None


def _model_kind(value: Any) -> str:
    """`model.kind` picks the section's schema; a section without one is a VAE."""
    return value.get("kind", "vae") if isinstance(value, dict) else getattr(value, "kind", "vae")


ModelConfig = Annotated[
    Union[Annotated[VAEConfig, Tag("vae")], Annotated[GANConfig, Tag("gan")]],
    Discriminator(_model_kind),
]


class FinetuneConfig(StrictModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    source: str = Field(alias="from")  # a run directory or a .pt checkpoint
    checkpoint: Literal["best", "last"] = "best"
    # Glob patterns over parameter names. A comma-separated string works too, so a tuning
    # space can choose between pattern sets (categorical choices must be strings).
    freeze: list[str] | str = Field(default_factory=list)
    reinit: list[str] | str = Field(default_factory=list)

    @staticmethod
    def _patterns(value: list[str] | str) -> list[str]:
        items = value.split(",") if isinstance(value, str) else value
        return [p.strip() for p in items if p.strip() and p.strip() != "none"]

    def freeze_patterns(self) -> list[str]:
        return self._patterns(self.freeze)

    def reinit_patterns(self) -> list[str]:
        return self._patterns(self.reinit)


class OptimConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0.0)


class TrainConfig(StrictModel):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(1000, ge=1)
    grad_clip: float | None = Field(None, gt=0.0)  # max global grad norm
    # auto: bfloat16 autocast on CUDA (float16 + loss scaling where bf16 is missing), float32 on
    # CPU. bf16 on a CPU with AVX512-BF16/AMX runs the matmuls ~1.6x faster at bf16 precision.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    patience: int | None = Field(None, ge=1)  # early stopping on the held-out monitor
    min_delta: float = Field(0.0, ge=0.0)
    log_every: int = Field(10, ge=1)  # steps between train/ scalars (mean over the window)
    checkpoint_every: int = Field(1, ge=1)  # epochs between last.pt saves
    device: Literal["auto", "cpu", "cuda"] = "auto"


class EvalConfig(StrictModel):
    features: Literal["classifier", "inception"] = "classifier"  # FID/KID/PR feature extractor
    fid_samples: int = Field(2000, ge=10)  # generated images per held-out FID
    kid_subsets: int = Field(50, ge=1)
    kid_subset_size: int = Field(1000, ge=2)
    pr_k: int = Field(3, ge=1)  # neighbours defining the precision/recall manifolds


class LogConfig(StrictModel):
    runs_dir: str = "runs"
    n_images: int = Field(64, ge=1, le=1024)  # images in each TensorBoard grid


class Config(StrictModel):
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]+$")
    seed: int = 0
    data: DataConfig = DataConfig()
    model: ModelConfig = VAEConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    log: LogConfig = LogConfig()
    finetune: FinetuneConfig | None = None  # start from a trained run (genmodels finetune)

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


# --- loading ------------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def set_dotted(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """data['a']['b'] = value for path ['a', 'b'], creating sections on the way."""
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        set_dotted(data, *parse_override(text))
    return data


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}:{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def validate(model_cls: type[StrictModel], data: dict[str, Any], source: str) -> Any:
    """Validate `data` against `model_cls`; any problem becomes one ConfigError line per field."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        lines = [format_error(model_cls, err, source) for err in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def model_from_source(data: dict[str, Any]) -> dict[str, Any]:
    """A fine-tuning config without a `model` section gets the source checkpoint's."""
    ft = data.get("finetune")
    if isinstance(ft, dict) and ft.get("from") and "model" not in data:
        from genmodels import checkpoint as ckpt
        from genmodels.runs import checkpoint_path

        state = ckpt.load_checkpoint(checkpoint_path(ft["from"], ft.get("checkpoint", "best")))
        data["model"] = state["config"]["model"]
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    data = model_from_source(apply_overrides(read_yaml(path), overrides or []))
    source = f"{path}" + (" (with --set)" if overrides else "")
    return validate(Config, data, source)


# --- readable validation errors -----------------------------------------------------------


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [a for arg in typing.get_args(annotation) for a in _submodels(arg)]


def _walk(root: type[BaseModel], loc: tuple) -> tuple[list[str], list[type[BaseModel]]]:
    """Follow a pydantic error location through nested models.

    Returns the dotted path a user would write (discriminated-union tags such as 'vae' in
    ('model', 'vae', 'n_layers') dropped) and the models that may own the last key.
    """
    path: list[str] = []
    candidates = [root]
    for part in loc[:-1]:
        owner = next((m for m in candidates if str(part) in m.model_fields), None)
        if owner is None:
            tagged = [m for m in candidates if _kind(m) == part]
            if tagged:
                candidates = tagged
            else:  # an index into a list or tuple
                path.append(str(part))
                candidates = []
            continue
        path.append(str(part))
        candidates = _submodels(owner.model_fields[str(part)].annotation)
    return path, candidates


def _kind(model: type[BaseModel]) -> Any:
    field = model.model_fields.get("kind")
    return field.default if field else None


def format_error(root: type[BaseModel], err: dict[str, Any], source: str) -> str:
    loc = tuple(err["loc"])
    path, owner = _walk(root, loc)
    last = str(loc[-1]) if loc else ""
    dotted = ".".join(path + [last]) if last else ".".join(path)
    if err["type"] == "extra_forbidden":
        valid = sorted({field.alias or name for model in owner for name, field in model.model_fields.items()})
        close = difflib.get_close_matches(last, valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{'.'.join(path + [close[0]])}'?" if close else ""
        if valid and not close:
            hint = f"; valid keys: {', '.join(valid)}"
        return f"{source}: unknown key '{dotted}'{hint}"
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"{source}: {dotted}.kind: expected one of {ctx.get('expected_tags')}, got {ctx.get('tag')!r}"
    if err["type"] == "missing":
        return f"{source}: {dotted}: a value is required"
    msg = err["msg"].replace("Input should be", "expected").replace("String should", "expected to")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    got = err.get("input")
    return f"{source}: {dotted}: {msg}, got {got!r}"
