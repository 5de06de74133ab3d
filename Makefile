# mnc-bench: `make demo` and `make test` set everything up on a fresh machine (idempotent).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# The tested torch / torchvision pair, installed first; the rest of the install keeps it. Where your package
# index lacks it, name another pair here: `make demo TORCH=X.Y.Z TORCHVISION=A.B.C` (docs/installation.md).
TORCH ?= 2.14.1
TORCHVISION ?= 0.29.1
# Built mmcv wheels are cached outside the clone, keyed by torch version: the cold build takes ~15 min on 2 cores.
WHEEL_CACHE ?= $(HOME)/.cache/mnc-bench/wheels
# What decides mmcv's build (tools/mmcv_build_target.py): the visible GPUs' architectures and the overrides,
# so an install made on a login node without GPUs runs again (and builds CUDA kernels) on a GPU node.
MMCV_TARGET := $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | sort -u \
	| tr '\n' ' ')
MMCV_TARGET += arch=$(TORCH_CUDA_ARCH_LIST) cpu_only=$(MNC_BENCH_CPU_ONLY)
# The stamp names a hash of everything that decides the install, so editing pyproject (or choosing another
# torch, or another mmcv build) reinstalls once.
INSTALL_HASH := $(shell (cat pyproject.toml setup.py tools/build_mmcv_wheel.sh tools/mmcv_build_target.py; \
	echo $(TORCH) $(TORCHVISION) '$(MMCV_TARGET)') | sha1sum | cut -c1-12)
STAMP := $(VENV)/.mnc-bench-installed-$(INSTALL_HASH)
# CI (CI=true) also runs the slow training tier; a developer's plain `make test` runs the fast tier. The GPU
# tier runs only under `make test-gpu`.
PYTEST_MARK ?= $(if $(filter true 1,$(CI)),not long and not gpu,not slow and not long and not gpu)
# The fast tier runs on one pytest-xdist worker per core (at most 4: each worker holds its own torch and
# mmdet); CI's run, which adds the training tier, stays in one process. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= $(if $(filter true 1,$(CI)),0,auto)
DEMO_DIR ?= results/demo
# The demo suite's 8 runs, 2 at a time (one thread each on the 2-core reference machine).
DEMO_WORKERS ?= 2

.PHONY: install demo test test-all test-gpu test-long lint bench clean-venv

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch/torchvision pinned (TORCH, TORCHVISION above): an unpinned torch makes pip pull a multi-GB build.
# setuptools 80.x: still ships pkg_resources (mmcv 2.1.0's setup.py imports it) and meets torch's >=77.0.3.
# mmcv 2.1.0 with C++ ops is built once from the sdist with the C++20 flag fix (see the script's comments).
# --no-build-isolation: the editable install must see the venv's setuptools 80.x, not a fresh one.
$(STAMP): | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==$(TORCH)" "torchvision==$(TORCHVISION)" "setuptools==80.9.0" wheel
	bash tools/build_mmcv_wheel.sh $(PY) $(WHEEL_CACHE)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation -e ".[test,fast-eval]"
	rm -f $(VENV)/.mnc-bench-installed-*
	touch $@

demo: install
	$(VENV)/bin/mnc-bench env
	$(VENV)/bin/mnc-bench demo --out $(DEMO_DIR) --workers $(DEMO_WORKERS)

test: install
	$(PY) -m pytest -m "$(PYTEST_MARK)" -n $(TEST_WORKERS) --maxprocesses 4 --dist worksteal

# ruff with the rules in pyproject.toml; CI runs it before the tests.
lint: install
	$(VENV)/bin/ruff check .

test-all: install
	$(PY) -m pytest -m "not long and not gpu"

# On a GPU machine: MNC's modules on CPU vs CUDA (torch only), then every shapes model on CUDA in fp32 and
# with --amp and `bench models --device cuda` (mmcv with CUDA kernels). Without a GPU every test is skipped,
# saying why.
test-gpu: install
	$(PY) -m pytest -m gpu -rs

# Full default schedules: measures that the shapes configs reach their documented AP (hours on CPU).
test-long: install
	$(PY) -m pytest -m long

# CPU-sized (< 5 min on 2 cores): the four shapes models at 128 px (10 images per model and threshold, 4 training
# iterations each after 1 warm-up), then dataset generation and evaluation. The models table says which weights
# each model ran with. WEIGHTS=ask (default) offers the checkpoints of finished suite runs of the shapes configs
# under results/ where there are any (a prompt at a terminal, otherwise a line saying how to use them);
# WEIGHTS=trained uses them, WEIGHTS=random never looks. Random weights mislead about MNC's ratios.
WEIGHTS ?= ask
bench: install
	$(VENV)/bin/mnc-bench bench models --weights $(WEIGHTS) --repeats 10 --train-iters 4 --warmup 1 \
		--json results/bench/models.json
	$(VENV)/bin/mnc-bench bench data
	$(VENV)/bin/mnc-bench bench eval

clean-venv:
	rm -rf $(VENV)
