"""train.precision: auto on a CPU: bf16 only with bf16 matrix units and a measured gain, the
measurement cached per machine and model, the choice written into the run's config; a GAN, which
bf16 trained worse, fp32 on any device without measuring."""

import json

import pytest
import torch
import yaml

from genmodels.config import Config
from genmodels.data import load_data
from genmodels.experiment import build
from genmodels.models import build_model
from genmodels.precision import MIN_SPEEDUP, bf16_units, choose_precision, measure

VAE = {"kind": "vae", "arch": "conv", "n_layers": 2, "hidden": 8, "latent_dim": 8}
GAN = {"kind": "gan", "arch": "dcgan", "n_layers": 2, "hidden": 8, "latent_dim": 8}


def config(tmp_path, precision="auto", model=VAE):
    return Config.model_validate({"name": "p", "data": {"name": "mnist", "limit": 300},
                                  "model": model, "train": {"epochs": 1, "batch_size": 32, "precision": precision},
                                  "eval": {"fid_samples": 50, "metrics": []},
                                  "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 4}})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GENMODELS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "precision.json"


def test_the_measurement_leaves_the_model_and_the_rng_as_they_were(tmp_path):
    cfg = config(tmp_path)
    model = build_model(cfg.model, (1, 28, 28))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    seconds = measure(model, cfg, load_data(cfg.data).train.images[:32])
    assert set(seconds) == {"fp32", "bf16"} and all(0 < s < 60 for s in seconds.values())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.skipif(not bf16_units(), reason="this CPU has no bf16 matrix units")
@pytest.mark.parametrize("fp32,bf16,expected", [(1.0, 1.0 / (MIN_SPEEDUP + 0.05), "bf16"),
                                                (1.0, 1.0 / (MIN_SPEEDUP - 0.05), "fp32")])
def test_the_cached_measurement_decides(tmp_path, cache, fp32, bf16, expected, capsys):
    cfg = config(tmp_path)
    data = load_data(cfg.data)
    model = build_model(cfg.model, data.image_shape)
    measured = choose_precision(cfg, model, data, torch.device("cpu"))  # measures once, writes the cache
    known = json.loads(cache.read_text())
    assert len(known) == 1
    (key, seconds), = known.items()
    speedup = seconds["fp32"] / seconds["bf16"]
    assert measured.train.precision == ("bf16" if speedup >= MIN_SPEEDUP else "fp32")
    cache.write_text(json.dumps({key: {"fp32": fp32, "bf16": bf16}}))  # the machine's record: read, not redone
    assert choose_precision(cfg, model, data, torch.device("cpu")).train.precision == expected
    assert f"train.precision auto: {expected} (bf16 {fp32 / bf16:.2f}x the speed of fp32" in capsys.readouterr().err


def test_no_measurement_where_it_cannot_pay_or_is_not_asked(tmp_path, cache, monkeypatch):
    cfg = config(tmp_path)
    data = load_data(cfg.data)
    model = build_model(cfg.model, data.image_shape)
    for precision in ("fp32", "bf16"):
        assert choose_precision(config(tmp_path, precision), model, data, torch.device("cpu")) \
            .train.precision == precision
    monkeypatch.setenv("WORLD_SIZE", "2")  # ranks measuring apart could choose apart
    assert choose_precision(cfg, model, data, torch.device("cpu")).train.precision == "fp32"
    assert not cache.exists()


@pytest.mark.parametrize("device", ["cpu", "cuda"])  # the choice needs no GPU: only the device's kind
def test_a_gan_is_fp32_without_measuring(tmp_path, cache, device, capsys):
    cfg = config(tmp_path, model=GAN)
    data = load_data(cfg.data)
    model = build_model(cfg.model, data.image_shape)
    assert choose_precision(cfg, model, data, torch.device(device)).train.precision == "fp32"
    assert "train.precision auto: fp32 (gan: bf16 trained it to a worse FID" in capsys.readouterr().err
    assert not cache.exists()
    vae = build_model(config(tmp_path).model, data.image_shape)  # a VAE on CUDA: autocast_dtype's bf16
    assert choose_precision(config(tmp_path), vae, data, torch.device("cuda")).train.precision == "auto"


def test_a_run_records_and_trains_with_the_choice(tmp_path):  # the session cache: its FID classifier
    trainer = build(config(tmp_path), quiet=True)
    chosen = trainer.cfg.train.precision
    assert chosen in ("fp32", "bf16") and (chosen == "fp32" or bf16_units())
    assert trainer.updater.amp_dtype == (torch.bfloat16 if chosen == "bf16" else None)
    trainer.fit()
    saved = yaml.safe_load((tmp_path / "runs" / "p" / "config.yaml").read_text())
    assert saved["train"]["precision"] == chosen


def test_a_resumed_run_keeps_the_precision_it_started_with(tmp_path):
    """The config still says auto; the run's checkpoint says what auto chose, and the resumed
    epochs train at that precision (not the fp32 that 'auto' would mean unresolved on a CPU)."""
    first = build(config(tmp_path, "bf16"), quiet=True)
    first.fit()
    resumed = build(config(tmp_path).model_copy(update={"train": config(tmp_path).train.model_copy(
        update={"epochs": 2})}), quiet=True, resume=True)
    assert resumed.cfg.train.precision == "bf16" and resumed.updater.amp_dtype == torch.bfloat16
    resumed.fit()
    saved = yaml.safe_load((tmp_path / "runs" / "p" / "config.yaml").read_text())
    assert saved["train"]["precision"] == "bf16"
