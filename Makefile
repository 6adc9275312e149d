# pixfind: `make demo` runs the product end to end offline; `make test` runs the test suite.
# Both create .venv and install pixfind into it when needed.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pixfind-installed

.PHONY: test demo lint format clean bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e '.[torch,dev,ray]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# Offline: demo photos -> train the demo model (cached in .cache/) -> index -> search.
demo: $(STAMP)
	$(VENV)/bin/pixfind demo --out demo-out --cache .cache $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache demo-out .cache
