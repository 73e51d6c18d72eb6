#!/usr/bin/env bash
# gpu_check.sh: everything we want to know from one lent GPU machine, in one call, cheapest and
# most telling first; each step under its own time limit, so one failure never hides the others.
#
# Steps (outputs under $OUT/<step>/ as they are produced; $OUT/steps.tsv gets "step rc seconds"
# after each step; $OUT/summary.md, rewritten after each step: the steps, their key numbers, tables):
#   env            triadapt env, ldd of the binary, python3's torch/transformers/peft, nvidia-smi.
#                  On cuda, stops the script (after the summary) if triadapt sees no CUDA.
#   predict_fp32   `predict --device $DEVICE` on tests/fixtures/models/v3 with the inputs of
#                  tests/fixtures/oracle/v3_batch.safetensors: logits within 1e-4 of HF's and of
#                  a `--device cpu` run.
#   bf16_smoke     `bench --precision bf16` of every method, a few steps on the tiny shape: a finite loss.
#   train80        `train` of every method on experiments/synthetic_rte.yaml, TRAIN_STEPS steps
#                  (80 on a GPU) on $DEVICE in fp32 and bf16, plus fp32 on cpu: every run finished
#                  with a finite loss; bf16 vs fp32 final loss (> 0.1 reported, > 0.5 fails);
#                  rank_pattern.json of $DEVICE fp32 vs cpu fp32 (triadapt, increlora, adalora:
#                  reported on a GPU, where tied scores may break differently; must be equal when
#                  DEVICE=cpu). Table: train80/report.md.
#   eval_cross     `eval --predictions` of the CPU-trained triadapt (and lora) runs with
#                  --device $DEVICE and --device cpu: identical predicted labels.
#   sweep_devices  a 4-run sweep (lora, triadapt x 2 seeds) with --devices 0,0 (cpu,cpu on cpu):
#                  4 finished rows in runs.csv.
#   bench          (last: gets the rest of BUDGET_S) `triadapt bench` of every method and
#                  scripts/bench_peft.py of lora, adalora, full on $SHAPE (base on a GPU, batch 32 x
#                  seq 128), bf16 and fp32; nvidia-smi memory.used sampled every second into
#                  bench/gpu_mem.csv; after each measurement, its ops per step (`--ops`, batch 1 x 16:
#                  counts do not depend on the batch). Table: bench/table.md (rewritten after every
#                  measurement) with step ms, CPU ms per step (close to step ms: a host-bound step)
#                  and ops per step, ours and PEFT's.
# Exit code 0 when every step passed, else 1. No `set -e` on purpose.
#
# On a lent GPU machine (one H200; torch 2.11 + transformers + peft in its system python3; no Rust,
# no network). Nothing is built there: strip a copy of the release binary built here (about 30 MB;
# the working tree that travels is limited to 64 MiB) into an ignored folder and carry that folder.
# The device tool brings back at most 8 files from its $OUT, so point OUT elsewhere and PACK at
# the tool's $OUT: after every step the script copies steps.tsv, summary.md and gpu_check.tar.gz
# (all of OUT but the checkpoints) there.
#
#     mkdir -p target/gpu && strip -o target/gpu/triadapt target/release/triadapt     # here
#     device `run`: command  "PACK=$OUT OUT=/tmp/gpu_check BIN=target/gpu/triadapt bash scripts/gpu_check.sh"
#                   carry    ["target/gpu"]        timeout_s  560
#
# BUDGET_S (default 480) keeps the whole script inside one 9-minute call, the machine's start
# not counted. The binary's RUNPATH names this machine's .venv, which is not there: the script
# points LD_LIBRARY_PATH at $PY's torch/lib. With BIN unset, target/release/triadapt is used,
# else target/gpu/triadapt when only that exists.
#
# On CPU (`make test` runs it this way from a Rust integration test, so it cannot rot; ~1.5 min
# on 2 cores):
#
#     DEVICE=cpu PY=.venv/bin/python OUT=/tmp/gpucheck BUDGET_S=200 bash scripts/gpu_check.sh
#
# Variables (defaults on cuda / on cpu): DEVICE (cuda), BIN, PY (python3), OUT (a fresh mktemp
# dir), BUDGET_S (480), SHAPE (base / tiny), BATCH (32 / 4), SEQ (128 / 32), BENCH_WARMUP (5 / 1),
# BENCH_STEPS (20 / 3), MEAS_S (per bench measurement, 120 / 60), BENCH_PRECISIONS (bf16 fp32 /
# fp32 bf16), PEFT_PRECISIONS (bf16 fp32 / fp32: bench_peft.py's bf16 is CUDA autocast only),
# TRAIN_STEPS (80 / 30), SWEEP_STEPS (20 / 12), SMOKE_STEPS (3), JOBS (parallel train runs, 4 / 2),
# CPU_THREADS (OMP_NUM_THREADS of each cpu train run, 4 / 1; on cpu also the default
# OMP_NUM_THREADS of everything), SWEEP_DEVICES (0,0 / cpu,cpu), METHODS (all five), PEFT_METHODS
# (lora adalora full: the PEFT peers of the bench step), PACK (unset).

CALLER=$(pwd)
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
# Relative paths given in BIN, PY, OUT, PACK are taken from the caller's directory (a BIN or PY
# without a slash is a command looked up in PATH).
abs() { case $1 in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac; }
cmd_abs() { case $1 in */*) abs "$1" ;; *) echo "$1" ;; esac; }

DEVICE=${DEVICE:-cuda}
case $DEVICE in cuda*) ON_GPU=1 ;; *) ON_GPU=0 ;; esac
if [ -n "${BIN:-}" ]; then
    BIN=$(cmd_abs "$BIN")
else
    BIN=$ROOT/target/release/triadapt
    [ ! -x "$BIN" ] && [ -x "$ROOT/target/gpu/triadapt" ] && BIN=$ROOT/target/gpu/triadapt
fi
PY=$(cmd_abs "${PY:-python3}")
[ -n "${PACK:-}" ] && PACK=$(abs "$PACK")
BUDGET_S=${BUDGET_S:-480}
if [ "$ON_GPU" = 1 ]; then
    SHAPE=${SHAPE:-base}; BATCH=${BATCH:-32}; SEQ=${SEQ:-128}
    BENCH_WARMUP=${BENCH_WARMUP:-5}; BENCH_STEPS=${BENCH_STEPS:-20}; MEAS_S=${MEAS_S:-120}
    BENCH_PRECISIONS=${BENCH_PRECISIONS:-bf16 fp32}; PEFT_PRECISIONS=${PEFT_PRECISIONS:-bf16 fp32}
    TRAIN_STEPS=${TRAIN_STEPS:-80}; SWEEP_STEPS=${SWEEP_STEPS:-20}
    JOBS=${JOBS:-4}; CPU_THREADS=${CPU_THREADS:-4}; SWEEP_DEVICES=${SWEEP_DEVICES:-0,0}
else
    SHAPE=${SHAPE:-tiny}; BATCH=${BATCH:-4}; SEQ=${SEQ:-32}
    BENCH_WARMUP=${BENCH_WARMUP:-1}; BENCH_STEPS=${BENCH_STEPS:-3}; MEAS_S=${MEAS_S:-60}
    BENCH_PRECISIONS=${BENCH_PRECISIONS:-fp32 bf16}; PEFT_PRECISIONS=${PEFT_PRECISIONS:-fp32}
    TRAIN_STEPS=${TRAIN_STEPS:-30}; SWEEP_STEPS=${SWEEP_STEPS:-12}
    JOBS=${JOBS:-2}; CPU_THREADS=${CPU_THREADS:-1}; SWEEP_DEVICES=${SWEEP_DEVICES:-cpu,cpu}
    # The tiny model gains nothing from more threads, and on a busy machine OpenMP's spinning
    # threads make it many times slower (README "Known limits").
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$CPU_THREADS}
fi
SMOKE_STEPS=${SMOKE_STEPS:-3}
METHODS=${METHODS:-full lora adalora increlora triadapt}
PEFT_METHODS=${PEFT_METHODS:-lora adalora full}
CONFIG=$ROOT/experiments/synthetic_rte.yaml

if [ -n "${OUT:-}" ]; then OUT=$(abs "$OUT"); else OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX"); fi
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)

START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
SUMMARY_RESERVE_S=5

# The binary finds the LibTorch of $PY's torch (the RUNPATH names this machine's venv).
TORCH_LIB=$(timeout 120 "$PY" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)
[ -n "$TORCH_LIB" ] && export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

export ROOT DEVICE ON_GPU BIN PY BUDGET_S SHAPE BATCH SEQ BENCH_WARMUP BENCH_STEPS MEAS_S \
    BENCH_PRECISIONS PEFT_PRECISIONS TRAIN_STEPS SWEEP_STEPS SMOKE_STEPS JOBS CPU_THREADS \
    SWEEP_DEVICES METHODS PEFT_METHODS CONFIG OUT PACK TORCH_LIB
HELPER=$ROOT/scripts/gpu_check.py
export HELPER

# ------------------------------------------------------------------------------------------ steps
# Each runs as `bash -c step_<name>` under `timeout` with D=$OUT/<name> and STEP_DEADLINE (epoch
# seconds) set, stdout+stderr in $D/log.txt; it writes a one-line $D/key.txt; its exit status is
# the step's.

step_env() {
    local rc=0
    {
        echo "date: $(date -u '+%F %T UTC')"; echo "host: $(uname -n) $(uname -r)"; echo "cores: $(nproc)"
        echo "BIN: $BIN"; echo "PY: $PY"; echo "TORCH_LIB: $TORCH_LIB"; echo "LD_LIBRARY_PATH: $LD_LIBRARY_PATH"
        free -m 2>/dev/null
    } > "$D/machine.txt"
    cat "$D/machine.txt"
    ls -la "$BIN"
    ldd "$BIN" > "$D/ldd.txt" 2>&1
    local missing
    missing=$(grep -c 'not found' "$D/ldd.txt")
    grep 'not found' "$D/ldd.txt"
    "$PY" -c 'import torch, transformers, peft; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "| transformers", transformers.__version__, "| peft", peft.__version__)' > "$D/python.txt" 2>&1 || rc=1
    cat "$D/python.txt"
    "$BIN" env > "$D/env.json" 2> "$D/env.err"; local env_rc=$?
    cat "$D/env.json" "$D/env.err"
    local gpu=""
    if [ "$ON_GPU" = 1 ]; then
        nvidia-smi > "$D/nvidia-smi.txt" 2>&1
        gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
    fi
    local torch_v cuda_ok count
    torch_v=$(grep -o '"torch_version": *"[^"]*"' "$D/env.json" | sed 's/.*: *//; s/"//g')
    cuda_ok=$(grep -o '"cuda_available": *[a-z]*' "$D/env.json" | sed 's/.*: *//')
    count=$(grep -o '"cuda_device_count": *[0-9]*' "$D/env.json" | sed 's/.*: *//')
    local verdict=ok
    [ "$env_rc" != 0 ] && verdict="FAIL (triadapt env rc $env_rc)"
    [ "$missing" != 0 ] && verdict="FAIL ($missing libraries not found by ldd)"
    [ "$rc" != 0 ] && verdict="FAIL (python: $(tail -1 "$D/python.txt"))"
    [ "$ON_GPU" = 1 ] && [ "$cuda_ok" != true ] && verdict="FAIL (triadapt sees no CUDA: LD_LIBRARY_PATH=$TORCH_LIB)"
    echo "$verdict: libtorch ${torch_v:-?}, cuda_available ${cuda_ok:-?}, devices ${count:-?}${gpu:+, $gpu}; python: $(tail -1 "$D/python.txt")" > "$D/key.txt"
    [ "$verdict" = ok ]
}

step_predict_fp32() {
    "$PY" "$HELPER" predict-inputs --out "$D/inputs.jsonl" || { echo "FAIL: could not write the inputs from the fixture" > "$D/key.txt"; return 1; }
    "$BIN" predict --model tests/fixtures/models/v3 --input "$D/inputs.jsonl" --device "$DEVICE" > "$D/logits_device.jsonl"
    echo "predict --device $DEVICE: rc $?"
    "$BIN" predict --model tests/fixtures/models/v3 --input "$D/inputs.jsonl" --device cpu > "$D/logits_cpu.jsonl"
    echo "predict --device cpu: rc $?"
    "$PY" "$HELPER" compare-logits --device "$DEVICE" --device-out "$D/logits_device.jsonl" --cpu-out "$D/logits_cpu.jsonl" \
        --tol 1e-4 --report "$D/report.json" --key "$D/key.txt"
}

step_bf16_smoke() {
    local m
    for m in $METHODS; do
        "$BIN" bench --method "$m" --precision bf16 --device "$DEVICE" --model-config tiny --batch 4 --seq 32 \
            --warmup 1 --steps "$SMOKE_STEPS" --json > "$D/$m.json" 2> "$D/$m.log"
        echo "$m: rc $?"; cat "$D/$m.json"
    done
    "$PY" "$HELPER" smoke-check --dir "$D" --methods "$METHODS" --key "$D/key.txt"
}

train_one() {  # method tag device bf16
    local m=$1 tag=$2 dev=$3 bf16=$4 rc
    # The growth schedules scaled to the run: warm-up TRAIN_STEPS/4, interval TRAIN_STEPS/8 (80 steps:
    # the base file's TriAdaptLoRA 20/10; IncreLoRA on the same, as sweeps/demo.yaml, since its own
    # 100/100 is past the end), so that ranks grow within the run and rank_pattern.json says something.
    local w=$((TRAIN_STEPS / 4)) i=$((TRAIN_STEPS / 8))
    [ "$i" -lt 1 ] && i=1
    # CPU_THREADS threads each (JOBS runs share the cores; the tiny model gains nothing from more).
    OMP_NUM_THREADS=$CPU_THREADS "$BIN" train --config "$CONFIG" --method "$m" --set max_steps="$TRAIN_STEPS" \
        --set device="$dev" --set bf16="$bf16" \
        --set method.triadapt.warmup_steps="$w" --set method.triadapt.interval="$i" \
        --set method.increlora.init_warmup="$w" --set method.increlora.incre_interval="$i" \
        --out "$D/${m}_$tag" > "$D/${m}_$tag.log" 2>&1
    rc=$?
    echo "$rc" > "$D/${m}_$tag.rc"
    echo "train $m $tag (device $dev, bf16 $bf16): rc $rc"
}

step_train80() {
    local running=0 spec m tag dev bf16
    local -a specs=()
    for m in $METHODS; do specs+=("$m dev_fp32 $DEVICE false" "$m dev_bf16 $DEVICE true"); done
    for m in $METHODS; do specs+=("$m cpu_fp32 cpu false"); done
    for spec in "${specs[@]}"; do
        read -r m tag dev bf16 <<< "$spec"
        train_one "$m" "$tag" "$dev" "$bf16" &
        running=$((running + 1))
        if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
    done
    wait
    local strict=()
    [ "$ON_GPU" = 0 ] && strict=(--strict-ranks)
    "$PY" "$HELPER" train-check --dir "$D" --methods "$METHODS" --device "$DEVICE" "${strict[@]}" --key "$D/key.txt"
}

step_eval_cross() {
    local m run pairs=()
    for m in triadapt lora; do
        run=$OUT/train80/${m}_cpu_fp32
        "$BIN" eval --model "$run" --task rte --device "$DEVICE" --predictions > "$D/${m}_device.json" 2> "$D/${m}_device.log"
        echo "eval $m --device $DEVICE: rc $?"
        "$BIN" eval --model "$run" --task rte --device cpu --predictions > "$D/${m}_cpu.json" 2> "$D/${m}_cpu.log"
        echo "eval $m --device cpu: rc $?"
        pairs+=("$m,$D/${m}_device.json,$D/${m}_cpu.json")
    done
    "$PY" "$HELPER" eval-compare "${pairs[@]}" --key "$D/key.txt"
}

step_sweep_devices() {
    cat > "$D/sweep.yaml" <<EOF
# gpu_check.sh: 2 methods x 2 seeds on the bundled synthetic task, one run per --devices slot.
name: gpu_check_sweep
out: $D/results
base: $CONFIG
methods: [lora, triadapt]
seeds: [1, 2]
set:
  max_steps: $SWEEP_STEPS
  eval_steps: $SWEEP_STEPS
  method.triadapt.warmup_steps: $((SWEEP_STEPS / 4))
  method.triadapt.interval: $(((SWEEP_STEPS + 7) / 8))
EOF
    "$BIN" sweep "$D/sweep.yaml" --dry-run
    "$BIN" sweep "$D/sweep.yaml" --devices "$SWEEP_DEVICES"
    echo "sweep --devices $SWEEP_DEVICES: rc $?"
    cat "$D/results/runs.csv"
    "$PY" "$HELPER" sweep-check --runs-csv "$D/results/runs.csv" --expect 4 --key "$D/key.txt"
}

bench_table() {  # extra args: --final
    local pp="" p note="peft: not run in this precision (PEFT_PRECISIONS)"
    for p in $BENCH_PRECISIONS; do case " $PEFT_PRECISIONS " in *" $p "*) ;; *) pp="$pp $p" ;; esac; done
    [ "$ON_GPU" = 0 ] && note="peft: n/a (bench_peft.py bf16 is CUDA autocast only)"
    "$PY" "$HELPER" bench-table --dir "$D" --methods "$METHODS" --peft-methods "$PEFT_METHODS" \
        --precisions "$BENCH_PRECISIONS" --shape "$SHAPE" --batch "$BATCH" --seq "$SEQ" --warmup "$BENCH_WARMUP" \
        --steps "$BENCH_STEPS" --device "$DEVICE" --peft-note "$note" --peft-note-precisions "$pp" \
        --key "$D/key.txt" "$@"
}

measure() {  # tool method precision
    local tool=$1 m=$2 prec=$3 left t t0 t1 rc
    left=$((STEP_DEADLINE - $(date +%s) - 10))
    t=$MEAS_S; [ "$left" -lt "$t" ] && t=$left
    if [ "$t" -lt 5 ]; then echo "skip $tool $m $prec: no time left"; return; fi
    local base=$D/${tool}_${m}_${prec}
    t0=$(date +%s.%N)
    if [ "$tool" = ours ]; then
        timeout -k 5 "$t" "$BIN" bench --model-config "$SHAPE" --method "$m" --batch "$BATCH" --seq "$SEQ" \
            --warmup "$BENCH_WARMUP" --steps "$BENCH_STEPS" --device "$DEVICE" --precision "$prec" --json > "$base.json" 2> "$base.log"
    else
        timeout -k 5 "$t" "$PY" scripts/bench_peft.py --model-config "$SHAPE" --method "$m" --batch "$BATCH" --seq "$SEQ" \
            --warmup "$BENCH_WARMUP" --steps "$BENCH_STEPS" --device "$DEVICE" --precision "$prec" --json > "$base.json" 2> "$base.log"
    fi
    rc=$?
    t1=$(date +%s.%N)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$m" "$prec" "$t0" "$t1" "$rc" >> "$D/windows.tsv"
    echo "$tool $m $prec: rc $rc, $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s (limit $t s)"
    [ -s "$base.json" ] && cat "$base.json"
    # The ops each step launches (counts do not depend on the batch: a small one counts quickly),
    # next to the step time: a step whose time follows its op count is launch-bound.
    left=$((STEP_DEADLINE - $(date +%s) - 10)); t=60; [ "$left" -lt "$t" ] && t=$left
    if [ "$t" -ge 5 ]; then
        if [ "$tool" = ours ]; then
            timeout -k 5 "$t" "$BIN" bench --model-config "$SHAPE" --method "$m" --batch 1 --seq 16 --warmup 2 --steps 2 \
                --device "$DEVICE" --precision "$prec" --ops --json > "$base.ops.json" 2>> "$base.log"
        else
            timeout -k 5 "$t" "$PY" scripts/bench_peft.py --model-config "$SHAPE" --method "$m" --batch 1 --seq 16 --warmup 2 \
                --steps 2 --device "$DEVICE" --precision "$prec" --ops --json > "$base.ops.json" 2>> "$base.log"
        fi
        echo "$tool $m $prec ops: rc $?"
    fi
    bench_table > /dev/null 2>&1
}

step_bench() {
    local smi_pid="" prec m
    if [ "$ON_GPU" = 1 ]; then
        local lb=()
        command -v stdbuf > /dev/null && lb=(stdbuf -oL)
        "${lb[@]}" nvidia-smi --query-gpu=timestamp,memory.used --format=csv,nounits -l 1 > "$D/gpu_mem.csv" 2>&1 &
        smi_pid=$!
    fi
    : > "$D/windows.tsv"
    for prec in $BENCH_PRECISIONS; do
        for m in $METHODS; do
            measure ours "$m" "$prec"
            case " $PEFT_METHODS " in *" $m "*)
                case " $PEFT_PRECISIONS " in *" $prec "*) measure peft "$m" "$prec" ;; esac ;;
            esac
        done
    done
    [ -n "$smi_pid" ] && kill "$smi_pid" 2>/dev/null
    bench_table --final
}

export -f step_env step_predict_fp32 step_bf16_smoke train_one step_train80 step_eval_cross \
    step_sweep_devices bench_table measure step_bench

# ------------------------------------------------------------------------------------------ runner

STEPS_TSV=$OUT/steps.tsv
printf 'step\trc\tseconds\n' > "$STEPS_TSV"

run_step() {  # name cap_seconds
    local name=$1 cap=$2 left t rc secs t0 t1
    local d=$OUT/$name
    rm -rf "$d"; mkdir -p "$d"
    left=$((DEADLINE - $(date +%s) - SUMMARY_RESERVE_S))
    t=$cap; [ "$left" -lt "$t" ] && t=$left
    t0=$(date +%s.%N)
    if [ "$t" -lt 5 ]; then
        echo "skipped: BUDGET_S=$BUDGET_S spent" > "$d/key.txt"
        rc=124
    else
        D=$d STEP_DEADLINE=$(($(date +%s) + t)) timeout -k 10 "$t" bash -c "step_$name" > "$d/log.txt" 2>&1
        rc=$?
        [ -s "$d/key.txt" ] || echo "FAIL: no result (rc $rc)" > "$d/key.txt"
        [ "$rc" = 124 ] || [ "$rc" = 137 ] && echo "timed out after ${t}s; $(cat "$d/key.txt")" > "$d/key.txt"
    fi
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    printf '%s\t%s\t%s\n' "$name" "$rc" "$secs" >> "$STEPS_TSV"
    printf '[%s] rc %s, %ss: %s\n' "$name" "$rc" "$secs" "$(head -c 400 "$d/key.txt")" >&2
    write_summary 2>/dev/null
    pack
}

write_summary() {
    local total=$(( $(date +%s) - START )) s rc sec key
    {
        echo "# gpu_check: $DEVICE, $(date -u '+%F %T UTC')"
        echo
        echo "BIN $BIN; PY $PY; BUDGET_S $BUDGET_S; total ${total}s; shape $SHAPE (batch $BATCH x seq $SEQ); train steps $TRAIN_STEPS."
        [ -n "${STOPPED:-}" ] && { echo; echo "**Stopped early: $STOPPED**"; }
        echo
        echo "| step | rc | seconds | key numbers |"
        echo "|---|---|---|---|"
        while IFS=$'\t' read -r s rc sec; do
            key=$(head -c 1500 "$OUT/$s/key.txt" 2>/dev/null | tr '\n' ' ' | sed 's/|/\\|/g')
            echo "| $s | $rc | $sec | $key |"
        done < <(tail -n +2 "$STEPS_TSV")
        if [ -s "$OUT/train80/report.md" ]; then echo; echo "## train80"; echo; cat "$OUT/train80/report.md"; fi
        if [ -s "$OUT/bench/table.md" ]; then echo; echo "## bench"; echo; cat "$OUT/bench/table.md"; fi
    } > "$OUT/summary.md"
    echo "summary: $OUT/summary.md (total ${total}s)" >&2
}

pack() {  # PACK set: the few files the device tool brings back (at most 8), refreshed after each step
    [ -n "${PACK:-}" ] || return 0
    mkdir -p "$PACK" || return 0
    cp "$STEPS_TSV" "$OUT/summary.md" "$PACK/" 2>/dev/null
    [ "$(cd "$PACK" && pwd)" = "$OUT" ] && return 0
    tar czf "$PACK/gpu_check.tar.gz.part" -C "$OUT" --exclude=adapter --exclude='*.safetensors' . 2>/dev/null \
        && mv -f "$PACK/gpu_check.tar.gz.part" "$PACK/gpu_check.tar.gz"
}

finish() {
    write_summary
    pack
    cat "$STEPS_TSV" >&2
    if awk -F'\t' 'NR > 1 && $2 != 0 { bad = 1 } END { exit bad }' "$STEPS_TSV"; then exit 0; fi
    exit 1
}

echo "gpu_check: DEVICE=$DEVICE BIN=$BIN PY=$PY OUT=$OUT BUDGET_S=$BUDGET_S" >&2
run_step env 90
if [ "$ON_GPU" = 1 ] && ! grep -Eq '"cuda_available": *true' "$OUT/env/env.json" 2>/dev/null; then
    STOPPED="triadapt sees no CUDA device (LD_LIBRARY_PATH=$TORCH_LIB); the other steps were not run (see env/)"
    echo "$STOPPED" >&2
    finish
fi
run_step predict_fp32 120
run_step bf16_smoke 180
run_step train80 240
run_step eval_cross 120
run_step sweep_devices 150
run_step bench 100000   # whatever is left of BUDGET_S
finish
