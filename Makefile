# triadapt: every job sets itself up (project-local venv with PyPI torch, then cargo).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch-sys finds LibTorch inside the venv's torch; these must be identical for every cargo call.
CARGO_ENV := VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH LIBTORCH_USE_PYTORCH=1
CARGO := $(CARGO_ENV) cargo
BIN := target/release/triadapt

.PHONY: all venv build test demo fixtures clean env

all: build

$(STAMP): scripts/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
	touch $(STAMP)

venv: $(STAMP)

build: $(STAMP)
	$(CARGO) build --release

## The test command (README, .ci/run): set-up, build, every Rust and oracle test.
test: $(STAMP)
	$(CARGO) test --release

## The embedded default: offline, CPU, bundled tiny model.
demo: build
	$(BIN) env
	$(BIN) predict --model tests/fixtures/models/v3 --input tests/fixtures/inputs/demo.jsonl

## Regenerate the committed fixtures (byte-for-byte) with the pinned Python oracle.
fixtures: $(STAMP)
	$(PY) scripts/make_fixtures.py --out tests/fixtures

env: build
	$(BIN) env

clean:
	rm -rf target
