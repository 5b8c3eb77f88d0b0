# One-command setup on a fresh machine with Python 3.11 (+ root or sudo for ffmpeg).
#   make demo   - install, render a synthetic 360° clip, label it through Airflow, release it
#   make test   - install (with test tools) and run the whole test suite
#   make test-deployed - only the live Airflow deployment test (4 components on loopback, ~4 min)
#   make bench  - the benchmarks behind docs/BENCHMARKS.md

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
VAR := $(CURDIR)/var

# Airflow and the pipeline, all inside the project folder (SQLite, local store).
export AIRFLOW_HOME := $(VAR)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False
export LEADER360V_STORE := $(VAR)/store
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export GX_ANALYTICS_ENABLED := False
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

RUNTIME_STAMP := $(VENV)/.runtime-$(shell cat requirements.txt requirements-nodeps.txt pyproject.toml 2>/dev/null | sha256sum | cut -c1-12)
DEV_STAMP := $(VENV)/.dev-$(shell cat requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-12)

.PHONY: help install install-dev system-deps demo test test-fast test-deployed bench lint clean

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch==2.13.0 resolves to the CPU build; sam2 and the GX provider need --no-deps
# (see requirements-nodeps.txt for why).
$(RUNTIME_STAMP): requirements.txt requirements-nodeps.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install --disable-pip-version-check -q -r requirements.txt
	SAM2_BUILD_CUDA=0 $(PIP) install --disable-pip-version-check -q --no-deps --no-build-isolation -r requirements-nodeps.txt
	$(PIP) install --disable-pip-version-check -q --no-deps -e .
	rm -f $(VENV)/.runtime-* && touch $@

$(DEV_STAMP): requirements-dev.txt $(RUNTIME_STAMP)
	$(PIP) install --disable-pip-version-check -q -r requirements-dev.txt
	rm -f $(VENV)/.dev-* && touch $@

install: system-deps $(RUNTIME_STAMP)
install-dev: install $(DEV_STAMP)

system-deps:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then \
	  echo "installing ffmpeg (Debian package)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg; \
	  else echo "ffmpeg/ffprobe missing and no root/sudo: install ffmpeg with your package manager" >&2; exit 1; fi; \
	fi
	@# the ops dashboard's browser test drives Debian's chromium through Debian's chromedriver (issue 14)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  echo "installing chromium and chromium-driver (Debian packages)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	  else echo "chromium/chromedriver missing and no root/sudo: install chromium and chromium-driver with your package manager" >&2; exit 1; fi; \
	fi

$(AIRFLOW_HOME)/airflow.db: $(RUNTIME_STAMP)
	mkdir -p $(AIRFLOW_HOME)
	airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)

DEMO := $(VAR)/demo
DEMO_KEY := raw/demo/synthetic_clip.mp4
demo: install $(AIRFLOW_HOME)/airflow.db
	$(PY) -m tasks synth --out $(DEMO) --seconds 4 --fps 10 --width 1024 --seed 7
	$(PY) -m tasks upload $(DEMO)/clip.mp4 --key $(DEMO_KEY)
	@echo "== nightly DAG (airflow dags test) — log: $(DEMO)/nightly.log"
	airflow dags test leader360v_nightly -c '{"keys": ["$(DEMO_KEY)"]}' > $(DEMO)/nightly.log 2>&1 \
	  || (tail -50 $(DEMO)/nightly.log; exit 1)
	@grep -q "state=success" $(DEMO)/nightly.log || (tail -50 $(DEMO)/nightly.log; echo "nightly run failed" >&2; exit 1)
	@echo "== release DAG — log: $(DEMO)/release.log"
	airflow dags test leader360v_release > $(DEMO)/release.log 2>&1 || (tail -50 $(DEMO)/release.log; exit 1)
	@grep -q "state=success" $(DEMO)/release.log || (tail -50 $(DEMO)/release.log; echo "release run failed" >&2; exit 1)
	$(PY) -m tasks status --gt $(DEMO)/gt.json

# The whole suite (the README's test command; .ci/run runs exactly this).
test: install-dev
	$(PY) -m pytest -q

test-fast: install-dev
	$(PY) -m pytest -q -m "not slow"

# Airflow as deployed: api-server, scheduler, dag-processor, triggerer on free loopback ports in
# a throw-away AIRFLOW_HOME laid out like the image (tests/deployed/); part of `make test` too.
# Needs ffmpeg (system-deps) for the test clip; it ignores the AIRFLOW_* settings exported above.
test-deployed: install-dev
	$(PY) -m pytest -q tests/deployed

bench: install-dev
	$(PY) tests/bench/run_all.py

lint: install-dev
	$(VENV)/bin/ruff check tasks dags plugins tests

clean:
	rm -rf $(VAR)
