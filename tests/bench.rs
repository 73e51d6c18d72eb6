//! `triadapt bench` runs on the tiny shape and reports every field (timings are never asserted).

use std::process::Command;

fn triadapt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_triadapt")).args(args).output().expect("run triadapt")
}

#[test]
fn bench_on_the_tiny_shape_prints_its_fields() {
    let out = triadapt(&["bench", "--model-config", "tiny", "--steps", "2", "--threads", "1"]);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for field in ["examples/s", "median step", "rank controller", "peak memory", "GFLOP/s"] {
        assert!(text.contains(field), "no `{field}` in:\n{text}");
    }

    // JSON, a growing method, the phase breakdown: the keys the suite reads.
    // Four steps after the warm-up: the op count's controller allocates every second one.
    let out = triadapt(&[
        "bench",
        "--model-config",
        "tiny",
        "--steps",
        "4",
        "--seq",
        "32",
        "--threads",
        "1",
        "--method",
        "triadapt-grow",
        "--breakdown",
        "--json",
        "--ops",
        "--adamw",
        "legacy_hf",
    ]);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let row: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    for key in [
        "examples_per_s",
        "step_ms_median",
        "step_ms_p25",
        "step_ms_p75",
        "cpu_ms_per_step",
        "controller_ms_per_step",
        "peak_rss_mb",
        "model_gflop_per_step",
        "forward_ms",
    ] {
        assert!(row[key].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0), "{key}: {}", row[key]);
    }
    assert!(row["avg_rank_end"].as_f64().unwrap() > row["avg_rank_start"].as_f64().unwrap(), "triadapt-grow grew nothing: {row}");
    // --ops: an ordinary step by phase (it adds up), and an allocation step.
    let phases = row["ops_by_phase"].as_object().unwrap_or_else(|| panic!("no ops_by_phase: {row}"));
    let sum: i64 = ["forward", "loss", "backward", "clipping", "optimizer", "zero_grad", "controller"]
        .iter()
        .map(|k| phases[*k].as_i64().unwrap_or_else(|| panic!("{k}: {row}")))
        .sum();
    assert_eq!(row["ops_per_step"].as_i64(), Some(sum), "{row}");
    assert!(row["ops_allocation_step"].as_i64().is_some() && phases["controller_allocation"].as_i64().is_some(), "{row}");
    assert_eq!(row["adamw"], "legacy_hf");
}

/// `--model-config` also takes a config.json: the fixture's, counted like a built-in shape.
#[test]
fn bench_takes_a_config_json_path() {
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models/v3/config.json");
    let out = triadapt(&[
        "bench",
        "--model-config",
        config.to_str().unwrap(),
        "--steps",
        "1",
        "--warmup",
        "0",
        "--seq",
        "16",
        "--batch",
        "2",
        "--threads",
        "1",
        "--ops",
        "--json",
    ]);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let row: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(row["model_config"].as_str(), config.to_str());
    assert!(row["ops_per_step"].as_i64().is_some_and(|n| n > 0), "{row}");
    let out = triadapt(&["bench", "--model-config", "no/such/config.json"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("or the path of a DeBERTa config.json"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// scripts/gpu_check.sh, the one-call check for a lent GPU machine, run end to end on CPU with
/// tiny budgets (DEVICE=cpu; short runs and one PEFT peer), so that the script cannot rot: every
/// step must pass.
#[test]
fn gpu_check_script_passes_every_step_on_cpu() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().expect("tempdir");
    let run = std::process::Command::new("bash")
        .arg(root.join("scripts/gpu_check.sh"))
        .current_dir(root)
        .env("DEVICE", "cpu")
        .env("BIN", env!("CARGO_BIN_EXE_triadapt"))
        .env("PY", root.join(".venv/bin/python"))
        .env("OUT", out.path())
        .env("BUDGET_S", "200")
        .env("TRAIN_STEPS", "16")
        .env("SWEEP_STEPS", "8")
        .env("BENCH_STEPS", "2")
        .env("PEFT_METHODS", "lora")
        .env_remove("PACK")
        .output()
        .expect("run scripts/gpu_check.sh");
    let log = String::from_utf8_lossy(&run.stderr);
    let steps = std::fs::read_to_string(out.path().join("steps.tsv")).unwrap_or_else(|e| panic!("no steps.tsv ({e}):\n{log}"));
    let summary = std::fs::read_to_string(out.path().join("summary.md")).unwrap_or_default();
    let mut lines = steps.lines();
    assert_eq!(lines.next(), Some("step\trc\tseconds"), "{steps}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split('\t').collect()).collect();
    let names: Vec<&str> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(names, ["env", "predict_fp32", "bf16_smoke", "train80", "eval_cross", "sweep_devices", "bench"], "{steps}\n{log}");
    for row in &rows {
        assert_eq!(row.get(1).copied(), Some("0"), "step {} failed:\n{summary}\n{log}", row[0]);
    }
    assert!(run.status.success(), "gpu_check.sh exited {:?}:\n{summary}\n{log}", run.status.code());
    // The bench table carries the ops per step of both tools next to the step and CPU times.
    let lora = summary.lines().find(|l| l.starts_with("| lora | fp32 |")).unwrap_or_else(|| panic!("no lora fp32 row:\n{summary}"));
    let cells: Vec<&str> = lora.split('|').map(str::trim).collect();
    let counts: Vec<&str> = cells[8].split(" / ").collect();
    assert!(counts.len() == 2 && counts.iter().all(|c| c.parse::<i64>().is_ok_and(|n| n > 0)), "ops per step, ours / peft: {lora}");
    assert!(cells[7].split(" / ").all(|c| c.parse::<f64>().is_ok()), "CPU ms per step, ours / peft: {lora}");
}
