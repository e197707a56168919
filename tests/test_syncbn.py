"""SyncBatchNorm on the CPU: two processes with half a batch each normalise, back-propagate and
update running statistics as one process with the whole batch does; plain BatchNorm does not."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from genmodels import syncbn
from genmodels.models.blocks import conv_decoder

from conftest import REPO

SCRIPT = """
import copy, json, sys
import torch
from genmodels import distributed, syncbn
from genmodels.models.blocks import conv_decoder

distributed.init_from_env("cpu")
rank, world = distributed.rank(), distributed.world_size()
torch.manual_seed(0)
net = conv_decoder(1, 28, 2, 8, 6, norm=True)  # a DCGAN generator: BatchNorm after the linear and each block
whole = copy.deepcopy(net)  # one process, the whole batch
shared = syncbn.convert(net) if sys.argv[1] == "sync" else net
z, target = torch.randn(16, 6), torch.randn(16, 1, 28, 28)
mine = slice(rank * 8, rank * 8 + 8)
opts = [torch.optim.SGD(m.parameters(), lr=0.5) for m in (whole, shared)]
for step in range(3):
    for model, opt, part in ((whole, opts[0], slice(None)), (shared, opts[1], mine)):
        out = model(z[part])
        loss = ((out - target[part]) ** 2 * torch.linspace(0, 2, 28)).mean()  # the mean over this batch
        opt.zero_grad()
        loss.backward()
        if model is shared:
            distributed.average_gradients(list(model.parameters()))
        opt.step()
with torch.no_grad():
    a, b = whole.train()(z)[mine], shared.train()(z[mine])  # outputs in training mode, then the buffers
gap = {"output": (a - b).abs().max().item()}
for (name, x), (_, y) in zip(whole.state_dict().items(), shared.state_dict().items()):
    gap[name] = (x.double() - y.double()).abs().max().item()
if rank == 0:
    print(json.dumps(gap))
distributed.shutdown()
"""


def two_processes(tmp_path, mode):
    script = tmp_path / "syncbn_check.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), mode], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["sync", "plain"])
def test_two_processes_normalise_as_one_only_when_synchronised(tmp_path, mode):
    gap = two_processes(tmp_path, mode)
    worst = max(gap.values())
    if mode == "sync":  # weights, running means and variances, outputs: float rounding apart
        assert worst < 1e-5, gap
        assert all(g == 0 for k, g in gap.items() if k.endswith("num_batches_tracked"))
    else:  # each half normalised by its own statistics
        assert worst > 1e-3, gap


def test_conversion_keeps_names_parameters_and_frozen_layers():
    net = conv_decoder(1, 28, 2, 8, 6, norm=True)
    frozen = net[2]
    params = {id(p) for p in net.parameters()}
    keys = list(net.state_dict())
    converted = syncbn.convert(net, keep=(frozen,))
    assert list(converted.state_dict()) == keys  # checkpoints load either way
    assert {id(p) for p in converted.parameters()} == params  # the optimizers' parameters
    kinds = [type(m) for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert kinds[0] is nn.BatchNorm2d and all(k is syncbn.SyncBatchNorm for k in kinds[1:])


def test_one_process_is_plain_batchnorm():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3)
    synced = syncbn.convert(nn.Sequential(nn.BatchNorm2d(3)))[0]
    x = torch.randn(8, 3, 5, 5)
    assert torch.equal(bn(x), synced(x)) and torch.equal(bn.running_var, synced.running_var)
