"""Turning pydantic's validation errors into `key.path: what is wrong` lines for people.

A line names the value it refuses ("must be a string, got 5"), except at a key
that may hold a secret (a DSN with its password, a key or password file named
by mistake with its content), at the tables holding such a key and inside it:
there the value is never shown, and where a message would quote it the secret
is masked. Passwords written in a URL (`scheme://user:password@host`) or as
`password=…` (a libpq DSN) are masked in every message, whatever the key.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from typing import Any

from pydantic import ValidationError

MASK = "****"
NOT_SHOWN = "(the value is not shown: it may hold a secret)"
_URL_PASSWORD = re.compile(r"(?P<user>[a-z][a-z0-9+.-]*://[^/\s:@'\"]*:)[^@\s'\"]*@", re.I)
_KEYWORD_PASSWORD = re.compile(r"(?P<user>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.I)

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
    "path_type": "must be a file path",
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


def _general(key: str) -> str:
    """A key path with its list indices as `[]` ('alerts.channels[2].x' -> 'alerts.channels[].x'):
    how a secret inside every item of a list is named."""
    return re.sub(r"\[\d+\]", "[]", key)


def _related(key: str, secret: str) -> bool:
    """Whether `key` is `secret`, holds it (a table above it) or lies within it."""
    key = _general(key)
    if key == secret or key == "(top level)":
        return True
    inner, outer = (key, secret) if len(key) > len(secret) else (secret, key)
    return inner.startswith(outer) and inner[len(outer)] in ".["


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield str(value)


def _secrets_in(value: Any, key: str, secrets: Collection[str]) -> list[str]:
    """The texts in `value` (found at `key`) that sit at or below a secret key."""
    found: list[str] = []
    for secret in secrets:
        if not _related(key, secret):
            continue
        general = "" if key == "(top level)" else _general(key)
        nodes = [value]
        if len(secret) > len(general):  # `key` holds the secret: walk down to it
            for part in re.findall(r"\[\]|[^.\[\]]+", secret[len(general) :]):
                nodes = _below(nodes, part)
        for node in nodes:
            found += _leaves(node)
    return sorted({text for text in found if text}, key=len, reverse=True)


def _below(nodes: list[Any], part: str) -> list[Any]:
    """One step down from each node: into every item of a list (`[]`), else a table's key."""
    if part == "[]":
        return [item for node in nodes if isinstance(node, list | tuple) for item in node]
    return [node.get(part) for node in nodes if isinstance(node, dict)]


def masked(text: str, hidden: Collection[str] = ()) -> str:
    """`text` without the passwords of URLs in it, and without any of `hidden`."""
    for secret in hidden:
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(rf"\g<user>{MASK}@", text)
    return _KEYWORD_PASSWORD.sub(rf"\g<user>{MASK}", text)


def _describe(error: Any, key: str = "", secrets: Collection[str] = ()) -> str:
    text = _message(error, show_value=not any(_related(key, s) for s in secrets))
    return masked(text, _secrets_in(error.get("input"), key, secrets))


def _message(error: Any, show_value: bool) -> str:
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
        text += f", got {error['input']!r}" if show_value else f" {NOT_SHOWN}"
    return text


def problems(
    exc: ValidationError, prefix: str = "", secrets: Collection[str] = ()
) -> list[tuple[str, str]]:
    """(key path, message) for every error of `exc`, in order; no value of a key in `secrets`
    (key paths as they are printed, e.g. 'bridge.postgres.dsn') is shown."""
    found = []
    for error in exc.errors():
        key = key_path(tuple(error["loc"]), prefix)
        found.append((key, _describe(error, key, secrets)))
    return found
