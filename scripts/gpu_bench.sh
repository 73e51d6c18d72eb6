#!/usr/bin/env bash
# The GPU benchmark, prepared for a lent GPU machine (README "Benchmarks"; toolchain.md "The GPU
# machine"): it builds nothing there. Carry the binary built here (target/release/triadapt) in the
# working tree; the machine's own python3 must have torch 2.11, transformers and peft.
#
#   scripts/gpu_bench.sh            # writes $OUT (or results/bench_gpu) : env.json, nvidia-smi.txt,
#                                   # runs.jsonl, runs.csv, summary.csv, table.md
#
# Steps: point the binary at that machine's LibTorch (LD_LIBRARY_PATH; the binary's RUNPATH names
# this machine's venv, which is not there), check with `triadapt env` that CUDA is visible, run a
# seconds-long smoke test on the tiny shape, then the comparison with HF transformers + PEFT on the
# deberta-v3-base shape in bf16 autocast and in fp32 (scripts/bench_suite.py --plan gpu), under
# a time limit (BUDGET_S, default 480 s) that leaves room for a rerun in a 15-minute lease. GPU
# memory is the largest per-process figure nvidia-smi shows while each measurement runs.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
BIN=${BIN:-target/release/triadapt}
OUT=${OUT:-results/bench_gpu}
BUDGET_S=${BUDGET_S:-480}
mkdir -p "$OUT"

TORCH_LIB=$("$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LibTorch: $TORCH_LIB" | tee "$OUT/log.txt"
"$PY" -c 'import torch, transformers, peft; print("python peer: torch", torch.__version__, "cuda", torch.cuda.is_available(), "transformers", transformers.__version__, "peft", peft.__version__)' | tee -a "$OUT/log.txt"

"$BIN" env | tee "$OUT/env.json"
if ! "$PY" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1]))["cuda_available"] else 1)' "$OUT/env.json"; then
    echo "triadapt sees no CUDA device: check LD_LIBRARY_PATH ($TORCH_LIB) and that libtorch_cuda.so is there" | tee -a "$OUT/log.txt" >&2
    exit 1
fi
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true

# Smoke: both tools, both precisions, tiny shape (seconds). Fails fast before the long part.
"$BIN" bench --model-config tiny --device cuda --precision bf16 --steps 2 --method lora,triadapt-grow | tee -a "$OUT/log.txt"
"$PY" scripts/bench_peft.py --model-config tiny --device cuda --precision bf16 --steps 2 --method adalora | tee -a "$OUT/log.txt"

timeout "$BUDGET_S" "$PY" scripts/bench_suite.py --plan gpu --device cuda --precision bf16,fp32 \
    --threads "$(nproc)" --bin "$BIN" --python "$PY" --out "$OUT" 2>&1 | tee -a "$OUT/log.txt"
echo "table: $OUT/table.md"
