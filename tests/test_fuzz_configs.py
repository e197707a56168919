"""Malformed run and tuning configs, generated from the schemas: each is one line on stderr, exit
code 2, no traceback, and nothing trained or written."""

import random
import typing
from typing import Any, Literal

import annotated_types
import pytest
import yaml
from pydantic import BaseModel

from genmodels.config import Config
from genmodels.models import MODELS

from conftest import cli

BASE = {"name": "fuzz", "data": {"name": "mnist", "download": False}, "model": {"kind": "vae", "hidden": 8},
        "train": {"epochs": 1}, "log": {"n_images": 4}}


def bad_values(annotation: Any, metadata: list) -> list[Any]:
    """Values the field must refuse, from its type and its bounds."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, type(int | None)):
        inner = [a for a in args if a is not type(None)]
        return bad_values(inner[0], metadata) if len(inner) == 1 else []
    if typing.get_origin(annotation) is Literal:
        return ["not-a-choice", 12345]
    if annotation is bool:
        return ["maybe", 7, [True]]
    if annotation is int:
        out: list[Any] = ["many", 1.5, [1], {"a": 1}]
    elif annotation is float:
        out = ["abc", [0.5], float("nan"), float("inf")]
    elif annotation is str:
        out = [[1, 2], {"a": "b"}]
    elif typing.get_origin(annotation) is tuple:
        return ["x", [0.5], [1.5, 0.9]]
    elif typing.get_origin(annotation) is list:
        return ["abc", [1.5], {"a": 1}]
    else:
        return []
    for m in metadata:
        if isinstance(m, annotated_types.Ge):
            out.append(m.ge - 1)
        elif isinstance(m, annotated_types.Gt):
            out.append(m.gt)
        elif isinstance(m, annotated_types.Le):
            out.append(m.le + 1)
        elif isinstance(m, annotated_types.Lt):
            out.append(m.lt)
        elif hasattr(m, "pattern") and m.pattern:
            out.append("bad name!")
    return out


def fields(model: type[BaseModel], prefix: str = ""):
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from fields(field.annotation, f"{prefix}{name}.")
        elif name not in ("model", "finetune", "kind"):
            yield f"{prefix}{name}", field


def set_path(data: dict, dotted: str, value: Any) -> dict:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def run_config_cases() -> list[tuple[str, str]]:
    """(case id, file text)."""
    cases = []
    for dotted, field in fields(Config):
        for value in bad_values(field.annotation, field.metadata):
            changed = set_path(yaml.safe_load(yaml.safe_dump(BASE)), dotted, value)
            cases.append((f"{dotted}={value!r}", yaml.safe_dump(changed)))
    for kind, cls in MODELS.items():
        for name, field in cls.Config.model_fields.items():
            if name == "kind":
                continue
            for value in bad_values(field.annotation, field.metadata):
                data = yaml.safe_load(yaml.safe_dump(BASE))
                data["model"] = {"kind": kind, name: value}
                cases.append((f"model[{kind}].{name}={value!r}", yaml.safe_dump(data)))
    rng = random.Random(0)
    for section in ("", "data.", "model.", "optim.", "train.", "eval.", "log."):
        for _ in range(2):
            key = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(3, 10)))
            cases.append((f"unknown {section}{key}", yaml.safe_dump(set_path(yaml.safe_load(yaml.safe_dump(BASE)),
                                                                               section + key, 1))))
    cases += [
        ("model.kind unknown", yaml.safe_dump({**BASE, "model": {"kind": "diffusion"}})),
        ("model not a mapping", yaml.safe_dump({**BASE, "model": [1, 2]})),
        ("section a list", yaml.safe_dump({**BASE, "train": [1]})),
        ("finetune without from", yaml.safe_dump({**BASE, "finetune": {"freeze": ["encoder.*"]}})),
        ("finetune from nowhere", yaml.safe_dump({**BASE, "finetune": {"from": "/nonexistent/run"}})),
        ("seed 2**70", yaml.safe_dump({**BASE, "seed": 2**70})),
        ("empty file", ""),
        ("only a comment", "# nothing here\n"),
        ("top-level list", "- 1\n- 2\n"),
        ("top-level scalar", "42\n"),
        ("binary", bytes(range(256)).decode("latin-1")),
        ("unclosed bracket", "model:\n  hidden: [1,\n"),
        ("bad indentation", "train:\n  epochs: 1\n batch_size: 2\n"),
        ("tab indentation", "train:\n\tepochs: 1\n"),
        ("duplicate colon", "train: epochs: 1\n"),
        ("unterminated string", 'name: "abc\n'),
    ]
    return cases


RUN_CASES = run_config_cases()


def test_enough_cases():
    assert len(RUN_CASES) >= 100 and len(TUNE_CASES) >= 50


def one_clean_line(result, *absent):
    code, out, err = result
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("genmodels: error: "), (code, err)
    assert "Traceback" not in err and len(lines[0]) < 600
    for path in absent:
        assert not path.exists(), f"{path} was created"


@pytest.mark.parametrize("case, text", RUN_CASES, ids=[c for c, _ in RUN_CASES])
def test_malformed_run_config(tmp_path, case, text):
    path = tmp_path / "cfg.yaml"
    if case == "binary":
        path.write_bytes(bytes(range(256)))
    else:
        path.write_text(text)
    # --runs-dir would replace a malformed log.runs_dir; those cases write nowhere valid anyway
    runs = [] if case.startswith("log.runs_dir") else ["--runs-dir", str(tmp_path / "runs")]
    one_clean_line(cli("train", str(path), *runs, "--quiet"), tmp_path / "runs")


@pytest.mark.parametrize("target", ["missing.yaml", "."])
def test_missing_or_folder_config(tmp_path, target):
    one_clean_line(cli("train", str(tmp_path / target), "--runs-dir", str(tmp_path / "runs")), tmp_path / "runs")


# --- tuning configs ----------------------------------------------------------------------------

TUNE = {"base": "base.yaml", "study_name": "s", "n_trials": 2, "objectives": ["neg_elbo"],
        "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}
SPACES = {
    "int beyond bounds": {"model.n_layers": {"type": "int", "low": 1, "high": 20}},
    "int below bounds": {"model.hidden": {"type": "int", "low": 0, "high": 8}},
    "float on an int field": {"model.n_layers": {"type": "float", "low": 1, "high": 3}},
    "float choice on an int field": {"model.hidden": {"type": "categorical", "choices": [8, 12.5]}},
    "later choice out of range": {"model.hidden": {"type": "categorical", "choices": [8, 16, -1]}},
    "choice not in enum": {"model.arch": {"type": "categorical", "choices": ["mlp", "transformer"]}},
    "unknown field": {"optim.lrr": {"type": "float", "low": 1e-4, "high": 1e-2}},
    "unknown section": {"optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-2}},
    "field of another family": {"model.n_critic": {"type": "int", "low": 1, "high": 3}},
    "lr range reaching zero": {"optim.lr": {"type": "float", "low": 0, "high": 1e-2}},
    "log range from zero": {"optim.lr": {"type": "float", "low": 0, "high": 1e-2, "log": True}},
    "low above high": {"optim.lr": {"type": "float", "low": 1e-2, "high": 1e-4}},
    "step with log": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True, "step": 1e-3}},
    "negative step": {"model.hidden": {"type": "int", "low": 4, "high": 8, "step": -1}},
    "fractional int range": {"model.hidden": {"type": "int", "low": 4.5, "high": 8}},
    "missing high": {"optim.lr": {"type": "float", "low": 1e-4}},
    "empty choices": {"model.arch": {"type": "categorical", "choices": []}},
    "choices on a float": {"optim.lr": {"type": "float", "choices": [1e-3]}},
    "dict choice": {"model.arch": {"type": "categorical", "choices": [{"a": 1}]}},
    "unknown param type": {"optim.lr": {"type": "double", "low": 1e-4, "high": 1e-2}},
    "beta1 range beyond 1": {"optim.betas": {"type": "float", "low": 0.5, "high": 1.5}},
    "nan bound": {"optim.lr": {"type": "float", "low": float("nan"), "high": 1e-2}},
    "batch size of zero": {"train.batch_size": {"type": "categorical", "choices": [0, 64]}},
    "bool field, bad choice": {"model.binarize": {"type": "categorical", "choices": [True, "sometimes"]}},
    "spec not a mapping": {"optim.lr": [1e-4, 1e-2]},
    "extra spec key": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "scale": "log"}},
}
TOP = {
    "objective the VAE lacks": {"objectives": ["fid"]},
    "unknown objective": {"objectives": ["accuracy"]},
    "objective training never computes": {"objectives": ["iwae_nll"]},
    "no objectives": {"objectives": []},
    "directions mismatch": {"objectives": ["neg_elbo"], "directions": ["minimize", "maximize"]},
    "bad direction": {"directions": ["down"]},
    "n_trials zero": {"n_trials": 0},
    "n_trials text": {"n_trials": "lots"},
    "negative timeout": {"timeout": -5},
    "cv_folds one": {"cv_folds": 1},
    "unknown sampler": {"sampler": {"name": "bayes"}},
    "unknown pruner": {"pruner": {"name": "hyperbandit"}},
    "pruner reduction 1": {"pruner": {"name": "sha", "reduction_factor": 1}},
    "sampler typo": {"sampler": {"nme": "tpe"}},
    "unknown top key": {"trials": 5},
    "bad study name": {"study_name": "my study/1"},
    "empty space": {"space": {}},
    "space a list": {"space": ["optim.lr"]},
    "missing base file": {"base": "nope.yaml"},
    "bad set override": {"set": ["train.epochs"]},
    "set breaks the base": {"set": ["train.epochs=0"]},
    "set unknown key": {"set": ["train.epoch=3"]},
    "grid float without step": {"sampler": {"name": "grid"}},
    "no base": {"base": None},
}


def tune_cases() -> list[tuple[str, dict | str]]:
    cases: list[tuple[str, dict | str]] = [(f"space: {k}", {**TUNE, "space": v}) for k, v in SPACES.items()]
    cases += [(k, {**TUNE, **v}) for k, v in TOP.items()]
    cases += [("empty file", ""), ("binary", "\x00\x01\x02"), ("broken yaml", "space: {optim.lr: [\n"),
              ("top-level list", "- base.yaml\n")]
    return cases


TUNE_CASES = tune_cases()


@pytest.mark.parametrize("case, data", TUNE_CASES, ids=[c for c, _ in TUNE_CASES])
def test_malformed_tuning_config(tmp_path, case, data):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "log": {"runs_dir": str(tmp_path / "runs")}}))
    path = tmp_path / "tune.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump({**data, "runs_dir": str(tmp_path / "runs")}))
    one_clean_line(cli("tune", str(path), "--quiet"), tmp_path / "runs")
