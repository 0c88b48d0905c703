# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: demo test bench docs lint typecheck clean

$(PY):
	$(PYTHON) -m venv $(VENV)

demo: $(PY)
	$(PIP) -e '.[demo]'
	$(VENV)/bin/clientcomm demo $(DEMO_ARGS)

test: $(PY)
	$(PIP) -e '.[dev,postgres,docs]'
	VENV=$(VENV) bash scripts/test.sh $(PYTEST_ARGS)

bench: $(PY)
	$(PIP) -e '.[dev,postgres]'
	@set -e; for f in bench/[!_]*.py; do echo "== $$f" >&2; $(PY) $$f; done

docs: $(PY)
	$(PIP) -e '.[docs]'
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

lint: $(PY)
	$(VENV)/bin/ruff check src tests bench examples

typecheck: $(PY)
	$(VENV)/bin/mypy --strict src tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis site
