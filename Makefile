# Two commands on a fresh machine: `make run` and `make test`.
# The interpreter .venv is made from: the system's CPython 3.11+ where there is one, which
# ran Outbox on fewer CPU seconds than pyenv's build (scripts/python.sh says why).
PYTHON ?= $(shell bash scripts/python.sh)
VENV ?= .venv
BIN := $(VENV)/bin
# Install stamps are keyed by pyproject's content, so a changed dependency list reinstalls.
# The rules have no prerequisite on pyproject on purpose: a fresh checkout's newer mtime must
# not reinstall. `run` installs Outbox with its runtime dependencies only; `test` adds the
# `dev` extra (pytest, mypy, ruff, ...) on top.
SHA := $(shell sha1sum pyproject.toml | cut -c1-12)
STAMP := $(VENV)/.installed-$(SHA)
DEV_STAMP := $(VENV)/.installed-dev-$(SHA)

.PHONY: run test lint unit system-deps bench clean venv

venv: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(SHA)' -delete
	touch $(STAMP)

$(DEV_STAMP): | $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev]'
	VENV=$(VENV) bash scripts/wheelhouse.sh
	touch $(DEV_STAMP)

outbox.toml: | $(STAMP)
	$(BIN)/outbox config sample > outbox.toml
	@echo "wrote a sample outbox.toml: edit [[relays]] to point at your SMTP relay"

run: $(STAMP) outbox.toml
	$(BIN)/outbox serve --config outbox.toml

# Services and system packages the suite talks to (idempotent).
system-deps:
	bash scripts/ensure-services.sh

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Bytecode is written for the suite even where the environment says not to: every test
# starts `outbox` processes, and each would otherwise compile the whole package again.
# Six workers on two cores: the suite mostly waits (servers, timeouts, fsync), using
# about one core in all (stop 48: 498 CPU s over 538 s with six). On a machine where the
# same code ran 2.3 times slower, four workers took 674 s, over the 10-minute budget;
# six took 537 and 600 s, eight 718 s (that machine's speed drifts: one run each).
test: $(DEV_STAMP) system-deps lint
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -q -p no:cacheprovider -n 6 --dist worksteal \
	  --durations=25

unit: $(DEV_STAMP)
	$(BIN)/pytest -q tests/unit

# Outbox beside Postfix on loopback (issue 15): installs Postfix, prints one table.
# Outbox as installed from a wheel or the Docker image, whose bytecode pip compiles at
# install: this editable install has none, and where the environment says not to write it
# each process start compiled about 180 modules again (under cProfile, 0.18 of the 0.95 s
# importing outbox.runtime took), which the restart path counts.
bench: $(DEV_STAMP) system-deps
	bash scripts/bench-deps.sh
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
