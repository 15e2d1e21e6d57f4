# The two commands of the README, and what they need. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

# Re-install whenever the project's metadata changes. Runtime dependencies at the image's exact
# versions (constraints.txt), so the tests run what ships.
$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (PYTHON=$(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev]' --constraint constraints.txt
	@touch $(STAMP)

install: $(STAMP)

## The demo: both services against the testbed.
demo: $(STAMP)
	$(BIN)/python -m demo

## The tests.
test: $(STAMP)
	$(BIN)/pytest

## Static checks CI runs beside the tests.
lint: $(STAMP)
	$(BIN)/ruff check plumbing syncd unsealer testbed tests bench demo
	$(BIN)/mypy plumbing syncd unsealer

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
