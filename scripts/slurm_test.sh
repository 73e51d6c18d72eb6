#!/usr/bin/env bash
# End-to-end check of `triadapt sweep --slurm` on a real single-node Slurm (`make test-slurm`).
#
#   bash scripts/slurm_test.sh [BIN]        # BIN: the triadapt binary (default target/release/triadapt)
#
# As root on a Debian/Ubuntu machine it installs slurmctld, slurmd, slurm-client and munge when
# they are missing, writes /etc/slurm/slurm.conf for this host (one node, all CPUs), starts
# munged, slurmctld and slurmd, then:
#   1. writes a 4-run sweep (experiments/synthetic_rte.yaml; triadapt and lora x seeds 1, 2;
#      300 steps, a checkpoint every 20) into a temporary folder;
#   2. generates the submit script with `sweep --slurm --shard 0/2 --devices cpu` and runs it
#      (a 2-task array job plus the collect job);
#   3. while the array trains, `scontrol requeue`s one RUNNING task whose current run has a
#      checkpoint (the preemption path: SIGTERM, checkpoint, exit 75, requeue, resume);
#   4. waits for every job to end;
#   5. checks that the requeued run resumed from a step > 0 and that runs.csv has the 4 runs,
#      each once, all finished;
#   6. cancels leftover jobs and stops the daemons it started (packages stay installed).
# Without root, apt or installable packages it prints a line with SKIPPED and exits 0, so CI can
# call it unconditionally. Exit 1 on a failed check.
#
# Environment: SLURM_TEST_TIMEOUT (seconds for the jobs, default 600), SLURM_TEST_STEPS
# (max_steps per run, default 300), SLURM_TEST_KEEP=1 (keep the temporary folder).
set -uo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
BIN=${1:-target/release/triadapt}
T_START=$SECONDS
JOB_TIMEOUT=${SLURM_TEST_TIMEOUT:-600}
STEPS=${SLURM_TEST_STEPS:-300}

say() { printf '[slurm-test %4ds] %s\n' "$((SECONDS - T_START))" "$*"; }
skip() {
    say "SKIPPED: $*"
    exit 0
}

# ---------------------------------------------------------------------------------------------
# Preconditions
if [[ ! -x $BIN ]]; then
    say "FAIL: $BIN is not an executable (build it first: make build)"
    exit 1
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
[[ $(id -u) -eq 0 ]] || skip "not root (bringing up a local Slurm needs root); run as root to test the Slurm path"
command -v python3 >/dev/null || skip "python3 not found (used to read runs.csv and metrics.json)"

STARTED_DAEMONS=()   # "name:pidfile" of the daemons this script started
CONF=/etc/slurm/slurm.conf
CONF_BACKUP=""
TMP=""
ARRAY=""
COLLECT=""
FAILED=0
OWN_CLUSTER=0

daemon_pid() { [[ -r $1 ]] && cat "$1" 2>/dev/null; }

stop_daemons() {
    local i entry name pidfile pid t
    for ((i = ${#STARTED_DAEMONS[@]} - 1; i >= 0; i--)); do
        entry=${STARTED_DAEMONS[$i]}
        name=${entry%%:*}
        pidfile=${entry#*:}
        pid=$(daemon_pid "$pidfile")
        if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
            continue
        fi
        kill -TERM "$pid" 2>/dev/null
        for ((t = 0; t < 30; t++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) did not stop in 30 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null
        fi
        say "stopped $name (pid $pid)"
    done
    STARTED_DAEMONS=()
}

our_jobs() {
    local ids=()
    [[ -n $ARRAY ]] && ids+=("$ARRAY")
    [[ -n $COLLECT ]] && ids+=("$COLLECT")
    local IFS=,
    echo "${ids[*]}"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local jobs t
    jobs=$(our_jobs)
    if [[ -n $jobs ]] && command -v squeue >/dev/null; then
        if [[ -n $(squeue -h -j "$jobs" 2>/dev/null) ]]; then
            say "cancelling leftover jobs $jobs"
            # shellcheck disable=SC2086 # one argument per job id
            scancel ${jobs//,/ } 2>/dev/null
            for ((t = 0; t < 60; t++)); do
                [[ -z $(squeue -h -j "$jobs" 2>/dev/null) ]] && break
                sleep 1
            done
            if [[ -n $(squeue -h -j "$jobs" 2>/dev/null) ]]; then
                say "jobs still listed 60 s after scancel:"
                squeue -j "$jobs" 2>&1 | sed 's/^/  /'
            fi
        fi
    fi
    stop_daemons
    if [[ -n $CONF_BACKUP ]]; then
        mv -f "$CONF_BACKUP" "$CONF" && say "restored the earlier $CONF"
    fi
    if [[ -n $TMP && -d $TMP ]]; then
        if [[ ${SLURM_TEST_KEEP:-0} == 1 || $FAILED -ne 0 || $rc -ne 0 ]]; then
            say "kept $TMP for inspection"
        else
            rm -rf "$TMP"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# Everything Slurm and our jobs show, for a failure.
dump_state() {
    local jobs f
    jobs=$(our_jobs)
    echo "---- squeue -a"
    squeue -a 2>&1 | head -40
    echo "---- sinfo -N -l"
    sinfo -N -l 2>&1 | head -10
    if [[ -n $jobs ]]; then
        for j in ${jobs//,/ }; do
            echo "---- scontrol show job $j"
            scontrol show job "$j" 2>&1 | head -120
        done
    fi
    if [[ -n $TMP && -d $TMP/out/slurm ]]; then
        for f in "$TMP"/out/slurm/*; do
            [[ -f $f ]] || continue
            echo "---- $f (last 30 lines)"
            tail -n 30 "$f"
        done
    fi
    if [[ -n $TMP && -d $TMP/out/runs ]]; then
        for f in "$TMP"/out/runs/*/train.log; do
            [[ -f $f ]] || continue
            echo "---- $f (last 8 lines)"
            tail -n 8 "$f"
        done
    fi
    if ((OWN_CLUSTER)); then
        for f in /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; do
            [[ -f $f ]] || continue
            echo "---- $f (last 25 lines)"
            tail -n 25 "$f"
        done
    fi
    echo "----"
}

fail() {
    say "FAIL: $*"
    FAILED=1
}

# ---------------------------------------------------------------------------------------------
# Bring up a single-node Slurm (or use one that is already up on this machine)
have_slurm_binaries() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null &&
        command -v munged >/dev/null && command -v munge >/dev/null
}

if command -v scontrol >/dev/null && scontrol ping 2>/dev/null | grep -q 'is UP' && sinfo -h -o '%t' 2>/dev/null | grep -q .; then
    say "a Slurm controller is already up on this machine: using it (its daemons are left running)"
else
    OWN_CLUSTER=1
    if ! have_slurm_binaries; then
        command -v apt-get >/dev/null || skip "Slurm is not installed and there is no apt-get to install it"
        say "installing slurmctld slurmd slurm-client munge (apt-get)"
        # Keep the packages' init scripts from starting daemons: this script starts its own.
        POLICY=/usr/sbin/policy-rc.d
        POLICY_OURS=0
        if [[ ! -e $POLICY ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$POLICY" && chmod 755 "$POLICY" && POLICY_OURS=1
        fi
        export DEBIAN_FRONTEND=noninteractive
        ok=1
        timeout 600 apt-get update -qq >"${TMPDIR:-/tmp}/slurm_test_apt.log" 2>&1 || ok=0
        if ((ok)); then
            timeout 900 apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confdef \
                -o Dpkg::Options::=--force-confold slurmctld slurmd slurm-client munge \
                >>"${TMPDIR:-/tmp}/slurm_test_apt.log" 2>&1 || ok=0
        fi
        ((POLICY_OURS)) && rm -f "$POLICY"
        if ((!ok)) || ! have_slurm_binaries; then
            tail -n 15 "${TMPDIR:-/tmp}/slurm_test_apt.log" | sed 's/^/  apt: /'
            skip "could not install the Slurm packages with apt-get (log: ${TMPDIR:-/tmp}/slurm_test_apt.log)"
        fi
        say "packages installed"
    fi

    # munge: a key, its folders, the daemon (reuse a running munged).
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    if id munge >/dev/null 2>&1; then
        chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    fi
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    chmod 755 /run/munge
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munged is already running: using it"
    else
        # as the munge user where there is one (the packages' way: no warnings about ownership)
        if id munge >/dev/null 2>&1 && command -v runuser >/dev/null; then
            runuser -u munge -- munged 2>&1 | sed 's/^/  munged: /'
        else
            munged --force 2>&1 | sed 's/^/  munged: /'
        fi
        STARTED_DAEMONS+=("munged:/run/munge/munged.pid")
        for ((t = 0; t < 20; t++)); do
            munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
            sleep 0.5
        done
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 || {
            tail -n 20 /var/log/munge/munged.log 2>/dev/null
            fail "munged does not answer (munge -n | unmunge)"
            exit 1
        }
        say "started munged"
    fi

    # slurm.conf for this host: every CPU, RealMemory 90% of the machine's.
    HOST=$(hostname -s)
    NCPU=$(nproc)
    MEM_MB=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
    MARK="# written by triadapt scripts/slurm_test.sh"
    if [[ -f $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        CONF_BACKUP="$CONF.triadapt-backup"
        cp -p "$CONF" "$CONF_BACKUP"
        say "saved the existing $CONF (restored at the end)"
    fi
    cat >"$CONF" <<EOF
$MARK
ClusterName=local
SlurmctldHost=$HOST(127.0.0.1)
AuthType=auth/munge
CryptoType=crypto/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
KillWait=30
MinJobAge=600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    say "wrote $CONF (node $HOST, CPUs=$NCPU, RealMemory=$MEM_MB)"

    # Daemons left over by an earlier, killed run of this script would hold the ports.
    for pf in /run/slurmd.pid /run/slurmctld.pid; do
        pid=$(daemon_pid "$pf")
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && grep -qE 'slurm(ctld|d)' "/proc/$pid/comm" 2>/dev/null; then
            say "a daemon from an earlier run (pid $pid, $pf) is still running: stopping it"
            STARTED_DAEMONS+=("earlier:$pf")
            stop_daemons
        fi
    done

    # -c: start from a clean state (no jobs of an earlier run).
    if ! slurmctld -c; then
        tail -n 20 /var/log/slurm/slurmctld.log 2>/dev/null
        fail "slurmctld did not start"
        exit 1
    fi
    STARTED_DAEMONS+=("slurmctld:/run/slurmctld.pid")
    for ((t = 0; t < 30; t++)); do
        scontrol ping 2>/dev/null | grep -q 'is UP' && break
        sleep 1
    done
    if ! slurmd -c; then
        tail -n 20 /var/log/slurm/slurmd.log 2>/dev/null
        fail "slurmd did not start"
        exit 1
    fi
    STARTED_DAEMONS+=("slurmd:/run/slurmd.pid")
    say "started slurmctld and slurmd"
fi

# Wait for an idle node.
idle=0
for ((t = 0; t < 90; t++)); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qE '^(idle|mix)'; then
        idle=1
        break
    fi
    sleep 1
done
if ((!idle)); then
    fail "no idle node after 90 s"
    dump_state
    scontrol show node 2>&1 | head -30
    exit 1
fi
say "sinfo: $(sinfo -h -o '%P %a %D %t %C' | head -1) (partition avail nodes state cpus A/I/O/T)"

# ---------------------------------------------------------------------------------------------
# 1. The sweep
TMP=$(mktemp -d "${TMPDIR:-/tmp}/triadapt-slurm-test.XXXXXX")
chmod 755 "$TMP"
OUT=$TMP/out
SWEEP=$TMP/slurm_test.yaml
cat >"$SWEEP" <<EOF
name: slurm_test
out: $OUT
base: $REPO/experiments/synthetic_rte.yaml
methods: [triadapt, lora]
seeds: [1, 2]
set:
  max_steps: $STEPS
  save_steps: 20
  log_steps: 10
  eval_steps: 150
  method.triadapt.warmup_steps: 10
  method.triadapt.interval: 10
EOF
if ! "$BIN" sweep "$SWEEP" --dry-run >"$TMP/dry_run.txt" 2>&1; then
    cat "$TMP/dry_run.txt"
    fail "triadapt sweep --dry-run failed"
    exit 1
fi
# run index -> id (the shard of run i is i % 2)
mapfile -t RUN_IDS < <(awk '$1 ~ /^[0-9]+$/ && $2 ~ /^[0-9a-f]+$/ && length($2) == 12 { print $2 }' "$TMP/dry_run.txt")
if [[ ${#RUN_IDS[@]} -ne 4 ]]; then
    cat "$TMP/dry_run.txt"
    fail "expected 4 runs in the sweep, the dry run lists ${#RUN_IDS[@]}"
    exit 1
fi
say "sweep $SWEEP: 4 runs ${RUN_IDS[*]} (shard 0: ${RUN_IDS[0]} ${RUN_IDS[2]}; shard 1: ${RUN_IDS[1]} ${RUN_IDS[3]})"

# ---------------------------------------------------------------------------------------------
# 2. Submit
if ! "$BIN" sweep "$SWEEP" --slurm --shard 0/2 --devices cpu --sbatch-opts "--cpus-per-task=1" >"$TMP/submit.sh" 2>"$TMP/submit.err"; then
    cat "$TMP/submit.err"
    fail "triadapt sweep --slurm failed"
    exit 1
fi
# One thread per training process: the array's tasks get one CPU each (sbatch exports this).
export OMP_NUM_THREADS=1
T_SUBMIT=$SECONDS
if ! bash "$TMP/submit.sh" >"$TMP/submit.out" 2>&1; then
    cat "$TMP/submit.out"
    fail "the submit script failed"
    dump_state
    exit 1
fi
cat "$TMP/submit.out" | sed 's/^/  /'
ARRAY=$(grep -oE 'submitted array job [0-9]+' "$TMP/submit.out" | awk '{ print $4 }')
COLLECT=$(grep -oE 'collect job [0-9]+' "$TMP/submit.out" | awk '{ print $3 }')
if [[ -z $ARRAY || -z $COLLECT ]]; then
    fail "could not read the job ids from the submit script's output"
    dump_state
    exit 1
fi
say "array job $ARRAY, collect job $COLLECT"

# ---------------------------------------------------------------------------------------------
# 3. Requeue one running task whose current run has a checkpoint
last_logged_step() { # train.log -> the last "step N/M" line's N
    grep -oE '^step [0-9]+/' "$1" 2>/dev/null | tail -n 1 | grep -oE '[0-9]+'
}
newest_checkpoint_step() { # run dir -> N of the newest checkpoints/step-N
    local d
    d=$(ls -d "$1"/checkpoints/step-* 2>/dev/null | sort | tail -n 1)
    [[ -n $d ]] && echo $((10#${d##*step-}))
}
metrics_steps() { # run dir -> metrics.json "steps" (rewritten at every checkpoint and evaluation)
    grep -oE '"steps": *[0-9]+' "$1/metrics.json" 2>/dev/null | grep -oE '[0-9]+$'
}

REQ_TASK=""
REQ_RUN=""
REQ_CKPT=""
REQ_STEPS=""
REQ_LOGSTEP=""
MAX_PICK_STEP=$((STEPS * 2 / 3)) # late enough to have a checkpoint, early enough not to finish first
for ((t = 0; t < 240; t++)); do
    if [[ -z $(squeue -h -j "$ARRAY" 2>/dev/null) ]]; then
        break
    fi
    while read -r jid state; do
        [[ $state == R ]] || continue
        task=${jid##*_}
        [[ $task =~ ^[0-9]+$ ]] || continue
        # the run this task trains now: of its shard's runs, the one with a train.log and no row.json
        for ((i = task; i < ${#RUN_IDS[@]}; i += 2)); do
            dir=$OUT/runs/${RUN_IDS[$i]}
            [[ -f $dir/train.log && ! -f $dir/row.json ]] || continue
            ms=$(metrics_steps "$dir")
            ck=$(newest_checkpoint_step "$dir")
            st=$(last_logged_step "$dir/train.log")
            [[ -n $ck && -n $st ]] || continue
            ((ck > 0 && st <= MAX_PICK_STEP)) || continue
            REQ_TASK=$jid
            REQ_RUN=${RUN_IDS[$i]}
            REQ_CKPT=$ck
            REQ_LOGSTEP=$st
            REQ_STEPS=$ms
            break 2
        done
    done < <(squeue -h -r -j "$ARRAY" -o '%i %t' 2>/dev/null)
    [[ -n $REQ_TASK ]] && break
    sleep 0.5
done

if [[ -z $REQ_TASK ]]; then
    fail "found no running array task with a checkpointed run in progress to requeue"
    dump_state
    exit 1
fi
say "requeueing task $REQ_TASK: run $REQ_RUN at step $REQ_LOGSTEP (metrics.json steps ${REQ_STEPS:-?}, newest checkpoint step-$REQ_CKPT)"
requeued=0
for ((t = 0; t < 5; t++)); do
    if scontrol requeue "$REQ_TASK" 2>"$TMP/requeue.err"; then
        requeued=1
        break
    fi
    sed 's/^/  scontrol: /' "$TMP/requeue.err"
    sleep 1
done
if ((!requeued)); then
    fail "scontrol requeue $REQ_TASK failed"
    dump_state
    exit 1
fi
T_REQUEUE=$SECONDS
# Slurm holds a requeued job back for about two minutes (Reason=BeginTime); as root, let it start
# at once. Only speeds the test up: without it the task starts later and the checks are the same.
for ((t = 0; t < 60; t++)); do
    st=$(squeue -h -j "$REQ_TASK" -o '%t %r' 2>/dev/null)
    if [[ $st == "PD BeginTime" ]]; then
        if scontrol update JobId="$REQ_TASK" StartTime=now 2>/dev/null; then
            say "task $REQ_TASK is pending again (BeginTime): StartTime set to now"
        fi
        break
    fi
    [[ -z $st || $st == R* ]] && break
    sleep 0.5
done

# ---------------------------------------------------------------------------------------------
# 4. Wait for the array and the collect job
JOBS=$(our_jobs)
last_seen=""
done_jobs=0
while ((SECONDS - T_SUBMIT < JOB_TIMEOUT)); do
    q=$(squeue -h -r -j "$JOBS" -o '%i %t %r' 2>/dev/null | sort | tr '\n' ';')
    if [[ -z $q ]]; then
        done_jobs=1
        break
    fi
    if [[ $q != "$last_seen" ]]; then
        say "squeue: ${q%;}"
        last_seen=$q
    fi
    sleep 2
done
if ((!done_jobs)); then
    fail "jobs $JOBS still in the queue after ${JOB_TIMEOUT} s"
    dump_state
    exit 1
fi
say "all jobs ended ($((SECONDS - T_SUBMIT)) s after submitting, $((SECONDS - T_REQUEUE)) s after the requeue)"

# ---------------------------------------------------------------------------------------------
# 5. Checks
echo
# 5a. The requeued run resumed from its checkpoint, not from step 0.
LOG=$OUT/runs/$REQ_RUN/train.log
resume_line=$(grep -E '^resuming .* from step [0-9]+ ' "$LOG" 2>/dev/null | tail -n 1)
resume_step=$(sed -nE 's/^resuming .* from step ([0-9]+) .*/\1/p' <<<"$resume_line")
if [[ -n $resume_step ]] && ((resume_step > 0 && resume_step >= REQ_CKPT)); then
    if ((resume_step % 20)); then how="the checkpoint it wrote on SIGTERM"; else how="a checkpoint (every 20 steps)"; fi
    say "PASS: the requeued run $REQ_RUN resumed from step $resume_step of $STEPS, $how (newest checkpoint when requeued: step $REQ_CKPT): \"$resume_line\""
else
    fail "the requeued run $REQ_RUN has no 'resuming ... from step N' line with N >= $REQ_CKPT > 0 in $LOG (found: '${resume_line:-none}')"
fi

# The first attempt of the task: the sweep reported the run as interrupted with a checkpoint
# (absent when Slurm killed the task before the run could save one: not a failure, it then
# resumes from the newest periodic checkpoint, checked above).
TASK_LOG=$OUT/slurm/$REQ_TASK.log
if grep -q "^$REQ_RUN .*interrupted, checkpoint saved" "$TASK_LOG" 2>/dev/null; then
    say "PASS: $TASK_LOG: \"$(grep -m1 "^$REQ_RUN .*interrupted, checkpoint saved" "$TASK_LOG")\""
else
    say "note: $TASK_LOG has no 'interrupted, checkpoint saved' line for $REQ_RUN"
fi

# 5b. The requeued task really ran twice (Slurm's restart count).
restarts=$(scontrol show job "$REQ_TASK" 2>/dev/null | grep -oE 'Restarts=[0-9]+' | head -1 | cut -d= -f2)
if [[ -n $restarts ]] && ((restarts >= 1)); then
    say "PASS: task $REQ_TASK was requeued (Restarts=$restarts)"
elif [[ -z $restarts ]]; then
    say "note: scontrol no longer shows task $REQ_TASK (restart count not checked)"
else
    fail "task $REQ_TASK shows Restarts=$restarts (expected >= 1)"
fi

# 5c. Every array task and the collect job completed.
states=$(scontrol show job "$ARRAY" 2>/dev/null | grep -oE '^JobId=[0-9]+ ArrayJobId=[0-9]+ ArrayTaskId=[0-9]+|JobState=[A-Z_]+ ' | paste -d' ' - - | awk '{ split($3, a, "="); split($4, b, "="); print a[2] "=" b[2] }' | sort | tr '\n' ' ' | sed 's/ $//')
cstate=$(scontrol show job "$COLLECT" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' | head -1 | cut -d= -f2)
if [[ -n $states ]]; then
    if [[ "$states " =~ ^([0-9]+=COMPLETED\ )+$ && $(wc -w <<<"$states") -eq 2 ]]; then
        say "PASS: array tasks completed ($states)"
    else
        fail "array tasks did not all complete: $states"
    fi
else
    say "note: scontrol no longer shows the array job (task states not checked)"
fi
if [[ -z $cstate || $cstate == COMPLETED ]]; then
    say "PASS: collect job ${cstate:-ended} ($(ls "$OUT"/slurm/collect-*.log 2>/dev/null | head -1))"
else
    fail "collect job $COLLECT ended $cstate"
fi

# 5d. runs.csv: exactly the 4 runs, each once, all finished.
CSV=$OUT/runs.csv
csv_report=$(python3 - "$CSV" "${RUN_IDS[@]}" <<'EOF'
import csv, sys
path, want = sys.argv[1], sys.argv[2:]
try:
    rows = list(csv.DictReader(open(path, newline="")))
except OSError as e:
    print(f"FAIL cannot read {path}: {e}")
    sys.exit()
ids = [r.get("run_id", "") for r in rows]
problems = []
if len(rows) != len(want):
    problems.append(f"{len(rows)} rows, expected {len(want)}")
if sorted(ids) != sorted(want):
    problems.append(f"run ids {sorted(ids)}, expected {sorted(want)} (each once)")
bad = [f"{r.get('run_id')}={r.get('status')} {r.get('error') or ''}".strip() for r in rows if r.get("status") != "finished"]
if bad:
    problems.append("not finished: " + "; ".join(bad))
if problems:
    print("FAIL " + "; ".join(problems))
else:
    summary = ", ".join(f"{r['run_id']} {r['method']} seed {r['seed']} {r.get('main_metric','')}={float(r['best_score']):.3f} {float(r['wall_seconds']):.1f}s" for r in rows)
    print(f"PASS {len(rows)} rows, each run once, all finished: {summary}")
EOF
)
if [[ $csv_report == PASS* ]]; then
    say "PASS: runs.csv: ${csv_report#PASS }"
else
    fail "runs.csv ($CSV): ${csv_report#FAIL }"
fi

echo
if ((FAILED)); then
    dump_state
    say "slurm test FAILED (total $((SECONDS - T_START)) s)"
    exit 1
fi
say "summary: Slurm array ($ARRAY, 2 tasks) + collect ($COLLECT); task $REQ_TASK requeued at step $REQ_LOGSTEP of run $REQ_RUN, resumed from step $resume_step; runs.csv 4/4 finished; jobs took $((T_REQUEUE - T_SUBMIT)) s to the requeue + $((SECONDS - T_REQUEUE)) s after"
say "slurm test PASSED (total $((SECONDS - T_START)) s)"
