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

## The demo: the seed's story, both services against the testbed. `make demo ARGS=--keep`
## leaves it running (kubeconfig, VAULT_ADDR printed) until Ctrl-C.
demo: $(STAMP)
	$(BIN)/python -m demo $(ARGS)

## The tests, in TEST_WORKERS processes (pytest-xdist): most of the suite waits on real
## servers and subprocesses, so two workers keep 2 cores busy where one leaves them idle.
## `make test TEST_WORKERS=0` runs them in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS)

## Static checks CI runs beside the tests: ruff, mypy, hadolint on the Dockerfile, and checkov
## on the Dockerfile and on what every overlay and example renders (kubectl kustomize). A
## finding is fixed, or skipped where it is with its reason (`checkov.io/skipN` annotations).
## checkov has a venv of its own: its dependencies (botocore: python-dateutil < 3) cannot sit
## beside the runtime's pinned versions. Installed on first use, about 33 s (`make lint` on a
## clean checkout, 2 cores); hadolint comes with the dev extra (a 1 s wheel).
CHECKOV_VENV := $(VENV)/checkov
CHECKOV := $(CHECKOV_VENV)/bin/checkov
RENDERED := $(VENV)/rendered

$(CHECKOV):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install -q 'checkov==3.3.30'

lint: $(STAMP) $(CHECKOV)
	$(BIN)/ruff check plumbing syncd unsealer testbed tests bench demo
	$(BIN)/mypy plumbing syncd unsealer testbed bench
	$(BIN)/hadolint Dockerfile
	rm -rf $(RENDERED) && mkdir -p $(RENDERED)
	set -e; for dir in manifests/overlays/* manifests/examples/*; do \
		kubectl kustomize $$dir > $(RENDERED)/$$(basename $$dir).yaml; done
	$(CHECKOV) --quiet --compact --skip-download --framework kubernetes -d $(RENDERED)
	$(CHECKOV) --quiet --compact --skip-download --framework dockerfile -f Dockerfile

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
