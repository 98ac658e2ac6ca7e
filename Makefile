# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The install stamp is keyed by pyproject's content, so a changed dependency list reinstalls.
# The rule has no prerequisite on purpose: a fresh checkout's newer mtime must not reinstall.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run test lint unit system-deps bench clean venv

venv: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

outbox.toml: | $(STAMP)
	$(BIN)/outbox config sample > outbox.toml
	@echo "wrote a sample outbox.toml: edit [[relays]] to point at your SMTP relay"

run: $(STAMP) outbox.toml
	$(BIN)/outbox serve --config outbox.toml

# Services and system packages the suite talks to (idempotent).
system-deps:
	bash scripts/ensure-services.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP) system-deps lint
	$(BIN)/pytest -q -p no:cacheprovider -n 3 --dist loadscope --durations=15

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

bench: $(STAMP) system-deps
	$(BIN)/python bench/throughput.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
