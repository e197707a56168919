"""BatchNorm whose statistics span every process of a torchrun job, so that 2 processes with
batches of 32 normalise as 1 process with batches of 64 does.

On GPUs this is torch's own nn.SyncBatchNorm. On the CPU (gloo) torch's kernels refuse
("SyncBatchNorm expected input tensor to be on GPU"), so there the per-channel sums are summed
over ranks with torch.distributed.nn's differentiable all-reduce: its backward all-reduces the
gradients of the statistics, which gives every rank the gradient of the whole batch's loss, as
torch's CUDA kernel does.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce


class SyncBatchNorm(nn.SyncBatchNorm):
    """nn.SyncBatchNorm that also synchronises CPU tensors. Its parameters and buffers are a
    BatchNorm's, under the same names: checkpoints load either way."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not self._synced():
            return super().forward(x)
        return self._cpu_forward(x)

    def _synced(self) -> bool:
        return (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group or dist.group.WORLD) > 1)

    def _cpu_forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        # float64 sums: mean and variance from sums of squares lose digits in float32
        xd = x.double()
        count = torch.tensor([x.numel() // c], dtype=torch.float64)
        local = torch.cat([xd.sum(dims), (xd * xd).sum(dims), count])
        total = all_reduce(local, group=self.process_group or dist.group.WORLD)
        n = total[-1]
        mean = total[:c] / n
        var = total[c : 2 * c] / n - mean * mean  # biased, as BatchNorm normalises with
        if self.track_running_stats and self.running_mean is not None:
            self._update_running(mean.detach(), var.detach() * n / (n - 1))
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = ((xd - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / self.num_batches_tracked.item()
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased_var.to(self.running_var.dtype), alpha=factor)


def convert(module: nn.Module, keep: tuple[nn.Module, ...] = ()) -> nn.Module:
    """`module` with every BatchNorm layer replaced by a SyncBatchNorm sharing its parameters and
    buffers (as nn.SyncBatchNorm.convert_sync_batchnorm does); layers in `keep` (frozen ones that
    never train) stay as they are."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, nn.SyncBatchNorm) \
            and module not in keep:
        synced = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            synced.weight, synced.bias = module.weight, module.bias
        synced.running_mean, synced.running_var = module.running_mean, module.running_var
        synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert(child, keep))
    return module
