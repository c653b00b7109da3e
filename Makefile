SHELL := /bin/bash
# The two README commands are `make demo` and `make test`; both set everything up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# The venv as if activated: dagster-dbt runs the `dbt` it finds on PATH, and `dg` checks it is the project's.
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup test-tools label-studio demo test dev lint bench validate clean annotate

DBT_PROJECT := emonet_assets/dbt_project
MANIFEST := $(DBT_PROJECT)/target/manifest.json

# Bytecode for the project's own modules: an editable install leaves none, and where PYTHONDONTWRITEBYTECODE is set
# every process (each emonet command, Dagster server, run and dbt invocation) would compile them again.
setup: $(STAMP) $(DAGSTER_HOME)/dagster.yaml $(MANIFEST)
	$(BIN)/python -m compileall -q emonet_assets emonet_assets_tests bench

# torch first from the CPU wheel, then the rest under the full lock so pip never swaps it for a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0 2> >(grep -v "^WARNING: Location" >&2)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' 2> >(grep -v "^WARNING: Location" >&2)
	touch $(STAMP)

# dagster-dbt's own preparation (dbt parse) whenever the dbt project changed; a load of the definitions also prepares a stale one.
$(MANIFEST): $(STAMP) $(shell find $(DBT_PROJECT) \( -name target -o -name logs \) -prune -o -type f -print)
	$(BIN)/dagster-dbt project prepare-and-package --file emonet_assets/defs/consensus/project.py

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.local.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.local.yaml $@

# Tests look at pages in headless Chromium (driven by Playwright from the venv), run the deploy settings against
# a throwaway PostgreSQL cluster and validate deploy/docker-compose.yml: Debian's packages, installed if missing.
test-tools:
	@missing=""; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "Not installed: $$missing (Debian packages); the tests that need them skip without them" >&2; \
	fi

# Label Studio pins pytz, openai and pyarrow at versions this project cannot use: it lives in its own venv, which the
# tests start a server from and `make annotate` runs (lib/annotation/label_studio_server.py). template-data is a data
# folder migrated once: each server starts from a copy in seconds (a fresh one migrates for a minute or more).
# Label Studio 1.23.2 requires sentry-sdk with no upper bound, and calls it with options that sentry-sdk 3.0 refuses
# ("Unknown option 'send_default_pii'" at `label-studio init`): sentry-sdk stays on 2.x.
LS_VENV := .venv-label-studio
LS_VERSION := 1.23.2
LS_PINS := 'sentry-sdk<3'
LS_STAMP := $(LS_VENV)/.installed-$(LS_VERSION)

label-studio: $(LS_STAMP)

$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet label-studio==$(LS_VERSION) $(LS_PINS) 2> >(grep -v "^WARNING: Location" >&2)
	rm -rf $(LS_VENV)/template-data
	LATEST_VERSION_CHECK=false LABEL_STUDIO_BASE_DATA_DIR=$(CURDIR)/$(LS_VENV)/template-data $(LS_VENV)/bin/label-studio init -q --agree-fix-sqlite \
		--data-dir $(CURDIR)/$(LS_VENV)/template-data </dev/null >/dev/null
	touch $@

demo: setup
	$(BIN)/emonet demo

# pytest-xdist, one worker per test file so module fixtures are built once, and one worker more than cores: the
# server tests wait on daemons and ticks for part of their time, and a fourth worker on 2 cores cost more CPU (its
# start, and contention) than it filled. Files go out in the order conftest.py gives them (slow first), not
# xdist's own (most tests first). The slowest 15 are listed.
test: setup test-tools label-studio
	$(BIN)/pytest -n $${EMONET_TEST_WORKERS:-$$(($$(nproc) + 1))} --dist loadfile --no-loadscope-reorder --durations=15

# A local Label Studio (127.0.0.1:8080) with the demo's images to rate; what is submitted reaches consensus_labels.
annotate: setup label-studio
	test -d $${EMONET_ROOT:-data/tiny}/tables/image_qc || $(BIN)/emonet demo
	$(BIN)/emonet annotate serve --label-studio $(LS_VENV)/bin/label-studio

dev: setup
	$(BIN)/dg dev -h 127.0.0.1 -p $${PORT:-3000}

validate: setup
	$(BIN)/dg check defs

lint: setup
	$(BIN)/ruff check emonet_assets emonet_assets_tests bench
	$(BIN)/ruff format --check emonet_assets emonet_assets_tests bench

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf data .dagster_home
