#!/usr/bin/env bash
# Wheels of Outbox's runtime dependencies in .venv/wheelhouse, fetched once while `make test`
# installs (the network is used here, never by a test): tests/packaging/test_wheel.py installs
# the built wheel into a clean venv from this directory alone (pip --no-index).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# The build backend (for the test's `pip wheel` of Outbox) and the runtime dependencies.
"$VENV/bin/python" - > "$VENV/wheelhouse-requirements.txt" <<'PY'
import tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)
print("\n".join(project["build-system"]["requires"] + project["project"]["dependencies"]))
PY
# pip's notes about extra index locations go to a log unless it fails.
if ! "$VENV/bin/python" -m pip wheel -q -w "$VENV/wheelhouse" \
    -r "$VENV/wheelhouse-requirements.txt" 2> "$VENV/wheelhouse.log"; then
  cat "$VENV/wheelhouse.log" >&2
  exit 1
fi
