#!/usr/bin/env bash
# The interpreter `make` builds .venv from, unless PYTHON= says: the operating system's
# CPython where it is 3.11 or newer and can make a venv, else python3 on PATH.
# Distributions build their CPython with profile-guided optimisation and link-time
# optimisation, as the python: images the Dockerfile uses are built; pyenv, first on PATH
# on many machines (this one too), builds without them by default, and Outbox spends most
# of its CPU in the interpreter (docs/operations.md, "Which Python").
# SYSTEM_PYTHON: another path, for tests/integration/test_makefile.py only.
SYSTEM=${SYSTEM_PYTHON:-/usr/bin/python3}
if [ -x "$SYSTEM" ] && "$SYSTEM" -c '
import sys, ensurepip, venv
sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "$SYSTEM"
else
  echo python3
fi
