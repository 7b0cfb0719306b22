"""Pydantic's validation errors as the messages people read: the config key (or argument),
the value it got and what is valid.

Pydantic reports every failing branch of a union and names its own types in the location; this
picks the error that says most about the value, drops pydantic's branch labels from the key, and
words the common kinds of error in the terms of a stack file.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import ConfigError
from .values import INVALID

_PLAIN_MESSAGES = {
    "list_type": "a YAML list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "bool_type": "true or false",
    "int_type": "a whole number",
    "string_type": "a string",
    "missing": "a value: it is required",
}


def _loc_text(prefix: str, loc: Sequence[str | int]) -> str:
    text = prefix
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif text:
            text += f".{part}"
        else:
            text = str(part)
    return text


def _fields_of(model: type[BaseModel]) -> list[str]:
    return sorted(info.alias or name for name, info in model.model_fields.items())


def _valid_text(
    error: Mapping[str, Any], allowed_fields: list[str] | None, description: str | None
) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == INVALID:
        return str(ctx["valid"])
    if kind == "extra_forbidden":
        fields = allowed_fields or []
        close = difflib.get_close_matches(str(error["loc"][-1]), fields, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"a known field; {hint}this mapping takes {', '.join(fields)}"
    if kind in ("model_type", "model_attributes_type") and allowed_fields:
        return f"a mapping with the fields {', '.join(allowed_fields)}"
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind in ("too_short", "too_long"):
        return description or f"{ctx.get('min_length', 0)} to {ctx.get('max_length')} items"
    if kind in ("greater_than_equal", "less_than_equal"):
        return description or (
            f"a whole number of at least {ctx['ge']}"
            if "ge" in ctx
            else f"a whole number of at most {ctx.get('le')}"
        )
    if kind in ("string_too_short", "string_too_long"):
        lo, hi = ctx.get("min_length", 1), ctx.get("max_length", "")
        return f"a string of {lo} to {hi} characters".replace(" to  ", " or more ")
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return _PLAIN_MESSAGES.get(kind, str(error["msg"]))


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that the last named part of `loc` is a field of."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        field = next(
            (f for n, f in current.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current


def _description_at(model: type[BaseModel], loc: Sequence[str | int]) -> str | None:
    """The description of the field `loc` ends at (its list, where it ends at an item)."""
    named = list(loc)
    while named and isinstance(named[-1], int):
        named.pop()
    if not named:
        return None
    at = _model_at(model, named)
    if at is None:
        return None
    field = next((f for n, f in at.model_fields.items() if named[-1] in (n, f.alias)), None)
    return field.description if field is not None else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def config_error(
    err: ValidationError, model: type[BaseModel], name_of: Mapping[str, str], data: Any
) -> ConfigError:
    """The most telling of pydantic's errors as a ConfigError naming the config key."""
    error, loc = _most_specific(err.errors(include_url=False))
    head = name_of.get(str(loc[0]), str(loc[0])) if loc else ""
    key = _loc_text(head, loc[1:])
    allowed = None
    if error["type"] == "extra_forbidden":
        at = _model_at(model, loc)
        allowed = _fields_of(at) if at is not None else None
    if error["type"] in ("model_type", "model_attributes_type"):
        at = _model_at(model, [*loc, "_"])
        allowed = _fields_of(at) if at is not None else None
    description = _description_at(model, loc)
    value = error.get("input")
    if error["type"] == "missing":
        value = None
    if error["type"] in ("too_short", "too_long") and isinstance(value, list):
        value = f"{len(value)} items"
    return ConfigError(key, value, _valid_text(error, allowed, description))


def _is_branch_label(part: str) -> bool:
    """Unions name the branch tried in the location (`str`, `list[str]`, `FleetAccountModel`)."""
    return (
        "[" in part
        or part in ("str", "int", "bool", "list", "dict", "none")
        or part.startswith(("function-", "literal[", "nullable["))
        or (part[:1].isupper() and part.endswith("Model"))
    )


_PRIORITY = {INVALID: 0, "extra_forbidden": 1}


def _most_specific(errors: list[Any]) -> tuple[Any, list[str | int]]:
    """The error that says most about the first failing value: unions report one error per
    branch, and the deepest location is the branch that matched the value's shape (a wrong field
    of a mapping says more than "not a string"). Ties go to our own checks, then to a misspelled
    field (which also makes the field it meant "missing")."""
    cleaned = [
        (e, [p for p in e["loc"] if isinstance(p, int) or not _is_branch_label(p)]) for e in errors
    ]
    root = cleaned[0][1][:1]
    same = [(e, loc) for e, loc in cleaned if loc[:1] == root]
    return min(same, key=lambda el: (-len(el[1]), _PRIORITY.get(el[0]["type"], 9)))
