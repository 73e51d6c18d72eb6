# triadapt: every job sets itself up (project-local venv with PyPI torch, then cargo).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# torch-sys finds LibTorch inside the venv's torch; these must be identical for every cargo call.
CARGO_ENV := VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH LIBTORCH_USE_PYTORCH=1
CARGO := $(CARGO_ENV) cargo
BIN := target/release/triadapt

.PHONY: all venv build test lint test-slurm demo reproduce fixtures clean env bench

all: build

# --no-compile: byte-compiling all 10k files of the venv takes ~50 s; Python compiles (and caches)
# only what the oracles import, on first use.
$(STAMP): scripts/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-compile -r scripts/requirements.txt
	touch $(STAMP)

venv: $(STAMP)

build: $(STAMP)
	$(CARGO) build --release

## The habits CI holds every change to (.ci/run runs this before `make test`): formatting
## (rustfmt.toml), clippy with warnings as errors on every target, and docs whose intra-doc links
## resolve. --release shares the build scripts and proc macros with `make test`'s build.
lint: $(STAMP)
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --release --no-deps

## Tests against fixtures made on another machine, run a second time under other CPU kernels
## (ATen's unvectorised `default` kernels; MKL limited to AVX2, which matters on Intel AVX-512
## CPUs): a tolerance that holds on one instruction set only fails here, not on a user's machine.
## The bounds are derived from float32 rounding (tests/common/tolerance.rs).
OTHER_KERNELS := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=AVX2
PARITY_TESTS := hf_parity:: checkpoints:: cli::predict_on_ids starts_equal_to_the_frozen_model increlora::increlora_trains \
	adalora_peft:: export::lora_matches_peft_on_the_fixture peft_import::peft_lora_adapters_predict peft_import::lora_starts_from

## The test command (README, .ci/run): set-up, build, every Rust and oracle test. In CI
## (CI=true) also the real-Slurm check, which brings up Slurm as root (SKIPPED where it cannot);
## on a developer's machine run it with `make test-slurm`.
test: $(STAMP)
	$(CARGO) test --release
	$(OTHER_KERNELS) $(CARGO) test --release -- $(PARITY_TESTS)
	@if [ "$${CI:-}" = true ]; then bash scripts/slurm_test.sh $(BIN); fi

## End-to-end check of `sweep --slurm` on a real single-node Slurm that the script brings up (as
## root: apt-installs slurmctld/slurmd/munge if missing, starts and stops the daemons): a 2-task
## array + collect job, one task requeued mid-run must resume from its checkpoint, runs.csv must
## hold the 4 runs finished. Prints SKIPPED and exits 0 where it cannot (not root, no apt).
test-slurm: build
	bash scripts/slurm_test.sh $(BIN)

## The embedded default: offline, CPU, the bundled tiny backbone on the bundled synthetic task:
## TriAdaptLoRA against LoRA, AdaLoRA and IncreLoRA (sweeps/demo.yaml), then the figures and table.
demo: build
	$(BIN) env
	$(BIN) sweep sweeps/demo.yaml --devices cpu,cpu
	$(BIN) heatmap results/demo --task rte
	$(BIN) plot results/demo
	$(BIN) table results/demo
	@echo
	@echo "demo done: results/demo/runs.csv, results/demo/table.md, figures in plots/demo/"
	@ls plots/demo

## The paper's experiments end to end (resumable: finished runs are skipped). Needs the network
## for the downloads, and a GPU to finish in reasonable time. Each sweep's pending count is read
## from its dry run's summary line (`N run(s): D done, F failed, P pending, R running; ...`).
PAPER_SWEEPS := sweeps/glue_r2.yaml sweeps/glue_r8.yaml sweeps/glue_r2_adalora_matched.yaml sweeps/glue_r8_adalora_matched.yaml sweeps/mnli_ranks.yaml sweeps/rte_warmup.yaml sweeps/rte_interval.yaml sweeps/rte_refrank.yaml sweeps/squad_v2.yaml
reproduce: build
	@for s in $(PAPER_SWEEPS); do printf '%s: ' $$s; $(BIN) sweep $$s --dry-run | sed -n 's/^[0-9]* run(s): .* \([0-9]*\) pending[,;].*$$/\1 pending/p'; done
	@echo "GPU-hour estimate: sum over runs of (epochs x train examples) / throughput. This machine"
	@echo "has no GPU to measure it: run 'triadapt bench --model-config base --device cuda' on yours"
	@echo "and divide (README 'Reproducing the paper'). Shard with --shard I/N or --slurm."
	$(BIN) fetch model microsoft/deberta-v3-base
	$(BIN) fetch glue all
	$(BIN) fetch squad2
	for s in $(PAPER_SWEEPS); do $(BIN) sweep $$s --devices $${DEVICES:-0} || exit 1; done
	for r in results/*/; do $(BIN) table $$r || true; $(BIN) plot $$r || true; done
	$(BIN) heatmap results/mnli --task mnli

## Regenerate the committed fixtures (byte-for-byte) with the pinned Python oracle.
fixtures: $(STAMP)
	$(PY) scripts/make_fixtures.py --out tests/fixtures
	$(PY) scripts/allocator_oracle.py --out tests/fixtures/allocators
	$(PY) scripts/increlora_hook_oracle.py --out tests/fixtures/increlora
	$(PY) scripts/make_bf16_fixture.py

env: build
	$(BIN) env

clean:
	rm -rf target

## Benchmarks (README "Benchmarks"): triadapt against HF transformers + PEFT on random weights of
## the deberta-v3-small and -base shapes, CPU fp32, one process per measurement, alternating;
## writes results/bench/{runs,summary}.csv and results/bench/table.md. About 10-12 minutes on 2
## cores. BENCH_ARGS passes options to scripts/bench_suite.py (e.g. BENCH_ARGS="--threads 1").
bench: build
	$(PY) scripts/bench_suite.py --bin $(BIN) --python $(PY) --out results/bench $(BENCH_ARGS)
