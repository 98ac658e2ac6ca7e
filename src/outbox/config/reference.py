"""The configuration reference (docs/configuration.md), generated from the settings
models as the sample config is: every table, and every key with its type, default and
description. `outbox config reference` prints it; a test fails when the file is stale.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from outbox.config.sample import table_model, toml_value
from outbox.config.settings import Settings
from outbox.config.units import MOST_PROCESSES, parse_duration, parse_process_count, parse_size
from outbox.secrets import resolve_reference

HEADER = """\
# Configuration reference

Generated from the settings schema by `outbox config reference`; do not edit by hand.
`outbox config sample` writes the same keys as a commented `outbox.toml`, and
`outbox config show` prints the configuration in effect (secrets as `***`).

The file is read from `--config`, else `$OUTBOX_CONFIG`, else `./outbox.toml`. Every key
can be overridden by an environment variable `OUTBOX_<SECTION>__<KEY>`, for example
`OUTBOX_RETRY__MAX_ATTEMPTS=5`; a list of tables is given as JSON, for example
`OUTBOX_RELAYS='[{"name": "default", "host": "smtp.example.com"}]'`. Relative file
paths are taken from the config file's directory. A bad value stops start-up with one
line naming the key.

Types: a *duration* is written `250ms`, `30s`, `5m`, `1h`, `3d` or `1w` (a bare number
is seconds); a *size* is bytes, or `25MB` (decimal) or `20MiB` (binary); a *secret* is
the value itself, `env:NAME` (an environment variable) or `file:/path` (a file's
content). `[[name]]` is a list of tables: repeat it once per entry.
"""

_CONVERTERS = {parse_duration: "duration", parse_size: "size", resolve_reference: "secret",
               parse_process_count: f"integer from 0 to {MOST_PROCESSES}, or `auto`"}
_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string",
            SecretStr: "secret"}
# Constraint metadata (annotated_types' Ge, Le, MinLen, ...) by attribute name.
_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
_LENGTHS = {"min_length": "at least", "max_length": "at most"}


def reference_markdown() -> str:
    """The whole reference: the top-level keys, then each table in schema order."""
    lines = [HEADER]
    top = [(name, field) for name, field in Settings.model_fields.items()
           if table_model(field.annotation) is None]
    if top:
        lines += ["## Top-level keys", "", *_key_table(top)]
    for name, field in Settings.model_fields.items():
        model = table_model(field.annotation)
        if model is not None:
            lines += _section(name, field, model, depth=2)
    return "\n".join(lines)


def undescribed_keys() -> list[str]:
    """Dotted paths of the keys and tables that have no description (should be none)."""
    return [path for path, field in _walk(Settings, "") if not field.description]


def _walk(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, FieldInfo]]:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path, field
        nested = table_model(field.annotation)
        if nested is not None:
            yield from _walk(nested, f"{path}.")


def _section(path: str, field: FieldInfo, model: type[BaseModel], depth: int) -> list[str]:
    is_list = get_origin(field.annotation) is list
    title = f"[[{path}]]" if is_list else f"[{path}]"
    keys = [(name, f) for name, f in model.model_fields.items()
            if table_model(f.annotation) is None]
    lines = [f"{'#' * depth} `{title}`", "", f"{_sentence(field.description)}", ""]
    if keys:
        lines += _key_table(keys)
    for name, nested_field in model.model_fields.items():
        nested = table_model(nested_field.annotation)
        if nested is not None:
            lines += _section(f"{path}.{name}", nested_field, nested, depth=min(depth + 1, 4))
    return lines


def _key_table(keys: list[tuple[str, FieldInfo]]) -> list[str]:
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    for name, field in keys:
        cells = (f"`{name}`", type_name(field), _default(field), _cell(field.description or ""))
        rows.append("| " + " | ".join(cells) + " |")
    return [*rows, ""]


def type_name(field: FieldInfo) -> str:
    """`duration`, `size`, `integer ≥ 1`, `list of string`, `one of a, b`, ..."""
    converted = [_CONVERTERS[m.func] for m in field.metadata
                 if getattr(m, "func", None) in _CONVERTERS]
    name = converted[0] if converted else _annotation_name(field.annotation)
    bounds = [f"{sign} {getattr(m, attr)}" for m in field.metadata
              for attr, sign in _BOUNDS.items() if getattr(m, attr, None) is not None]
    lengths = [f"{words} {getattr(m, attr)} character{'s' * (getattr(m, attr) != 1)}"
               for m in field.metadata for attr, words in _LENGTHS.items()
               if getattr(m, attr, None) is not None]
    return ", ".join([name, *bounds, *lengths])


def _annotation_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{choice}`" for choice in get_args(annotation))
    if origin is list:
        return "list of " + _annotation_name(get_args(annotation)[0]).removeprefix("one of ")
    args = [arg for arg in get_args(annotation) if arg is not type(None)]
    if origin is not None and len(args) == 1:  # X | None
        return _annotation_name(args[0])
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    return "unset" if value is None else f"`{toml_value(value)}`"


def _sentence(text: str | None) -> str:
    text = (text or "").strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _cell(text: str) -> str:
    """Text for a table cell: `|` escaped everywhere, `<` and `*` outside code spans."""
    parts = text.replace("|", "\\|").replace("\n", " ").split("`")
    for index in range(0, len(parts), 2):
        parts[index] = parts[index].replace("<", "\\<").replace("*", "\\*")
    return "`".join(parts)
