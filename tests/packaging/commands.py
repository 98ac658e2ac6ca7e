"""The `outbox` command tree, for tests that check that files name only commands (and
options) that exist: the docs, the Dockerfile, compose.yaml and the systemd units."""

from __future__ import annotations

import re
from typing import Any

import typer

from outbox.main import app

# `outbox` as a command: at a line's start, after a space, a backtick, `(` or `bin/`,
# followed by its words (up to a pipe, a semicolon, a closing backtick or a comment).
COMMAND = re.compile(r"(?:^|(?<=[\s`(])|(?<=bin/))outbox((?:[ \t]+[^\s|;`#)]+)+)")
WORD = re.compile(r"^[a-z][a-z0-9-]*$")


def commands_in(text: str) -> list[list[str]]:
    return [match.group(1).split() for match in COMMAND.finditer(text)]


def cli() -> Any:
    """The click command tree of `outbox` (typer's own copy of click: duck-typed)."""
    return typer.main.get_command(app)


def is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def check_command(root: Any, words: list[str]) -> str | None:
    """None if `outbox WORDS` names a command path (and only its options); else why not."""
    command = root
    path = ["outbox"]
    for word in words:
        if is_group(command) and WORD.match(word):
            sub = command.commands.get(word)
            if sub is None:
                return f"`{' '.join(path)}` has no command '{word}'"
            command, path = sub, [*path, word]
        elif word.lstrip("[").startswith("-"):
            option = word.lstrip("[").rstrip("].,").split("=", 1)[0]
            known = {opt for param in command.params for opt in getattr(param, "opts", [])}
            if option not in known | {"--help"}:
                return f"`{' '.join(path)}` has no option {option}"
        elif is_group(command):
            return f"`{' '.join(path)}` needs a command, not '{word}'"
    return None
