"""The run checkpoint format, defined once, and the tensor files the toolkit caches.

Every file is written atomically and read with `weights_only=True`: a checkpoint holds tensors
and plain data, never code, so a crafted file cannot run anything when loaded. A file that
unpickles but is not what its reader expects is a one-line error naming the file.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from genmodels.errors import UserError
from genmodels.files import atomic_write

#: 2 added `images_seen` (version 1 files load with its default); 3 renamed `bad_epochs` to
#: `bad_evaluations`, which is what it counts (earlier files load under the new name).
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


@dataclass
class RunCheckpoint:
    """Everything a run needs to continue exactly where it stopped."""

    kind: str  # the model family (`model.kind`)
    config: dict[str, Any]  # the resolved run config that built these weights
    image_shape: tuple[int, int, int]
    model: dict[str, torch.Tensor]
    optimizers: dict[str, dict[str, Any]]
    scalers: dict[str, dict[str, Any]]
    rng: dict[str, Any]  # every random stream training reads
    epoch: int  # completed epochs
    step: int  # completed training steps
    batch_index: int  # within the current epoch
    perm: torch.Tensor | None  # the current epoch's data order
    best: dict[str, Any] | None  # {"epoch", "step", "images", "value", "metrics"}
    bad_evaluations: int  # held-out evaluations since the best one
    history: list[dict[str, Any]]
    stop_reason: str
    images_seen: int = 0  # training images consumed so far

    def to_dict(self) -> dict[str, Any]:
        state = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {"format_version": FORMAT_VERSION, **state, "image_shape": list(self.image_shape)}

    @classmethod
    def from_dict(cls, state: Any, source: str) -> "RunCheckpoint":
        if not isinstance(state, dict) or "format_version" not in state:
            raise UserError(f"{source}: not a genmodels run checkpoint")
        if state["format_version"] not in READABLE_VERSIONS:
            raise UserError(f"{source}: checkpoint format {state['format_version']!r}, "
                            f"expected one of {READABLE_VERSIONS}")
        if state["format_version"] < 3 and "bad_epochs" in state:
            state = {**state, "bad_evaluations": state["bad_epochs"]}
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in state:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise UserError(f"{source}: not a genmodels run checkpoint ('{f.name}' is missing)")
                continue
            values[f.name] = state[f.name]
        _expect_types(values, source)
        values["image_shape"] = tuple(values["image_shape"])
        return cls(**values)


_TYPES: dict[str, type | tuple[type, ...]] = {
    "kind": str, "config": dict, "image_shape": (list, tuple), "model": dict, "optimizers": dict, "scalers": dict,
    "rng": dict, "epoch": int, "step": int, "batch_index": int, "perm": (torch.Tensor, type(None)),
    "best": (dict, type(None)), "bad_evaluations": int, "history": list, "stop_reason": str, "images_seen": int,
}


def _expect_types(values: dict[str, Any], source: str) -> None:
    for name, value in values.items():
        expected = _TYPES[name]
        if not isinstance(value, expected) or isinstance(value, bool) and expected is int:
            raise UserError(f"{source}: checkpoint field '{name}' is a {type(value).__name__}, "
                            f"not what a run checkpoint holds")
    shape = values["image_shape"]
    if len(shape) != 3 or not all(isinstance(v, int) and v > 0 for v in shape):
        raise UserError(f"{source}: checkpoint field 'image_shape' is {list(shape)}, expected [C, H, W]")
    if not all(isinstance(v, torch.Tensor) for v in values["model"].values()):
        raise UserError(f"{source}: checkpoint field 'model' holds something other than tensors")


# --- reading and writing --------------------------------------------------------------------


def _load(path: str | Path, map_location: torch.device | str = "cpu") -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # an unpickling refusal, a truncated zip, garbage: all the same to a user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            reason = "it holds Python objects other than tensors and plain data; refused to unpickle them"
        raise UserError(f"{path}: not a readable checkpoint ({reason[:200]})") from None


def save_checkpoint(path: str | Path, ckpt: RunCheckpoint, *copies: str | Path) -> None:
    """Write `ckpt` to `path` and, serialized once and copied byte for byte, to each of `copies`."""
    state = ckpt.to_dict()
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    for copy in copies:
        atomic_write(copy, lambda tmp: shutil.copyfile(path, tmp))


def load_checkpoint(path: str | Path, map_location: torch.device | str = "cpu") -> RunCheckpoint:
    return RunCheckpoint.from_dict(_load(path, map_location), str(path))


def save_tensors(path: str | Path, data: dict[str, Any]) -> None:
    """A cache file (features, statistics, decoded images): tensors and plain data."""
    atomic_write(path, lambda tmp: torch.save({"format_version": FORMAT_VERSION, **data}, tmp))


def load_tensors(path: str | Path, required: dict[str, type], map_location: torch.device | str = "cpu"
                 ) -> dict[str, Any]:
    """Read a file written by save_tensors; each `required` key must be there with its type."""
    data = _load(path, map_location)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of tensors, got {type(data).__name__}")
    for key, kind in required.items():
        if not isinstance(data.get(key), kind):
            raise UserError(f"{path}: '{key}' is missing or not a {kind.__name__}")
    return data


def load_weights(module: nn.Module, weights: dict[str, torch.Tensor], source: str, keep: tuple[str, ...] = ()) -> None:
    """module.load_state_dict(weights) with a one-line error for a missing, extra or misshapen
    tensor (instead of torch's list of every mismatch). Entries whose names start with a prefix in
    `keep` are not taken from `weights`, either side may lack them, and the module keeps its own."""
    own = module.state_dict()
    weights = {k: v for k, v in weights.items() if not k.startswith(keep)} if keep else weights
    weights |= {k: v for k, v in own.items() if keep and k.startswith(keep)}
    for name, tensor in weights.items():
        if name not in own:
            raise UserError(f"{source}: has '{name}', which the configured model lacks "
                            f"(the model section must match the checkpoint's)")
        if own[name].shape != tensor.shape:
            raise UserError(f"{source}: shape mismatch for '{name}': checkpoint {tuple(tensor.shape)}, "
                            f"model {tuple(own[name].shape)} (the model section must match the checkpoint's)")
    missing = sorted(set(own) - set(weights))
    if missing:
        raise UserError(f"{source}: lacks '{missing[0]}', which the configured model has")
    module.load_state_dict(weights)


# --- random streams -------------------------------------------------------------------------


def saved_section(section: BaseModel, saved: Any) -> Any:
    """A config section a checkpoint recorded, as this version reads it: fields added since it was
    written take their defaults (a run from before model.n_classes resumes). Unreadable: as saved."""
    try:
        return type(section).model_validate(saved).model_dump(mode="json")
    except (TypeError, ValueError):  # pydantic's ValidationError is a ValueError
        return saved


def rng_state(shuffle: torch.Generator) -> dict[str, Any]:
    """Every random stream training reads: global CPU/CUDA RNGs and the shuffling generator."""
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def own_streams(rng: dict[str, Any], rank: int, world: int) -> dict[str, Any]:
    """The streams a process of rank `rank` of `world` resumes with: its own, where the checkpoint
    holds every rank's (`ranks`, written under torchrun) for as many ranks; else rank 0's. A
    rank's own GPU stream replaces the saved `cuda` list, which holds rank 0's view of its devices."""
    ranks = rng.get("ranks")
    if ranks is None or len(ranks) != world:
        return rng
    own = ranks[rank]
    if not isinstance(own, dict):  # written before the ranks' GPU streams were saved: the CPU stream
        return {**rng, "torch": own}
    out = {**rng, "torch": own["torch"]}
    out.pop("cuda", None)
    if "cuda" in own:
        out["cuda_own"] = own["cuda"]
    return out


def set_rng_state(state: dict[str, Any], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    shuffle.set_state(state["shuffle"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if "cuda_own" in state and torch.cuda.is_available():  # a torchrun rank: its own GPU's stream
        torch.cuda.set_rng_state(state["cuda_own"].cpu(), torch.cuda.current_device())
