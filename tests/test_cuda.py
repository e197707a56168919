"""What needs a GPU to check: training, exact resume and bf16 autocast on CUDA. Skipped without
CUDA; `benchmarks/gpu_check.sh` runs them (`pytest -m cuda`) on a CUDA machine."""

import pytest
import torch

from genmodels.experiment import build
from genmodels.models import VAE, Updater
from genmodels.optim import OptimConfig

from conftest import tiny_config

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_a_run_trains_on_the_gpu_and_resumes_exactly(tmp_path):
    straight = build(tiny_config(tmp_path, "name=straight", "train.epochs=2", "train.device=cuda"), quiet=True)
    result = straight.fit()
    assert result.device.startswith("cuda") and next(straight.model.parameters()).is_cuda
    build(tiny_config(tmp_path, "name=split", "train.epochs=1", "train.device=cuda"), quiet=True).fit()
    resumed = build(tiny_config(tmp_path, "name=split", "train.epochs=2", "train.device=cuda"), quiet=True,
                    resume=True)
    resumed.fit()
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)


def test_training_leaves_the_callers_gpu_random_stream_alone(tmp_path):
    torch.cuda.manual_seed(123)
    before = torch.cuda.get_rng_state()
    build(tiny_config(tmp_path, "train.device=cuda"), quiet=True).fit()
    assert torch.equal(torch.cuda.get_rng_state(), before)


@pytest.mark.skipif(torch.cuda.is_available() and not torch.cuda.is_bf16_supported(), reason="no bf16 on this GPU")
def test_bf16_autocast_runs_the_layers_in_bf16():
    model = VAE((1, 28, 28), hidden=32, latent_dim=4).cuda()
    dtypes = set()
    model.encoder[1][0].register_forward_hook(lambda module, inputs, output: dtypes.add(output.dtype))
    update = Updater(model.configure_optimizers(OptimConfig()), "cuda", "bf16")
    losses = model.training_step(torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, device="cuda"), update)
    assert dtypes == {torch.bfloat16} and all(torch.isfinite(v) for v in losses.values())
