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

.PHONY: install lint format test test-all clean image wheels

IMAGE ?= offline-recall:$(shell $(PYTHON) setup.py --version 2>/dev/null || echo latest)

install: $(VENV)/.installed

$(VENV)/.installed: setup.py constraints.txt requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip wheel 'setuptools<70' $(QUIET_PIP)
	$(PIP) install -q --ignore-requires-python -r requirements-dev.txt -c constraints.txt $(QUIET_PIP)
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

# The worker image's wheelhouse: offline-recall and every runtime dependency (requirements.txt at
# the constraints' pins) as wheels, so that `make image` installs with no network. `pip wheel`
# ignores --ignore-requires-python (tfx says <3.11), so the set is downloaded and the few packages
# PyPI holds only as sources are built into wheels here.
wheels: install
	rm -rf wheelhouse
	$(PIP) download -q --ignore-requires-python -r requirements.txt -c constraints.txt -d wheelhouse $(QUIET_PIP)
	find wheelhouse -name '*.tar.gz' -exec $(PIP) wheel -q --no-deps --no-build-isolation -w wheelhouse {} + $(QUIET_PIP)
	rm -f wheelhouse/*.tar.gz
	$(PIP) wheel -q --no-deps -w wheelhouse . $(QUIET_PIP)

# The image Kubeflow tasks, Beam workers (Dataflow, Flink) and the CLI run (needs a Docker engine).
image: wheels
	docker build -t $(IMAGE) .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info wheelhouse
