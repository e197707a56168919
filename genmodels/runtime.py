"""Process-wide settings: the device, the autocast dtype and flush-to-zero.

Entry points (the CLI, tuning workers, notebooks, benchmarks) call `setup_process()` first thing;
no constructor changes process state behind its caller's back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from typing import Any, Iterator

import torch

from genmodels.errors import ConfigError, Interrupted, UserError

# torch.load(weights_only=True), which every checkpoint, cache and weights file goes through, could
# be made to run code on torch <= 2.5.1 (CVE-2025-32434); 2.6.0 fixed it.
MIN_TORCH = (2, 6)


def check_torch(version: str | None = None) -> None:
    """Refuse a torch older than MIN_TORCH (one line), before any file is read."""
    version = version or torch.__version__
    parts = version.split("+")[0].split(".")
    found = tuple(int(p) if p.isdigit() else 0 for p in parts[:2])
    if found < MIN_TORCH:
        raise UserError(f"torch {version} is installed; genmodels needs torch >= {'.'.join(map(str, MIN_TORCH))} "
                        f"(older versions can run code from a crafted checkpoint: CVE-2025-32434); "
                        f"pip install 'torch>=2.6'")


def flush_denormals() -> bool:
    """Compute denormal floats (float32: below 1.2e-38) as zero on the CPU, as TensorFlow does by
    default; False where the CPU cannot (then nothing changes).

    Adam's first moment of a weight whose gradient stays zero (an always-black pixel's, a dead
    ReLU's) shrinks by beta1 each step into the denormal range after ~600 steps, where x86
    arithmetic is many times slower: without this, a CPU step of the MLP VAE gets 35% slower from
    the third Fashion-MNIST epoch on. The mode is per thread and torch's worker threads copy it
    when they start, so it must be set before any parallel work. Changes no result beyond 1e-38.
    """
    return torch.set_flush_denormal(True)


def setup_process(threads: int | None = None) -> None:
    """What every entry point does before torch starts its worker threads; `threads` caps torch's
    (the workers of a study share the machine's cores instead of each taking all of them)."""
    flush_denormals()
    if threads:
        torch.set_num_threads(threads)


def threads_per_process(processes: int) -> int:
    """This machine's cores shared out between `processes` processes (at least one each)."""
    return max(1, (os.cpu_count() or 1) // processes)


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else the CPU; 'cuda' without a GPU is a config error."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device: '{name}' asked for but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def check_compiler(device: torch.device) -> None:
    """train.compile on a CPU: inductor builds C++ kernels, so a compiler must be at hand (told up
    front, not at the first training step)."""
    if device.type == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++")):
        raise ConfigError("train.compile: torch.compile on a CPU needs a C++ compiler (g++ or clang++, or $CXX); "
                          "none was found on PATH")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype a `train.precision` setting means on `device`; None is float32."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision: 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@contextlib.contextmanager
def _handling(handler: Any) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM while the block runs; the previous ones restored after.
    Signal handlers belong to the main thread: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted at once while the block runs.

    Without this, SIGTERM ends Python on the spot, and whatever the process was doing (a study
    trial marked RUNNING, say) is never cleaned up.
    """
    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signum)

    with _handling(handler):
        yield


class SignalFlag:
    """Set by `signals_deferred`: the signal that asked to stop, or None."""

    signum: int | None = None


@contextlib.contextmanager
def signals_deferred() -> Iterator[SignalFlag]:
    """SIGINT and SIGTERM only set the flag, so a loop can finish its step and save before it
    raises Interrupted itself; a second signal raises at once."""
    flag = SignalFlag()

    def handler(signum: int, frame: Any) -> None:
        if flag.signum is not None:
            raise Interrupted(signum)
        flag.signum = signum

    with _handling(handler):
        yield flag
