# edgedeploy — the commands a user and CI run. Everything installs into .venv.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Nothing may download at run time.
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONDONTWRITEBYTECODE := 1
PYTEST_ARGS ?=

.PHONY: setup system test lint format demo bench clean arm64-device

setup: $(STAMP) system

$(STAMP): pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the CPU wheel on disk. A later unpinned torch would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	$(PY) -m pip check
	touch $(STAMP)

system:
	scripts/install-system-deps.sh

lint: setup
	$(PY) -m ruff check toolchain tests benchmarks
	$(PY) -m ruff format --check toolchain tests benchmarks
	$(PY) -m mypy

format: setup
	$(PY) -m ruff check --fix toolchain tests benchmarks
	$(PY) -m ruff format toolchain tests benchmarks

test: setup lint
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(PY) -m toolchain demo

bench: setup
	$(PY) -m benchmarks.run

clean:
	rm -rf build out .pytest_cache .mypy_cache .ruff_cache

# Opt-in: the arm64 "Raspberry Pi" stand-in of the emulated tier (root; ~5-10 min; Debian
# mirror from apt's configuration + PyPI). Cached in /var/cache/edgedeploy/arm64-<hash>/.
arm64-device: setup
	$(PY) -m tests.support.arm64_device build
