# Two entry points (see README): `make smoke` runs the workflow's smoke preset, `make test` ruff and the tests.
# Both create the virtual environment first if it is missing or older than pyproject.toml.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: smoke test test-all test-slurm lint bench

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

smoke: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(BIN)/snakemake --cores $(CORES) --config preset=smoke

test: $(VENV)/.installed
	$(BIN)/ruff check .
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q

test-all: $(VENV)/.installed
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -m ""

# profiles/slurm on a real one-node SLURM cluster on this machine (root; docs/operating.md):
# starts it (tests/slurm/up.sh), runs the `slurm` tests, stops what up.sh started.
test-slurm: $(VENV)/.installed
	tests/slurm/up.sh
	OMP_WAIT_POLICY=PASSIVE SBATCH_ACCOUNT=$${ASGE_SLURM_ACCOUNT:-asge} $(BIN)/python -m pytest -q -s -m slurm tests/slurm; \
	status=$$?; tests/slurm/down.sh; exit $$status

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/snakemake --lint

# Headless Chromium over the Snakemake report and the MLflow UI of a finished preset
# (installs Debian's chromium and chromium-driver when missing, and selenium; docs/operating.md#browser-check). Not in `test`.
PRESET ?= smoke
SNAKEMAKE_ARGS ?=
DOCS_SHOT ?=
.PHONY: browser-check
browser-check: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[browser]'
	$(BIN)/python tests/browser/check.py --preset $(PRESET) --snakemake-args "$(SNAKEMAKE_ARGS)" \
		$(if $(DOCS_SHOT),--docs-shot $(DOCS_SHOT))

# One GPU, at most 10 minutes: environment, bench (eager and compiled), ASGE and BP on CIFAR-10
# (docs/benchmarks.md, "GPU: how to check"). Exits non-zero if a phase fails; refuses a CPU.
.PHONY: gpu-check
gpu-check: $(VENV)/.installed
	$(BIN)/python -m tools.gpucheck --out results/gpucheck
