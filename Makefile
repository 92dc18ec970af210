# offline-recall: install, lint, test. The stack needs --ignore-requires-python (tfx declares
# Requires-Python <3.11 though every compiled piece ships 3.11 wheels) and the exact pins in
# constraints.txt.
PYTHON ?= python3.11
VENV := .venv
PIP := $(VENV)/bin/pip
PY := $(VENV)/bin/python
# The machine's pip config may list local mirrors that are absent: pip's output goes to a log,
# shown (without those warnings) only when a step fails.
PIP_LOG := $(VENV)/pip.log
QUIET_PIP = > $(PIP_LOG) 2>&1 || { grep -v "^WARNING: Location" $(PIP_LOG); exit 1; }

.PHONY: install lint format test test-all clean image

IMAGE ?= offline-recall:$(shell $(PYTHON) setup.py --version 2>/dev/null || echo latest)

install: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel 'setuptools<70' $(QUIET_PIP)
	$(PIP) install -q --ignore-requires-python -r requirements.txt -c constraints.txt $(QUIET_PIP)
	$(PIP) install -q --ignore-requires-python --no-deps -e . $(QUIET_PIP)
	$(PY) -c "import offline_recall.pipeline.cli, tfx, tensorflow_transform, faiss, numba"
	$(PIP) check
	touch $@

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The fast tier: pure functions and each stage on small artifacts, no whole-pipeline run.
test: install
	$(VENV)/bin/pytest -q -m "not e2e" tests components

# Everything: the fast tier plus the whole-pipeline runs (CI runs this).
test-all: install
	$(VENV)/bin/pytest -q tests components

# The image Kubeflow tasks and Beam workers run (needs a Docker engine).
image:
	docker build -t $(IMAGE) .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
