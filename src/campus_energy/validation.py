"""Turning pydantic's validation errors into `key.path: what is wrong` lines for people."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

_MESSAGES: dict[str, str] = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
    "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}",
    "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}",
    "literal_error": "must be one of {expected}",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "model_type": "must be a table",
    "dict_type": "must be a table",
    "finite_number": "must be a finite number",
}


def key_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """('meters', 2, 'unit') -> 'meters[2].unit'."""
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _describe(error: Any) -> str:
    kind = error["type"]
    ctx = {
        k: int(v) if isinstance(v, float) and v.is_integer() else v
        for k, v in (error.get("ctx") or {}).items()
    }
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    template = _MESSAGES.get(kind)
    text = template.format(**ctx) if template else str(error["msg"])
    if kind not in ("extra_forbidden", "missing"):
        text += f", got {error['input']!r}"
    return text


def problems(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(key path, message) for every error of `exc`, in order."""
    return [(key_path(tuple(e["loc"]), prefix), _describe(e)) for e in exc.errors()]
