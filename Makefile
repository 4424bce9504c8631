# The README's quick start: `make demo` and `make test`, each installing what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml example_project/pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,sandbox]" -e ./example_project
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m trackstar_example.demo

# ruff (format and lint), the layer contract (pyproject's [tool.importlinter]) and the type checker
lint: $(STAMP)
	$(VENV)/bin/ruff format --check trackstar_dagster tests example_project benchmarks
	$(VENV)/bin/ruff check trackstar_dagster tests example_project benchmarks
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

test: lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/transform.py
	$(PY) benchmarks/writes.py
	$(PY) benchmarks/budget.py
	$(PY) benchmarks/connections.py
	$(PY) benchmarks/backfill_memory.py
	$(PY) benchmarks/fanout.py --by-connection
	$(PY) benchmarks/preview.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .demo
