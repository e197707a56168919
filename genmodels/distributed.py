"""Running one training run over several processes (and GPUs) launched by torchrun.

    torchrun --nproc_per_node 2 -m genmodels train experiments/vae_mnist.yaml

torch.distributed does the communication (gloo on CPU, NCCL on GPUs); this module only says who
this process is and offers the few collectives the loop needs. Without torchrun (no WORLD_SIZE in
the environment) everything here is a no-op for a single process.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from genmodels.errors import UserError

# A rank that dies is noticed by the others at once (their next collective fails; torchrun then
# ends them all). This bounds the wait for a rank that hangs instead: long enough for rank 0 to
# train the feature classifier while the others wait for its first held-out evaluation.
TIMEOUT = datetime.timedelta(minutes=30)
_control: Any = None  # a gloo group for small CPU messages, whatever the main backend


def launched() -> bool:
    """Started by torchrun with more than one process?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_kind: str = "auto") -> None:
    """Join the process group torchrun describes in the environment (once per process)."""
    global _control
    if not launched() or dist.is_initialized():
        return
    cuda = device_kind != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank())
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    except Exception as exc:  # a bad MASTER_ADDR, a port in use: the launcher's settings
        raise UserError(f"torch.distributed: cannot join the process group ({exc})") from None
    _control = dist.new_group(backend="gloo", timeout=TIMEOUT) if cuda else dist.group.WORLD


def rank_from_env() -> int:
    """This process's rank as torchrun announces it, before the group is joined."""
    return int(os.environ.get("RANK", "0"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 writes events, checkpoints and metrics, and owns a tuning trial."""
    return rank() == 0


def device_name(requested: str) -> str:
    """Each rank on its own GPU when there are GPUs."""
    if dist.is_initialized() and requested in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank()}"
    return requested


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank (picklable Python objects: parameters, decisions, metrics)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_control)
    return box[0]


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on any: a signal one rank got stops them all at the
    same step. A CPU tensor on the gloo group: no GPU synchronisation."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return bool(t.item())


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, on every rank, in rank order."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_control)
    return out


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Gradients averaged over ranks, in one all-reduce of a flat buffer (what DDP's reducer does
    at the end of a backward pass)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(world_size())
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def sync_module(module: torch.nn.Module, parameters: bool = True) -> None:
    """Rank 0's buffers (e.g. BatchNorm's running statistics) on every rank, and its parameters too
    unless parameters=False."""
    if world_size() == 1:
        return
    for tensor in [*(module.parameters() if parameters else ()), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


def shutdown() -> None:
    """Leave the process group. The group object must go with it: one still referenced here is
    freed only while the interpreter is torn down, where its gloo threads can abort the process
    ("terminate called without an active exception": 7 of 50 two-process studies on a busy
    machine ended so while this module kept the world group as its control group; 0 of 40 since)."""
    global _control
    _control = None
    if dist.is_initialized():
        dist.destroy_process_group()
