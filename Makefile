# The README's two commands: `make run` and `make test`. Both set everything up first.
VENV := .venv
STAMP := $(VENV)/.installed
PY := $(VENV)/bin/python
# Two pytest processes: many tests wait on shipped rate limits, servers and child processes,
# so two at once on two cores finish the suite in far less time than one (same tests, same asserts).
TEST_WORKERS ?= 2

.PHONY: run test lint bench setup

$(STAMP): pyproject.toml scripts/bootstrap.sh
	./scripts/bootstrap.sh

setup: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/destill3d-tui $(ARGS)

test: $(STAMP)
	./scripts/ensure_postgres.sh
	./scripts/ensure_chromium.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

bench: $(STAMP)
	$(PY) bench/extract.py
	$(PY) bench/pipeline.py
	$(PY) bench/classify.py
	$(PY) bench/search.py
	$(PY) bench/scale.py
	$(PY) bench/killsafe.py
	$(PY) bench/bigcloud.py
	$(PY) bench/tui.py
