# Two commands: `make lab` (start the course) and `make test` (run everything CI runs).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.xaicourse-installed
ASSETS := .assets/.complete
PORT ?= 8888

.PHONY: setup lab test test-fast gpu-check bench notebooks constraints clean

setup: $(INSTALLED) $(ASSETS)

# The virtual environment, reinstalled only when the dependency files change.
$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

# Steps pip cannot do (torchvision compatibility hook, registry assets); see xaicourse/environment.py.
$(ASSETS): $(INSTALLED) xaicourse/environment.py xaicourse/_torchvision_compat.py
	$(PY) -m xaicourse.environment setup
	@touch $@

lab: setup
	$(VENV)/bin/jupyter lab --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/00_start_here.ipynb

# Unit, oracle, notebook-sync and browser tests; every chapter runs once from solutions/ (its numbers checked,
# tests/test_chapter_numbers.py) and once from notebooks/ under nbval (the learners' copies, stubs included).
test: setup
	$(PY) -m pytest tests notebooks --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# Everything but the notebooks and the browser (a quick loop while developing).
test-fast: setup
	$(PY) -m pytest tests -m "not browser and not slow" -p no:cacheprovider

# Every method on CUDA against the CPU (run it on a machine with a GPU; under 3 minutes).
gpu-check: setup
	$(PY) -m pytest tests/test_cuda.py -m gpu -p no:cacheprovider -v

bench: setup
	$(PY) -m benchmarks

notebooks: setup
	$(PY) -m xaicourse.notebooks build

constraints: setup
	$(PY) -m pip freeze --exclude-editable | sed 's/^torch==\([0-9.]*\)+cpu/torch==\1/' > constraints.new
	(sed -n '/^#/p' constraints.txt; cat constraints.new) > constraints.tmp && mv constraints.tmp constraints.txt && rm constraints.new

clean:
	rm -rf $(VENV) .assets .pytest_cache
