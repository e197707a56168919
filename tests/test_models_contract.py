"""The model contract, checked over every registry entry, and a third model family defined in this
file that goes through every command (train, resume, tune, fine-tune, evaluate) with one registry
line and no package file touched."""

import inspect
import json
import math
from typing import Literal

import optuna
import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import Field
from torch import nn

from genmodels.checkpoint import load_checkpoint
from genmodels.config import Config, EvalConfig
from genmodels.data import DataConfig, load_data
from genmodels.metrics.quality import SampleQuality
from genmodels.models import MODELS, EvalContext, GenerativeModel, ModelSection, Updater, build_model, to_unit
from genmodels.optim import OptimConfig, make_optimizer
from genmodels.schema import StrictModel

from conftest import cli, data_root


# --- a third family: a deterministic autoencoder with an L1 loss ---------------------------


class TinyAEConfig(ModelSection):
    kind: Literal["tiny_ae"] = "tiny_ae"
    hidden: int = Field(16, ge=1)
    code: int = Field(4, ge=1)


class TinyAEOptions(StrictModel):
    noise: float = Field(0.0, ge=0.0, le=1.0, description="std of Gaussian noise added to inputs when scoring")


class TinyAE(GenerativeModel):
    Config = TinyAEConfig
    EvalOptions = TinyAEOptions
    metrics = {"l1": "minimize"}
    monitor = "l1"

    def __init__(self, image_shape=(1, 28, 28), hidden: int = 16, code: int = 4):
        super().__init__()
        d = math.prod(image_shape)
        self.image_shape = tuple(image_shape)
        self.code = code
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, code))
        self.decoder = nn.Sequential(nn.Linear(code, hidden), nn.ReLU(), nn.Linear(hidden, d),
                                     nn.Unflatten(1, self.image_shape))

    def configure_optimizers(self, optim):
        return {"ae": make_optimizer(self.parameters(), optim)}

    def training_step(self, batch, update):
        x = to_unit(batch)
        loss = F.l1_loss(torch.sigmoid(self.decoder(self.encoder(x))), x)
        update.step("ae", loss)
        return {"l1": loss.detach()}

    @torch.no_grad()
    def evaluate(self, batches, ctx):
        total, n = 0.0, 0
        for batch in batches:
            x = to_unit(batch)
            noisy = x + ctx.options.noise * torch.randn(x.shape, generator=ctx.generator) if ctx.options else x
            total += F.l1_loss(torch.sigmoid(self.decoder(self.encoder(noisy))), x, reduction="sum").item()
            n += x.numel()
        return {"l1": total / n}

    @torch.no_grad()
    def sample(self, n, generator=None):
        z = torch.randn((n, self.code), generator=generator, device=self.device)
        return torch.sigmoid(self.decoder(z))


@pytest.fixture
def tiny_ae():
    MODELS["tiny_ae"] = TinyAE  # the one registry line
    yield TinyAE
    del MODELS["tiny_ae"]


# --- the contract, over every registry entry ------------------------------------------------


@pytest.fixture(params=[*sorted(MODELS), "tiny_ae"])  # every registered family, and this file's
def family(request):
    MODELS["tiny_ae"] = TinyAE
    yield request.param, MODELS[request.param]
    del MODELS["tiny_ae"]


def test_registry_covers_the_families():
    assert {"vae", "gan"} <= set(MODELS)


def test_constructor_mirrors_the_config(family):
    """The config section's fields are the constructor's keyword arguments, with the same defaults."""
    kind, cls = family
    fields = {k: f.default for k, f in cls.Config.model_fields.items() if k != "kind"}
    signature = inspect.signature(cls.__init__).parameters
    assert cls.constructor_arguments() == list(fields)
    assert {k: signature[k].default for k in fields} == fields
    assert set(cls.metrics.values()) <= {"minimize", "maximize", None} and cls.metrics[cls.monitor] is not None
    assert cls.monitor in cls.reported_metrics() <= set(cls.metrics)
    assert cls.reported_metrics(full=True) <= set(cls.metrics)


def test_build_step_sample_evaluate_round_trip(family):
    kind, cls = family
    torch.manual_seed(0)
    cfg = Config.model_validate({"model": {"kind": kind}})
    model = build_model(cfg.model, (1, 28, 28))
    assert isinstance(model, cls)
    update = Updater(model.configure_optimizers(OptimConfig()))
    batch = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    losses = {}
    for _ in range(2):
        losses |= model.training_step(batch, update)
    assert losses and all(isinstance(v, torch.Tensor) and v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    images = model.sample(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 28, 28) and images.min() >= 0 and images.max() <= 1

    data_cfg = DataConfig(root=data_root(), limit=200)
    scorer = SampleQuality(EvalConfig(), data_cfg, quiet=True)
    heldout = load_data(data_cfg).heldout.images
    ctx = EvalContext(torch.Generator().manual_seed(1), scorer=scorer, fid_samples=50)
    metrics = model.evaluate(heldout.split(100), ctx)
    assert model.monitor in metrics and all(math.isfinite(v) for v in metrics.values())
    assert set(metrics) == cls.reported_metrics(section=cfg.model)  # exactly what it says it reports

    twin = build_model(cfg.model, (1, 28, 28))
    twin.load_state_dict(model.state_dict())
    model.eval(), twin.eval()
    same_noise = [torch.Generator().manual_seed(2) for _ in range(2)]
    assert torch.equal(model.sample(4, same_noise[0]), twin.sample(4, same_noise[1]))


# --- the third family through every command ---------------------------------------------------


def run_yaml(tmp_path, **extra):
    cfg = {"name": "ae", "data": {"name": "mnist", "limit": 600}, "model": {"kind": "tiny_ae", "hidden": 8},
           "train": {"epochs": 2, "batch_size": 64}, "log": {"runs_dir": str(tmp_path / "runs"), "n_images": 4},
           **extra}
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_third_family_train_resume_tune_finetune_eval(tmp_path, tiny_ae):
    # train, and a twin trained 1 epoch then resumed: bitwise the same weights
    code, out, err = cli("train", str(run_yaml(tmp_path)), "--quiet")
    assert code == 0, err
    assert "l1" in out
    assert cli("train", str(run_yaml(tmp_path)), "--quiet", "--name", "half", "--set", "train.epochs=1")[0] == 0
    code, _, err = cli("train", str(run_yaml(tmp_path)), "--quiet", "--name", "half", "--resume")
    assert code == 0, err
    full = load_checkpoint(tmp_path / "runs" / "ae" / "last.pt")
    resumed = load_checkpoint(tmp_path / "runs" / "half" / "last.pt")
    assert full.kind == "tiny_ae" and resumed.epoch == 2
    assert all(torch.equal(full.model[k], resumed.model[k]) for k in full.model)

    # tune two trials on the metric only this family reports
    tune = {"base": "ae.yaml", "study_name": "ae_study", "runs_dir": str(tmp_path / "runs"), "n_trials": 2,
            "objectives": ["l1"], "set": ["train.epochs=1"], "sampler": {"name": "random"},
            "space": {"model.code": {"type": "int", "low": 2, "high": 8}}}
    (tmp_path / "tune.yaml").write_text(yaml.safe_dump(tune))
    code, out, err = cli("tune", str(tmp_path / "tune.yaml"), "--quiet")
    assert code == 0, err
    study = optuna.load_study(study_name="ae_study", storage=f"sqlite:///{tmp_path / 'runs' / 'ae_study' / 'study.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert study.direction == optuna.study.StudyDirection.MINIMIZE and all(t.value > 0 for t in study.trials)

    # fine-tune with the encoder frozen; the model section comes from the source
    ft = run_yaml(tmp_path, name="ae_ft", finetune={"from": str(tmp_path / "runs" / "ae"), "freeze": ["encoder.*"]},
                  data={"name": "fashion-mnist", "limit": 300})
    ft_cfg = yaml.safe_load(ft.read_text())
    del ft_cfg["model"]
    ft.write_text(yaml.safe_dump(ft_cfg))
    code, out, err = cli("finetune", str(ft), "--quiet")
    assert code == 0, err
    assert "parameters frozen (4 tensors)" in out
    tuned = load_checkpoint(tmp_path / "runs" / "ae_ft" / "last.pt")
    assert all(torch.equal(tuned.model[k], full.model[k]) for k in full.model if k.startswith("encoder."))
    assert any(not torch.equal(tuned.model[k], full.model[k]) for k in full.model if k.startswith("decoder."))

    # evaluate, with the family's own option as a command-line flag
    code, out, err = cli("eval", str(tmp_path / "runs" / "ae"), "--split", "test", "--noise", "0.2")
    assert code == 0, err
    report = json.loads((tmp_path / "runs" / "ae" / "eval_test.json").read_text())
    clean = cli("eval", str(tmp_path / "runs" / "ae"), "--split", "test")
    assert clean[0] == 0
    plain = json.loads((tmp_path / "runs" / "ae" / "eval_test.json").read_text())
    assert report["options"] == {"noise": 0.2} and "options" not in plain
    assert report["metrics"]["l1"] != plain["metrics"]["l1"]  # the option reached evaluate()
    code, _, err = cli("eval", str(tmp_path / "runs" / "ae"), "--noise", "3")
    assert code == 2 and "noise" in err and len(err.strip().splitlines()) == 1
