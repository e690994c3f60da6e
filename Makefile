# CivicSense: `make run` trains and registers the model end to end; `make test` checks it all.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
# DATA=<path|https://…|gs://…> picks the training data (default: ../shared/data mirror).
DATA ?=
SAMPLE ?= 0
# TUNE=1 adds the Optuna step (TRIALS=… trials, default 20) before train.
TUNE ?= 0
TRIALS ?=
RUN_ARGS := $(if $(DATA),--data $(DATA)) $(if $(filter-out 0,$(SAMPLE)),--sample-size $(SAMPLE))
TUNE_ARGS := $(if $(filter-out 0,$(TUNE)),--tune $(if $(TRIALS),--trials $(TRIALS)))
# ENCODER=0 skips the MiniLM fine-tune: today's fast lexical-only model, for a quick look.
ENCODER ?= 1
TUNE_ARGS += $(if $(filter 0,$(ENCODER)),--no-encoder)
PYTEST_ARGS ?=

.PHONY: help setup run test test-fast lint compile submit bench lock clean

# Each capability (serving, monitoring, extension) adds its targets in mk/<name>.mk.
-include $(wildcard mk/*.mk)
.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# torch's CPU build (torch==2.13.0+cpu in the lock) lies in pip's find-links dir; uv looks there
# only when told, and would otherwise take PyPI's multi-GB CUDA build. Every uv call gets it.
FIND_LINKS = $(or $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null),/opt/wheels)
UV_FIND_LINKS = $(foreach dir,$(FIND_LINKS),--find-links $(dir))

$(BIN)/.installed: pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --quiet --python $(BIN)/python $(UV_FIND_LINKS) requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

setup: $(BIN)/.installed ## Create .venv with the locked dependencies

run: setup ## Run the training pipeline end to end locally (DATA=…, SAMPLE=…, ENCODER=0, TUNE=1, TRIALS=…)
	$(BIN)/civicsense run $(RUN_ARGS) $(TUNE_ARGS)

test: setup ## Run the whole test suite (offline)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: setup ## Unit + data tests only: no trained model, fine-tune, drill, browser, containers or Label Studio (< 2 min)
	$(BIN)/python -m pytest -n 3 --dist loadfile -m "not e2e and not finetune and not integration and not browser and not container and not labelstudio" $(PYTEST_ARGS)

lint: setup ## ruff
	$(BIN)/ruff check .

# IMAGE=… (or COMPONENT_IMAGE=… / IMAGE_TAG=… given on the command line or in the environment: the
# tag `make images` builds) compiles for that component image into build/pipelines/; the
# committed pipelines/*.yaml keep the default image.
COMPILE_IMAGE = $(or $(IMAGE),$(if $(filter command% environment%,$(origin COMPONENT_IMAGE) \
	$(origin IMAGE_TAG)),$(COMPONENT_IMAGE)))
COMPILE_DIR ?= build/pipelines

compile: setup ## Compile the pipelines to pipelines/*.yaml; IMAGE=… → build/pipelines/ with that image
	$(BIN)/civicsense pipeline compile $(if $(COMPILE_IMAGE),--image $(COMPILE_IMAGE) \
	  --output-dir $(COMPILE_DIR))

submit: setup ## Submit a run to Kubeflow Pipelines (HOST=http://…, TUNE=1, TRIALS=…)
	$(BIN)/civicsense pipeline submit --host $(HOST) $(RUN_ARGS) $(TUNE_ARGS)

bench: setup ## Benchmark the pipeline: cold run and unchanged rerun on the full data
	$(BIN)/python benchmarks/bench_pipeline.py $(RUN_ARGS)

lock: ## Re-resolve requirements.lock from pyproject.toml
	$(BIN)/uv pip compile --quiet pyproject.toml --extra dev --python-version 3.11 $(UV_FIND_LINKS) \
	  -o requirements.lock
	$(MAKE) lock-images

clean: ## Remove local state (.civicsense) and caches, keep .venv
	rm -rf .civicsense .pytest_cache .ruff_cache
