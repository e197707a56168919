"""Config plumbing shared by every section: a strict pydantic base, YAML reading, `--set`
overrides by dotted path, and validation errors as one readable line per problem."""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from genmodels.errors import ConfigError


class StrictModel(BaseModel):
    """Unknown keys are errors (with a suggestion), assignments are validated too, and no number
    may be NaN or infinite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


# --- YAML and overrides -------------------------------------------------------------------


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from `path`; a missing, unreadable or non-mapping file is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_bytes().decode("utf-8")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected YAML)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f": line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from None
    if data is None:  # an empty file: more likely a mistake than a wish for every default
        raise ConfigError(f"{path}: the file is empty (write {{}} to use every default)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.epochs=3' -> (['train', 'epochs'], 3); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"--set {text}: expected key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def set_dotted(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """data['a']['b'] = value for path ['a', 'b'], creating sections on the way."""
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        set_dotted(data, *parse_override(text))
    return data


# --- validation with readable errors ------------------------------------------------------


def validate(model_cls: type[BaseModel], data: Any, source: str) -> Any:
    """Validate `data` against `model_cls`; any problem becomes one ConfigError line per field."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(format_error(model_cls, errors[0], source) + more) from None


def _all_subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _all_subclasses(sub)
    return out


def _submodels(annotation: Any) -> list[type[BaseModel]]:
    """The models a field may hold: its annotation's, and for a section typed by a base class
    (the model section) every subclass of it that is defined."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _all_subclasses(annotation)
    return [a for arg in typing.get_args(annotation) for a in _submodels(arg)]


def _walk(root: type[BaseModel], loc: tuple) -> tuple[list[str], list[type[BaseModel]]]:
    """Follow a pydantic error location through nested models: the dotted path a user would
    write and the models that may own the last key."""
    path: list[str] = []
    candidates = [root]
    for part in loc[:-1]:
        owner = next((m for m in candidates if str(part) in m.model_fields), None)
        path.append(str(part))
        candidates = _submodels(owner.model_fields[str(part)].annotation) if owner else []
    return path, candidates


def short_repr(value: Any, limit: int = 60) -> str:
    """repr() cut to `limit` characters: an error line names a value, it does not print a config."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Location parts pydantic adds for the branch of a union a value was tried against ('float' in
# choices.0.float): not something a user writes.
_UNION_BRANCH = re.compile(r"^(str|int|float|bool|none|(list|tuple|dict|set)\[.*\]|function-.*|.*-union\[.*\])$")


def format_error(root: type[BaseModel], err: dict[str, Any], source: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and _UNION_BRANCH.match(p)))
    path, owners = _walk(root, loc)
    last = str(loc[-1]) if loc else ""
    dotted = ".".join(path + [last]) if last else ".".join(path)
    where = f"{source}: {dotted}" if dotted else source
    if err["type"] == "extra_forbidden":
        valid = sorted({field.alias or name for model in owners for name, field in model.model_fields.items()})
        close = difflib.get_close_matches(last, valid, n=1, cutoff=0.5)
        hint = f"; did you mean '{'.'.join(path + [close[0]])}'?" if close else ""
        if valid and not close:
            hint = f"; valid keys: {', '.join(valid)}"
        if last in valid:  # a field of another model kind's section
            hint = " (a field of another model kind)"
        return f"{source}: unknown key '{dotted}'{hint}"
    if err["type"] == "missing":
        return f"{where}: a value is required"
    if err["type"] == "model_kind":  # raised by the model section's dispatch on `kind`
        return f"{where}.kind: {err['msg']}"
    msg = err["msg"].replace("Input should be", "expected").replace("String should", "expected to")
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if err["type"] in ("value_error", "assertion_error") or ", got " in msg:
        return f"{where}: {msg}"
    return f"{where}: {msg}, got {short_repr(err.get('input'))}"
