"""What differs between one process and torchrun, behind one small object (Lightning's
"strategy"): who this process is, its share of a batch, and the few collectives the loop needs.
The loop calls the same methods either way; for one process they do nothing.

Under torchrun each process trains on its own share of every batch (train.batch_size is the
global batch), gradients are averaged at every optimizer step, rank 0 evaluates and writes, and
its decisions (stop, prune) reach every rank.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from genmodels import distributed, syncbn
from genmodels.errors import ConfigError
from genmodels.models.base import GenerativeModel
from genmodels.runtime import pick_device


class SingleProcess:
    """One process: it is rank 0 of 1, its share is the whole batch, collectives are identities."""

    rank = 0
    world = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes events, checkpoints and metrics, and owns a tuning trial."""
        return self.rank == 0

    def device(self, requested: str) -> torch.device:
        return pick_device(requested)

    def prepare(self, model: GenerativeModel, sync_batchnorm: bool) -> GenerativeModel:
        """The model as this strategy trains it."""
        return model

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size % self.world:
            raise ConfigError(f"train.batch_size: {batch_size} is the global batch; it must divide evenly over "
                              f"{self.world} processes")

    def n_batches(self, n_images: int, batch_size: int) -> int:
        """Batches in an epoch: a final batch too small to give every rank an image is left out."""
        return n_images // batch_size + (n_images % batch_size >= self.world)

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch (of indices)."""
        return batch

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        """The Updater calls this between backward and the optimizer step."""

    def sync(self, module: torch.nn.Module, parameters: bool = True) -> None:
        """Rank 0's buffers (BatchNorm statistics) on every rank, and its parameters unless
        parameters=False."""

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` (metrics, decisions) on every rank."""
        return obj

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any (a signal one rank got stops them all)."""
        return flag

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` in rank order."""
        return [obj]

    def rng_states(self) -> list[dict[str, torch.Tensor]] | None:
        """Every rank's own global noise streams (CPU, and its GPU's), in rank order; None for one
        process, whose streams the checkpoint's `torch`/`cuda` entries already hold."""
        return None

    def decide(self, act: Callable[[], None], stopping: Callable[[], bool]) -> bool:
        """Run `act` on every rank; rank 0's outcome decides for all: an exception it raised is
        raised again there (and ends the others with RunStopped), and `stopping()` read on rank 0
        is returned everywhere."""
        act()
        return stopping()


class RunStopped(Exception):
    """Rank 0 ended the run (a callback raised there, e.g. the pruner); the other ranks stop too."""


class Torchrun(SingleProcess):
    """One of several processes launched by torchrun; torch.distributed does the communication
    (genmodels.distributed)."""

    def __init__(self) -> None:
        self.rank, self.world = distributed.rank(), distributed.world_size()

    def device(self, requested: str) -> torch.device:
        return pick_device(distributed.device_name(requested))  # each rank on its own GPU

    def prepare(self, model: GenerativeModel, sync_batchnorm: bool) -> GenerativeModel:
        """BatchNorm statistics over the global batch (train.sync_batchnorm): otherwise each rank
        normalises its own share, and 2 processes do not train as 1 does."""
        return syncbn.convert(model, keep=tuple(model.fixed_statistics)) if sync_batchnorm else model

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        return batch.tensor_split(self.world)[self.rank]

    def average_gradients(self, params: list[torch.nn.Parameter]) -> None:
        distributed.average_gradients(params)

    def sync(self, module: torch.nn.Module, parameters: bool = True) -> None:
        distributed.sync_module(module, parameters)

    def broadcast(self, obj: Any) -> Any:
        return distributed.broadcast(obj)

    def any(self, flag: bool) -> bool:
        return distributed.any_rank(flag)

    def gather(self, obj: Any) -> list[Any]:
        return distributed.gather(obj)

    def rng_states(self) -> list[dict[str, torch.Tensor]] | None:
        own = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            own["cuda"] = torch.cuda.get_rng_state(torch.cuda.current_device())  # this rank's GPU only
        return self.gather(own)

    def decide(self, act: Callable[[], None], stopping: Callable[[], bool]) -> bool:
        error: BaseException | None = None
        try:
            act()
        except Exception as exc:
            error = exc
        stop, stopped_by = self.broadcast((stopping(), repr(error) if error is not None else None))
        if error is not None and self.is_main:
            raise error
        if stopped_by is not None:
            raise RunStopped(f"rank 0 stopped the run: {stopped_by}")
        return stop


def strategy_from_env() -> SingleProcess:
    """Torchrun when this process joined a group of several, else SingleProcess."""
    return Torchrun() if distributed.world_size() > 1 else SingleProcess()
