"""Writes docs/configuration.md from the pydantic models: every field of a run config (each model
family's section included) and of a tuning config, with its type, default, constraints and
description. tests/test_docs.py fails when the committed page differs from what this writes.

    python docs/generate_configuration.py          # rewrite docs/configuration.md
"""

from __future__ import annotations

import re
import sys
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from genmodels.config import Config
from genmodels.models import MODELS
from genmodels.tuning.config import ParamSpec, TuneConfig

PAGE = Path(__file__).resolve().parent / "configuration.md"


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, type(int | None)):
        return " \\| ".join(type_name(a) for a in args if a is not type(None)) + (
            " or none" if type(None) in args else "")
    if origin in (list, tuple, dict):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if origin is typing.Annotated:
        return type_name(args[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "none")


def number(value: Any) -> str:
    if isinstance(value, int) and value >= 2**32 and (value & (value - 1)) == 0:
        return f"2^{value.bit_length() - 1}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def constraint(field: Any) -> str:
    out = []
    for m in field.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "length >="),
                           ("max_length", "length <=")):
            if getattr(m, attr, None) is not None:
                out.append(f"{sign} {number(getattr(m, attr))}")
        if getattr(m, "pattern", None):
            out.append(f"matches `{m.pattern}`")
    return ", ".join(dict.fromkeys(out))


def default(field: Any) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default is PydanticUndefined and field.default_factory else field.default
    if isinstance(value, BaseModel):
        return ""
    return "none" if value is None else f"`{value}`"


def table(model: type[BaseModel], prefix: str, skip: tuple[str, ...] = ()) -> list[str]:
    lines = ["| field | type | default | constraint | description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        annotation = field.annotation
        sub = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        link = f"see [{prefix}{name}](#{prefix}{name}".replace(".", "") + ")"
        description = field.description or (link if sub else "")
        lines.append(f"| `{prefix}{field.alias or name}` | {type_name(field.annotation)} | {default(field)} | "
                     f"{constraint(field)} | {description} |")
    return lines


def render() -> str:
    out = ["# Configuration reference", "",
           "Generated from the pydantic models by `python docs/generate_configuration.py`; do not edit by hand.",
           "Every field can be set in YAML or overridden with `--set section.field=value`; an unknown key is an "
           "error that names the closest valid one.", "", "## Run config", ""]
    out += table(Config, "", skip=("data", "model", "optim", "train", "eval", "log", "finetune"))
    sections = {"data": None, "optim": None, "train": None, "eval": None, "log": None, "finetune": None}
    for name in sections:
        annotation = Config.model_fields[name].annotation
        model = next(a for a in (annotation, *typing.get_args(annotation)) if isinstance(a, type)
                     and issubclass(a, BaseModel))
        out += ["", f"### {name}", ""] + table(model, f"{name}.")
    for kind, cls in MODELS.items():
        out += ["", f"### model (kind: {kind})", "", (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
                "", f"Held-out metrics: {', '.join(f'`{m}` ({d})' for m, d in cls.metrics.items() if d)}; "
                    f"early stopping and best.pt follow `{cls.monitor}` unless `train.monitor` says otherwise. "
                    f"Reported beside them (standard errors, diagnostics): "
                    f"{', '.join(f'`{m}`' for m, d in cls.metrics.items() if not d) or 'none'}.", ""]
        out += table(cls.Config, "model.")
        if cls.EvalOptions.model_fields:
            flags = ", --".join(n.replace("_", "-") for n in cls.EvalOptions.model_fields)
            out += ["", f"Evaluation options (`genmodels eval --{flags}`):", ""]
            out += table(cls.EvalOptions, "")
    out += ["", "## Tuning config", ""] + table(TuneConfig, "", skip=("sampler", "pruner"))
    out += ["", "### sampler", ""] + table(TuneConfig.model_fields["sampler"].annotation, "sampler.")
    out += ["", "### pruner", ""] + table(TuneConfig.model_fields["pruner"].annotation, "pruner.")
    out += ["", "### space entries", ""] + table(ParamSpec, "")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)) + "\n"


if __name__ == "__main__":
    PAGE.write_text(render())
    print(f"wrote {PAGE}", file=sys.stderr)
