"""Values Python's JSON parser lets through that Outbox cannot keep. Pure.

`json.loads` reads a lone UTF-16 surrogate escape (`"\\ud800"`, or its bytes encoded as
if it were a character) as a str that no UTF-8 encoder takes, and `NaN`, `Infinity`
and numbers past a float's range (`1e400`) as floats JSON has no text for. Accepted
into a message, the first made every read of it fail (500 on its page and on every
list page that held it, for every key), the second came back as null. So a request
holding one is refused, naming where.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")

Path = tuple[str | int, ...]  # keys and list indexes, from the value given


def unstorable(value: Any) -> tuple[Path, str] | None:
    """The first such value in `value` (parsed JSON: dicts, lists, str, numbers): its
    path and why ("holds ..."); None when there is none. Objects other than JSON's
    (models validated already) are not looked into."""
    if isinstance(value, Mapping | list | tuple):
        pairs = value.items() if isinstance(value, Mapping) else enumerate(value)
        for key, item in pairs:
            if isinstance(key, str) and (why := _text(key)) is not None:
                return (), f"has a key that {why}"
            found = unstorable(item)
            if found is not None:
                return (key, *found[0]), found[1]
        return None
    why = _text(value) if isinstance(value, str) else (
        _number(value) if isinstance(value, float) else None)
    return None if why is None else ((), why)


def _text(text: str) -> str | None:
    if text.isascii():  # the common case, one pass in C with nothing allocated
        return None
    match = _SURROGATE.search(text)
    if match is None:
        return None
    return (f"holds a lone UTF-16 surrogate ({ascii(match.group())[1:-1]}), which is not "
            "text: send valid Unicode")


def _number(number: float) -> str | None:
    if math.isfinite(number):
        return None
    what = ("NaN" if math.isnan(number)
            else "Infinity, or a number past the range of a float (±1.8e308)")
    return f"holds {what}, which is not a JSON number Outbox can keep"
