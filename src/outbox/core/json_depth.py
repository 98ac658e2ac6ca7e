"""How deeply a JSON document nests, measured on its bytes as they arrive. Pure.

The scanner only looks at brackets, braces, quotes and backslashes (a regular
expression skips everything else, so a megabyte of base64 inside one string is
one step), and keeps its state between chunks. It does not validate the JSON:
the parser does that afterwards, on a document whose depth is known to be safe.
"""

from __future__ import annotations

import re

_STRUCTURAL = re.compile(rb'["\\\[\]{}]')
_IN_STRING = re.compile(rb'["\\]')
_SKIP = re.compile(rb'(?:[^"\\\[\]{}]+|"[^"\\]*")*')


class TooDeep(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the JSON body nests deeper than {limit} levels")
        self.limit = limit


class DepthScanner:
    """feed(chunk) for every chunk in order; raises `TooDeep` once nesting passes `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self._in_string = False
        self._escaped = False  # the chunk before ended in a backslash inside a string

    def feed(self, chunk: bytes) -> None:
        pos = 0
        if self._escaped and chunk:
            self._escaped = False
            pos = 1
        while pos < len(chunk):
            pos = self._in_text(chunk, pos) if self._in_string else self._outside(chunk, pos)

    def _in_text(self, chunk: bytes, pos: int) -> int:
        match = _IN_STRING.search(chunk, pos)
        if match is None:
            return len(chunk)
        if match.group() == b"\\":
            if match.end() == len(chunk):
                self._escaped = True
            return match.end() + 1
        self._in_string = False
        return match.end()

    def _outside(self, chunk: bytes, pos: int) -> int:
        # One step over everything but brackets, strings without escapes included: a
        # list of a hundred thousand addresses is one regular-expression match.
        skipped = _SKIP.match(chunk, pos)
        match = _STRUCTURAL.search(chunk, skipped.end() if skipped else pos)
        if match is None:
            return len(chunk)
        char = match.group()
        if char == b'"':
            self._in_string = True
        elif char in (b"[", b"{"):
            self.depth += 1
            if self.depth > self.limit:
                raise TooDeep(self.limit)
        elif char in (b"]", b"}"):
            self.depth -= 1
        return match.end()
