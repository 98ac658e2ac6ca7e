"""schemathesis hooks for `test_fuzz.py` (loaded through SCHEMATHESIS_HOOKS).

Only what an OpenAPI document cannot say about one request is handled here; every
generated value keeps its shape:

- an Idempotency-Key names one request body for good (SPEC §2: the same key with another
  body is 422 `idempotency_key_reused`), so each call gets a key of its own: the
  generated key with a unique suffix (within the 255 characters it may have).
"""

from __future__ import annotations

import itertools
from typing import Any

import schemathesis

IDEMPOTENCY_KEY = "idempotency-key"
MAX_KEY = 255
_calls = itertools.count()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = case.headers or {}
    for name, value in list(headers.items()):
        if name.lower() == IDEMPOTENCY_KEY and isinstance(value, str) and len(value) > 0:
            suffix = f"~{next(_calls)}"
            if len(value) <= MAX_KEY:  # a key over the limit stays over it
                headers[name] = value[:MAX_KEY - len(suffix)] + suffix
