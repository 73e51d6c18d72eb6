#!/usr/bin/env python3
"""`make bench`: triadapt against HF transformers + PEFT on the same shapes, one process per
measurement, alternating between the two tools, then the tables.

Each measurement is one process, `triadapt bench --json` or `scripts/bench_peft.py --json`, so
that its peak resident memory is its own. For every shape the methods are run in pairs
(triadapt's, then PEFT's; the next pair the other way round), so that a change of machine load
during the suite falls on both tools alike. The libtorch matmul rate (2048^3 fp32) is measured at
the start and at the end of the suite, in the same way, with the same thread count.

Writes, under --out (default results/bench):
    runs.jsonl    the measurements, appended one by one as they finish
    runs.csv      one row per measurement (every field both tools print, plus the load average)
    summary.csv   one row per comparison (triadapt, PEFT, ratio)
    table.md      the markdown table with date, machine, load and the matmul rate

Rounds: with the cpu plan, LoRA and AdaLoRA (the methods with throughput targets) are measured
in a second round with each pair in the opposite order, and the table shows the means: a shared
machine's load moves single measurements by up to about 10 %.

Plans: `cpu` (default; about 10 minutes on 2 cores), `quick` (the tiny shape, seconds; for
checking the machinery), `gpu` (bf16 and fp32, larger batches, for a GPU; scripts/gpu_check.sh runs its own bench step).

    .venv/bin/python scripts/bench_suite.py --bin target/release/triadapt --out results/bench
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (shape, batch, seq, warm-up steps, timed steps)
PLANS = {
    "cpu": [("small", 8, 128, 2, 5), ("base", 4, 128, 2, 4)],
    "quick": [("tiny", 8, 128, 2, 3)],
    "gpu": [("base", 32, 128, 5, 30), ("base", 16, 512, 3, 15)],
}
# (triadapt method, PEFT method or None): compared in pairs; triadapt-only rows compare with
# triadapt's LoRA at the same average rank.
PAIRS = [("lora", "lora"), ("adalora", "adalora"), ("full", "full"), ("triadapt", None), ("triadapt-grow", None)]


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def gpu_model() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "no nvidia-smi"


class GpuMemoryPoller:
    """Largest GPU memory nvidia-smi reports for one process while it runs (MiB)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10).stdout
                for line in out.splitlines():
                    pid, mem = [x.strip() for x in line.split(",")[:2]]
                    if int(pid) == self.pid:
                        self.peak = max(self.peak, float(mem))
            except (OSError, subprocess.SubprocessError, ValueError):
                return
            self._stop.wait(0.25)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


def run_json(cmd: list[str], poll_gpu: bool) -> dict:
    """Runs one measurement and returns its JSON line (with the load average and wall time)."""
    print("  $ " + " ".join(cmd), file=sys.stderr, flush=True)
    load = load_average()
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    poller = GpuMemoryPoller(proc.pid) if poll_gpu else None
    out, err = proc.communicate()
    gpu_peak = poller.stop() if poller else None
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    row = json.loads(out.strip().splitlines()[-1])
    row["load_before"] = load
    row["process_s"] = round(time.time() - t0, 1)
    if gpu_peak is not None:
        row["gpu_mem_nvsmi_mb"] = gpu_peak
    print(f"    {row.get('tool', '')} {row.get('method', '')}: {row.get('examples_per_s', 0):.2f} ex/s, median {row.get('step_ms_median', 0):.0f} ms, {row['process_s']} s, load {load}", file=sys.stderr, flush=True)
    return row


def fmt(v, digits=1):
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/triadapt")
    ap.add_argument("--python", default=sys.executable, help="the interpreter with torch, transformers and peft")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--plan", default="cpu", choices=sorted(PLANS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="comma-separated: fp32, bf16 (CUDA)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="LibTorch intra-op threads, both tools")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--methods", default=",".join(p[0] for p in PAIRS), help="triadapt methods to run (PEFT's peers follow)")
    ap.add_argument("--peft-optim", default="fused", choices=["fused", "foreach", "forloop"])
    ap.add_argument("--adamw", default="torch", choices=["torch", "legacy_hf"], help="AdamW's arithmetic, both tools (legacy_hf: old HF transformers', as the paper's experiments; PEFT's then ignores --peft-optim)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of the --repeat methods (default: 2 for the cpu plan, else 1); later rounds run each pair in the opposite order")
    ap.add_argument("--repeat", default="lora,adalora", help="the methods measured again in later rounds (the ones with throughput targets)")
    args = ap.parse_args()

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = args.device.startswith("cuda")
    wanted = args.methods.split(",")
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = load_average()
    common = ["--device", args.device, "--threads", str(args.threads), "--json"]

    def matmul() -> float:
        return run_json([args.bin, "bench", "--matmul", *common], False)["matmul_gflops"]

    print(f"bench suite: plan {args.plan}, {args.threads} threads, device {args.device}, load {load_start}", file=sys.stderr)
    peak_start = matmul()
    rows = []
    # Every measurement is appended as it finishes: a suite cut short keeps what it measured.
    partial = open(out_dir / "runs.jsonl", "w")
    gpu_name = gpu_model() if cuda else ""

    def write_outputs(rows, peak_end):
        """runs.csv, summary.csv and table.md from the measurements so far."""
        rows = [dict(r) for r in rows]
        peak = max(peak_start, peak_end or 0.0)
        finished = datetime.datetime.now(datetime.timezone.utc)
        load_end = load_average()

        # FLOPs: the same model count for both tools (triadapt's formula for that configuration).
        flops = {(r["model_config"], r["method"], r["batch"], r["seq"], r["precision"]): r["model_gflop_per_step"] for r in rows if r["tool"] == "triadapt"}
        for r in rows:
            g = flops.get((r["model_config"], r["method"], r["batch"], r["seq"], r["precision"]))
            if g is not None:
                r["model_gflop_per_step"] = g
                r["achieved_gflops"] = g / (r["step_ms_median"] / 1e3)
                r["matmul_fraction"] = r["achieved_gflops"] / peak
            r["train_mem_mb"] = r["peak_rss_mb"] - r["rss_before_model_mb"]

        keys = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        with open(out_dir / "runs.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)

        def find(tool, method, shape, batch, seq, precision):
            """The measurement of one configuration; with several rounds, their mean (peak
            memory: the largest)."""
            found = [r for r in rows if (r["tool"], r["method"], r["model_config"], r["batch"], r["seq"], r["precision"]) == (tool, method, shape, batch, seq, precision)]
            if not found:
                return None
            merged = dict(found[0])
            for k, v in found[0].items():
                values = [r.get(k) for r in found]
                if isinstance(v, (int, float)) and not isinstance(v, bool) and all(isinstance(x, (int, float)) for x in values):
                    merged[k] = max(values) if "mem" in k or "rss" in k else sum(values) / len(values)
            merged["rounds"] = len(found)
            return merged

        summary = []
        for precision in args.precision.split(","):
            for shape, batch, seq, _, _ in PLANS[args.plan]:
                for ours_m, theirs_m in PAIRS:
                    ours = find("triadapt", ours_m, shape, batch, seq, precision)
                    if ours is None:
                        continue
                    peer_tool, peer_m = ("peft", theirs_m) if theirs_m else ("triadapt", "lora")
                    peer = find(peer_tool, peer_m, shape, batch, seq, precision)
                    if peer is None:
                        continue
                    summary.append({
                        "shape": shape, "batch": batch, "seq": seq, "precision": precision,
                        "method": ours_m, "peer": f"{peer_tool} {peer_m}", "rounds": min(ours["rounds"], peer["rounds"]),
                        "ours_ex_s": ours["examples_per_s"], "peer_ex_s": peer["examples_per_s"],
                        "throughput_ratio": ours["examples_per_s"] / peer["examples_per_s"],
                        "step_time_ratio": ours["step_ms_median"] / peer["step_ms_median"],
                        "cpu_time_ratio": (ours["cpu_ms_per_step"] / peer["cpu_ms_per_step"]) if ours.get("cpu_ms_per_step") and peer.get("cpu_ms_per_step") else None,
                        "ours_median_ms": ours["step_ms_median"], "ours_iqr_ms": ours["step_ms_p75"] - ours["step_ms_p25"],
                        "peer_median_ms": peer["step_ms_median"], "peer_iqr_ms": peer["step_ms_p75"] - peer["step_ms_p25"],
                        "ours_controller_ms": ours["controller_ms_per_step"], "peer_controller_ms": peer["controller_ms_per_step"],
                        "ours_peak_rss_mb": ours["peak_rss_mb"], "peer_peak_rss_mb": peer["peak_rss_mb"],
                        "ours_train_mem_mb": ours["train_mem_mb"], "peer_train_mem_mb": peer["train_mem_mb"],
                        "ours_gpu_mem_mb": ours.get("gpu_mem_nvsmi_mb"), "peer_gpu_mem_mb": peer.get("gpu_mem_nvsmi_mb"),
                        "ours_gflops": ours.get("achieved_gflops"), "peer_gflops": peer.get("achieved_gflops"),
                        "ours_matmul_fraction": ours.get("matmul_fraction"), "peer_matmul_fraction": peer.get("matmul_fraction"),
                        "ours_avg_rank": f"{ours['avg_rank_start']:.2f}->{ours['avg_rank_end']:.2f}" if ours["adapted_matrices"] else "",
                    })
        with open(out_dir / "summary.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(summary[0].keys()) if summary else ["shape"])
            w.writeheader()
            w.writerows(summary)

        device_desc = f"GPU {gpu_name}" if cuda else f"{cpu_model()}, {os.cpu_count()} cores"
        peft_versions = next((r["versions"] for r in rows if r["tool"] == "peft"), "")
        lines = [
            f"Measured {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC on {platform.node()} ({device_desc}, {platform.system()} {platform.release()}); "
            f"{args.threads} LibTorch threads for both tools; load average (1/5/15 min) {load_start} at the start, {load_end} at the end.",
            f"LibTorch fp32 matmul 2048^3 (fastest of 10) in the same run: {peak_start:.0f} GFLOP/s at the start, {fmt(peak_end, 0)} at the end; the peak is the larger, {peak:.0f}. "
            f"Peer: {peft_versions}, torch AdamW ({args.peft_optim}).",
            "",
            "| shape | batch x seq | prec. | method | vs | triadapt ex/s | peer ex/s | ratio | step ms, median (IQR) triadapt / peer | CPU-time ratio | controller ms/step | peak RSS MiB (training part) triadapt / peer | GFLOP/s (of matmul peak) triadapt / peer |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in summary:
            mem = f"{s['ours_peak_rss_mb']:.0f} ({s['ours_train_mem_mb']:.0f}) / {s['peer_peak_rss_mb']:.0f} ({s['peer_train_mem_mb']:.0f})"
            if s["ours_gpu_mem_mb"] is not None:
                mem = f"GPU {fmt(s['ours_gpu_mem_mb'], 0)} / {fmt(s['peer_gpu_mem_mb'], 0)}"
            method = s["method"] + (f" (avg rank {s['ours_avg_rank']})" if s["method"].startswith("triadapt") else "") + (f" ×{s['rounds']}" if s["rounds"] > 1 else "")
            ratio = s["throughput_ratio"]
            gf = f"{fmt(s['ours_gflops'])} ({fmt(100 * s['ours_matmul_fraction'] if s['ours_matmul_fraction'] else None, 0)}%) / {fmt(s['peer_gflops'])} ({fmt(100 * s['peer_matmul_fraction'] if s['peer_matmul_fraction'] else None, 0)}%)"
            lines.append(
                f"| {s['shape']} | {s['batch']} x {s['seq']} | {s['precision']} | {method} | {s['peer']} | {s['ours_ex_s']:.2f} | {s['peer_ex_s']:.2f} | **{ratio:.2f}x** | "
                f"{s['ours_median_ms']:.0f} ({s['ours_iqr_ms']:.0f}) / {s['peer_median_ms']:.0f} ({s['peer_iqr_ms']:.0f}) | {fmt(s['cpu_time_ratio'], 2)} | "
                f"{s['ours_controller_ms']:.2f} / {s['peer_controller_ms']:.2f} | {mem} | {gf} |"
            )
        lines += [
            "",
            "ratio = triadapt examples/s / peer examples/s (median step times; above 1 means triadapt is faster). "
            "For `triadapt` (started at the average rank) and `triadapt-grow` (growing from rank r/2 during the timed steps) the peer is triadapt's own LoRA at rank "
            f"{args.rank}, so the ratio is LoRA's step time / TriAdaptLoRA's. CPU-time ratio: process CPU time per step, triadapt / peer (below 1 means less CPU work). "
            "Peak RSS: the whole process (Python's imports included); in brackets the part above the resident set just before the model was built. "
            "GFLOP/s: the same matmul FLOP count for both tools (src/bench/flops.rs `model_flops`) over the median step time. "
            "×N: the pair was measured in N rounds, in opposite orders, and the row shows the mean of the rounds' figures (peak memory: the largest).",
        ]
        if peak_end is None:
            lines.append("")
            lines.append(f"(Partial: {len(rows)} measurements so far; the matmul rate is the one at the start.)")
        table = "\n".join(lines) + "\n"
        (out_dir / "table.md").write_text(table)
        return table, finished

    rounds = args.rounds if args.rounds is not None else (2 if args.plan == "cpu" else 1)
    repeat = args.repeat.split(",")
    flip = False
    peer_first = {}
    for round_no in range(1, rounds + 1):
        for precision in args.precision.split(","):
            for shape, batch, seq, warmup, steps in PLANS[args.plan]:
                shape_args = ["--model-config", shape, "--batch", str(batch), "--seq", str(seq), "--warmup", str(warmup), "--steps", str(steps), "--precision", precision, "--rank", str(args.rank)]
                for ours, theirs in PAIRS:
                    if ours not in wanted or (round_no > 1 and ours not in repeat):
                        continue
                    cmds = [("triadapt", [args.bin, "bench", "--method", ours, "--adamw", args.adamw, *shape_args, *common])]
                    if theirs:
                        cmds.append(("peft", [args.python, str(HERE / "bench_peft.py"), "--method", theirs, "--optim", args.peft_optim, "--adamw", args.adamw, *shape_args, *common]))
                    if len(cmds) == 2:
                        # Round 1 alternates from pair to pair; each later round flips a pair's
                        # round-1 order.
                        key = (precision, shape, ours)
                        if round_no == 1:
                            peer_first[key] = flip
                            flip = not flip
                        if peer_first[key] != (round_no % 2 == 0):
                            cmds.reverse()
                    for _, cmd in cmds:
                        row = run_json(cmd, cuda)
                        row["round"] = round_no
                        rows.append(row)
                        partial.write(json.dumps(row) + "\n")
                        partial.flush()
                        write_outputs(rows, None)
    table, finished = write_outputs(rows, matmul())
    print(table)
    print(f"wrote {out_dir}/runs.csv, summary.csv, table.md ({(finished - started).total_seconds() / 60:.1f} min)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
