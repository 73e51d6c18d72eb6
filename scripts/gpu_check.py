#!/usr/bin/env python3
"""Checks and tables for scripts/gpu_check.sh (one subcommand per step; stdlib only, except
`predict-inputs` and `compare-logits`, which read the safetensors fixture with torch).

Each subcommand prints its report, writes a one-line summary to --key (the step's key numbers in
summary.md) and exits 1 when its check fails. Run by gpu_check.sh; not meant to be called by hand.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import os
import sys

FIXTURE = "tests/fixtures/oracle/v3_batch.safetensors"


def write_key(path: str | None, text: str) -> None:
    print(f"key: {text}")
    if path:
        with open(path, "w") as f:
            f.write(text + "\n")


def read_jsonl(path: str) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


# ---------------------------------------------------------------- predict_fp32

def load_fixture(path: str) -> dict:
    from safetensors.torch import load_file

    return load_file(path)


def cmd_predict_inputs(a) -> int:
    d = load_fixture(a.fixture)
    with open(a.out, "w") as f:
        for ids, mask in zip(d["input_ids"], d["attention_mask"]):
            n = int(mask.sum())
            f.write(json.dumps({"input_ids": ids[:n].tolist()}) + "\n")
    print(f"wrote {len(d['input_ids'])} inputs to {a.out}")
    return 0


def max_abs(xs: list, ys: list) -> float:
    if len(xs) != len(ys):
        return float("inf")
    worst = 0.0
    for x, y in zip(xs, ys):
        if len(x) != len(y):
            return float("inf")
        for u, v in zip(x, y):
            worst = max(worst, abs(u - v)) if math.isfinite(u) and math.isfinite(v) else float("inf")
    return worst


def cmd_compare_logits(a) -> int:
    hf = load_fixture(a.fixture)["logits"].tolist()
    try:
        dev = [r["logits"] for r in read_jsonl(a.device_out)]
        cpu = [r["logits"] for r in read_jsonl(a.cpu_out)]
    except (OSError, ValueError, KeyError) as e:
        write_key(a.key, f"FAIL: cannot read the predict outputs ({e})")
        return 1
    d_hf, d_cpu, c_hf = max_abs(dev, hf), max_abs(dev, cpu), max_abs(cpu, hf)
    report = {"device_vs_hf": d_hf, "device_vs_cpu": d_cpu, "cpu_vs_hf": c_hf, "tol": a.tol, "rows": len(dev)}
    with open(a.report, "w") as f:
        json.dump(report, f, indent=2)
    ok = max(d_hf, d_cpu, c_hf) <= a.tol
    write_key(a.key, f"{'ok' if ok else 'FAIL'}: max abs logit diff {a.device} vs HF {d_hf:.2e}, vs cpu {d_cpu:.2e} (cpu vs HF {c_hf:.2e}; tol {a.tol:g}, {len(dev)} rows)")
    return 0 if ok else 1


# ---------------------------------------------------------------- bf16_smoke

def cmd_smoke_check(a) -> int:
    bad, parts = [], []
    for m in a.methods.split():
        path = os.path.join(a.dir, f"{m}.json")
        try:
            r = read_jsonl(path)[-1]
        except (OSError, ValueError, IndexError) as e:
            bad.append(f"{m}: no result ({type(e).__name__})")
            continue
        loss = r.get("final_loss")
        if not finite(loss) or r.get("precision") != "bf16":
            bad.append(f"{m}: final_loss {loss}, precision {r.get('precision')}")
        else:
            parts.append(f"{m} {loss:.3f}")
    text = ("ok: bf16 final loss " if not bad else "FAIL: " + "; ".join(bad) + " | ") + ", ".join(parts)
    write_key(a.key, text)
    return 1 if bad else 0


# ---------------------------------------------------------------- train80

def last_curve_row(run: str) -> dict | None:
    try:
        with open(os.path.join(run, "curve.csv")) as f:
            rows = list(csv.DictReader(f))
        return rows[-1] if rows else None
    except OSError:
        return None


def run_summary(run: str) -> dict:
    out = {"run": run, "status": None, "final_loss": None, "total_rank": None, "dev_metric": None, "error": None, "rank_pattern": None}
    try:
        with open(os.path.join(run, "metrics.json")) as f:
            m = json.load(f)
        out["status"], out["error"], out["total_rank"] = m.get("status"), m.get("error"), m.get("total_rank")
        out["dev_metric"] = m.get("best_score")
    except (OSError, ValueError) as e:
        out["error"] = f"no metrics.json ({type(e).__name__})"
    row = last_curve_row(run)
    if row:
        try:
            out["final_loss"] = float(row["loss"])
        except (KeyError, ValueError):
            pass
    try:
        with open(os.path.join(run, "rank_pattern.json")) as f:
            out["rank_pattern"] = json.load(f)
    except (OSError, ValueError):
        pass
    return out


def cmd_train_check(a) -> int:
    methods = a.methods.split()
    fails, notes, rows = [], [], []
    report, n_ok = {}, 0
    for m in methods:
        runs = {tag: run_summary(os.path.join(a.dir, f"{m}_{tag}")) for tag in ("dev_fp32", "dev_bf16", "cpu_fp32")}
        for tag, r in runs.items():
            if r["status"] == "finished" and finite(r["final_loss"]):
                n_ok += 1
            else:
                fails.append(f"{m}_{tag}: status {r['status']}, loss {r['final_loss']}, error {r['error']}")
        fp, bf, cp = (runs[t]["final_loss"] for t in ("dev_fp32", "dev_bf16", "cpu_fp32"))
        d_bf = abs(bf - fp) if finite(fp) and finite(bf) else None
        d_dc = abs(fp - cp) if finite(fp) and finite(cp) else None
        if d_bf is not None and d_bf > a.fail_loss_diff:
            fails.append(f"{m}: bf16 vs fp32 final loss differ by {d_bf:.3f} (> {a.fail_loss_diff})")
        elif d_bf is not None and d_bf > a.warn_loss_diff:
            notes.append(f"{m}: bf16 vs fp32 final loss differ by {d_bf:.3f} (> {a.warn_loss_diff}, reported only)")
        ranks = "n/a"
        if m in ("triadapt", "increlora", "adalora"):
            rp_dev, rp_cpu = runs["dev_fp32"]["rank_pattern"], runs["cpu_fp32"]["rank_pattern"]
            if rp_dev is None or rp_cpu is None:
                ranks = "missing"
            elif rp_dev == rp_cpu:
                ranks = "equal"
            else:
                diff = sorted(k for k in set(rp_dev) | set(rp_cpu) if rp_dev.get(k) != rp_cpu.get(k))
                ranks = f"differ in {len(diff)}"
                detail = ", ".join(f"{k}: {rp_dev.get(k)} vs {rp_cpu.get(k)}" for k in diff[:6])
                msg = f"{m}: rank_pattern {a.device} fp32 vs cpu fp32 differs in {len(diff)} matrices ({detail})"
                # Two CPU runs of one config must agree (training is deterministic on CPU); on a GPU,
                # tied importance scores may break differently: reported, not failed.
                (fails if a.strict_ranks else notes).append(msg)
        report[m] = {"runs": {t: {k: v for k, v in r.items() if k != "rank_pattern"} for t, r in runs.items()},
                     "bf16_vs_fp32_loss_diff": d_bf, "device_vs_cpu_loss_diff": d_dc, "rank_pattern_device_vs_cpu": ranks}
        fmt = lambda x: "-" if x is None else f"{x:.4f}"
        rows.append(f"| {m} | {fmt(fp)} | {fmt(bf)} | {fmt(cp)} | {fmt(d_bf)} | {fmt(d_dc)} | "
                    f"{runs['dev_fp32']['total_rank']} / {runs['cpu_fp32']['total_rank']} | {ranks} | "
                    f"{fmt(runs['dev_fp32']['dev_metric'])} / {fmt(runs['cpu_fp32']['dev_metric'])} |")
    with open(os.path.join(a.dir, "report.json"), "w") as f:
        json.dump({"fails": fails, "notes": notes, "methods": report}, f, indent=2)
    table = [f"final loss = the last curve.csv row; dev = {a.device}; diff = absolute difference",
             "",
             "| method | loss dev fp32 | loss dev bf16 | loss cpu fp32 | diff bf16 vs fp32 | diff dev vs cpu | total rank dev / cpu | rank_pattern dev vs cpu | best dev acc dev / cpu |",
             "|---|---|---|---|---|---|---|---|---|", *rows, ""]
    table += [f"- FAIL {x}" for x in fails] + [f"- note: {x}" for x in notes]
    with open(os.path.join(a.dir, "report.md"), "w") as f:
        f.write("\n".join(table) + "\n")
    print("\n".join(table))
    worst = max((report[m]["bf16_vs_fp32_loss_diff"] or 0.0) for m in methods) if methods else 0.0
    same = sum(1 for m in methods if report[m]["rank_pattern_device_vs_cpu"] == "equal")
    cmp_n = sum(1 for m in methods if m in ("triadapt", "increlora", "adalora"))
    text = (f"{'ok' if not fails else 'FAIL'}: {n_ok}/{3 * len(methods)} runs finished with a finite loss; "
            f"max bf16-vs-fp32 final-loss diff {worst:.3f}; rank patterns {a.device} = cpu {same}/{cmp_n}"
            + (f"; {len(notes)} note(s)" if notes else "") + (f"; {fails[0]}" if fails else ""))
    write_key(a.key, text)
    return 1 if fails else 0


# ---------------------------------------------------------------- eval_cross

def cmd_eval_compare(a) -> int:
    fails, parts = [], []
    for pair in a.pairs:
        name, dev_path, cpu_path = pair.split(",")
        try:
            with open(dev_path) as f:
                dev = json.load(f)
            with open(cpu_path) as f:
                cpu = json.load(f)
            pd, pc = dev["predictions"]["classes"], cpu["predictions"]["classes"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            fails.append(f"{name}: no predictions ({type(e).__name__}: {e})")
            continue
        n_diff = sum(1 for x, y in zip(pd, pc) if x != y) + abs(len(pd) - len(pc))
        hist = {c: pc.count(c) for c in sorted(set(pc))}
        acc_d, acc_c = dev.get("metrics", {}).get("accuracy"), cpu.get("metrics", {}).get("accuracy")
        if n_diff:
            fails.append(f"{name}: {n_diff} of {len(pc)} predicted labels differ")
        parts.append(f"{name} {len(pc) - n_diff}/{len(pc)} equal (acc {acc_d} / {acc_c}, classes {hist})")
    text = ("ok: " if not fails else "FAIL: " + "; ".join(fails) + " | ") + "; ".join(parts)
    write_key(a.key, text)
    return 1 if fails else 0


# ---------------------------------------------------------------- sweep_devices

def cmd_sweep_check(a) -> int:
    try:
        with open(a.runs_csv) as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        write_key(a.key, f"FAIL: no runs.csv ({e})")
        return 1
    finished = [r for r in rows if r.get("status") == "finished"]
    for r in rows:
        print(r.get("run_id"), r.get("method"), r.get("seed"), r.get("status"), r.get("best_score"), r.get("wall_seconds"), r.get("error"))
    ok = len(rows) == a.expect and len(finished) == a.expect
    scores = ", ".join(f"{r.get('method')}/s{r.get('seed')} {r.get('best_score')}" for r in rows)
    write_key(a.key, f"{'ok' if ok else 'FAIL'}: {len(finished)}/{a.expect} finished rows in runs.csv ({len(rows)} rows; best acc {scores})")
    return 0 if ok else 1


# ---------------------------------------------------------------- bench

def parse_nvsmi(path: str) -> list:
    """(epoch seconds, MiB) samples of `nvidia-smi --query-gpu=timestamp,memory.used --format=csv,nounits -l 1`."""
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = [p.strip() for p in line.split(",")]
                if len(parts) < 2:
                    continue
                try:
                    t = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                    out.append((t, float(parts[1])))
                except ValueError:
                    continue
    except OSError:
        pass
    return out


def cmd_bench_table(a) -> int:
    samples = parse_nvsmi(os.path.join(a.dir, "gpu_mem.csv"))
    windows = {}
    try:
        with open(os.path.join(a.dir, "windows.tsv")) as f:
            for line in f:
                tool, method, prec, t0, t1, rc = line.rstrip("\n").split("\t")
                windows[(tool, method, prec)] = (float(t0), float(t1), int(rc))
    except (OSError, ValueError):
        pass

    def result(tool, method, prec, suffix=""):
        try:
            rows = read_jsonl(os.path.join(a.dir, f"{tool}_{method}_{prec}{suffix}.json"))
            return rows[-1] if rows else None
        except (OSError, ValueError):
            return None

    def gpu_peak(key):
        w = windows.get(key)
        if not w or not samples:
            return None
        vals = [m for t, m in samples if w[0] - 0.5 <= t <= w[1] + 0.5]
        return max(vals) if vals else None

    f1 = lambda x, d=1: "-" if x is None else f"{x:.{d}f}"
    lines = [f"shape {a.shape}, batch {a.batch} x seq {a.seq}, device {a.device}, {a.warmup} warm-up + {a.steps} timed steps; "
             "ex/s from the median step time; ratio = ours / peft (above 1: ours faster); for triadapt and increlora "
             "(no PEFT peer here) the ratio is to our own LoRA. GPU MiB: torch allocator peak (peak_cuda_mb) ours / peft, "
             "and the largest nvidia-smi memory.used sample (whole GPU, 1 s period) during the measurement ours / peft.",
             "",
             "| method | precision | ours ex/s | peft ex/s | ratio | step ms ours / peft | CPU ms/step ours / peft | ops/step ours / peft | controller ms/step ours / peft | final loss ours / peft | GPU MiB allocator | GPU MiB nvidia-smi | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    missing, measured = [], 0
    for prec in a.precisions.split():
        ours_lora = result("ours", "lora", prec)
        for m in a.methods.split():
            ours = result("ours", m, prec)
            has_peer = m in a.peft_methods.split()
            peft = result("peft", m, prec) if has_peer else None
            status = []
            for tool, r in (("ours", ours), ("peft", peft)) if has_peer else (("ours", ours),):
                w = windows.get((tool, m, prec))
                if r is not None:
                    measured += 1
                elif w is None:
                    status.append(f"{tool} not run")
                    missing.append(f"{tool} {m} {prec}")
                else:
                    status.append(f"{tool} rc {w[2]}")
                    missing.append(f"{tool} {m} {prec}")
            if has_peer and a.peft_note and prec in a.peft_note_precisions.split():
                status = [s for s in status if not s.startswith("peft")] + [a.peft_note]
                missing = [x for x in missing if x != f"peft {m} {prec}"]
            oe = ours.get("examples_per_s") if ours else None
            pe = peft.get("examples_per_s") if peft else None
            if has_peer:
                ratio = f"**{oe / pe:.2f}x**" if oe and pe else "-"
            else:
                le = ours_lora.get("examples_per_s") if ours_lora else None
                ratio = f"{oe / le:.2f}x of our lora" if oe and le else "-"
            g = lambda r, k, d=1: f1(r.get(k), d) if r else "-"
            ours_ops, peft_ops = result("ours", m, prec, ".ops"), (result("peft", m, prec, ".ops") if has_peer else None)
            lines.append(f"| {m} | {prec} | {f1(oe, 2)} | {f1(pe, 2) if has_peer else 'n/a'} | {ratio} | "
                         f"{g(ours, 'step_ms_median')} / {g(peft, 'step_ms_median') if has_peer else 'n/a'} | "
                         f"{g(ours, 'cpu_ms_per_step')} / {g(peft, 'cpu_ms_per_step') if has_peer else 'n/a'} | "
                         f"{g(ours_ops, 'ops_per_step', 0)} / {g(peft_ops, 'ops_per_step', 0) if has_peer else 'n/a'} | "
                         f"{g(ours, 'controller_ms_per_step', 2)} / {g(peft, 'controller_ms_per_step', 2) if has_peer else 'n/a'} | "
                         f"{g(ours, 'final_loss', 3)} / {g(peft, 'final_loss', 3) if has_peer else 'n/a'} | "
                         f"{g(ours, 'peak_cuda_mb', 0)} / {g(peft, 'peak_cuda_mb', 0) if has_peer else 'n/a'} | "
                         f"{f1(gpu_peak(('ours', m, prec)), 0)} / {f1(gpu_peak(('peft', m, prec)), 0) if has_peer else 'n/a'} | "
                         f"{'; '.join(status) or 'ok'} |")
    vers = [r.get("versions") for r in (result("ours", "lora", p) for p in a.precisions.split()) if r] + \
           [r.get("versions") for r in (result("peft", "lora", p) for p in a.precisions.split()) if r]
    if vers:
        lines += ["", "versions: " + " | ".join(sorted(set(vers)))]
    if samples:
        lines += [f"nvidia-smi: {len(samples)} samples, memory.used {min(m for _, m in samples):.0f} to {max(m for _, m in samples):.0f} MiB"]
    with open(os.path.join(a.dir, "table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if a.final:
        print("\n".join(lines))
        key = []
        for prec in a.precisions.split():
            for m in ("lora", "adalora", "full"):
                o, p = result("ours", m, prec), result("peft", m, prec)
                if o and p and o.get("examples_per_s") and p.get("examples_per_s"):
                    key.append(f"{m} {prec} {o['examples_per_s'] / p['examples_per_s']:.2f}x")
        text = (f"{'ok' if not missing else 'FAIL'}: {measured} measurements; ours/peft " + (", ".join(key) or "-")
                + (f"; missing: {', '.join(missing)}" if missing else ""))
        write_key(a.key, text)
    return 1 if missing else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("predict-inputs")
    p.add_argument("--fixture", default=FIXTURE)
    p.add_argument("--out", required=True)
    p = sub.add_parser("compare-logits")
    p.add_argument("--fixture", default=FIXTURE)
    p.add_argument("--device", default="cuda")
    p.add_argument("--device-out", required=True)
    p.add_argument("--cpu-out", required=True)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--report", required=True)
    p.add_argument("--key")
    p = sub.add_parser("smoke-check")
    p.add_argument("--dir", required=True)
    p.add_argument("--methods", required=True)
    p.add_argument("--key")
    p = sub.add_parser("train-check")
    p.add_argument("--dir", required=True)
    p.add_argument("--methods", required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--strict-ranks", action="store_true", help="fail when the rank patterns differ (cpu vs cpu)")
    p.add_argument("--warn-loss-diff", type=float, default=0.1)
    p.add_argument("--fail-loss-diff", type=float, default=0.5)
    p.add_argument("--key")
    p = sub.add_parser("eval-compare")
    p.add_argument("pairs", nargs="+", help="name,device.json,cpu.json")
    p.add_argument("--key")
    p = sub.add_parser("sweep-check")
    p.add_argument("--runs-csv", required=True)
    p.add_argument("--expect", type=int, default=4)
    p.add_argument("--key")
    p = sub.add_parser("bench-table")
    p.add_argument("--dir", required=True)
    p.add_argument("--methods", required=True)
    p.add_argument("--peft-methods", required=True)
    p.add_argument("--precisions", required=True)
    p.add_argument("--peft-note", default="", help="status text for the peft cells of --peft-note-precisions (not run)")
    p.add_argument("--peft-note-precisions", default="")
    p.add_argument("--shape", default="")
    p.add_argument("--batch", default="")
    p.add_argument("--seq", default="")
    p.add_argument("--warmup", default="")
    p.add_argument("--steps", default="")
    p.add_argument("--device", default="")
    p.add_argument("--final", action="store_true", help="print the table and write the key line")
    p.add_argument("--key")
    a = ap.parse_args()
    return {"predict-inputs": cmd_predict_inputs, "compare-logits": cmd_compare_logits, "smoke-check": cmd_smoke_check,
            "train-check": cmd_train_check, "eval-compare": cmd_eval_compare, "sweep-check": cmd_sweep_check,
            "bench-table": cmd_bench_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
