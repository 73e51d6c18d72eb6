//! The run loop in process (`triadapt::train::run::run`, no binary spawned): a run stopped at a
//! step boundary as a signal would stop it resumes to exactly the uninterrupted run's files; the
//! best and last adapters; resuming a finished run trains nothing.

use std::path::{Path, PathBuf};

use triadapt::config::RunConfig;
use triadapt::train::run::{run, RunOptions};
use triadapt::train::signals::Interrupted;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The synthetic pair task with TriAdaptLoRA growing (every 5 steps after 5), 30 steps,
/// evaluation every 8, checkpoints every 10, log lines every 4.
fn config() -> RunConfig {
    let sets: Vec<String> = [
        "max_steps=30",
        "eval_steps=8",
        "save_steps=10",
        "log_steps=4",
        "method.triadapt.warmup_steps=5",
        "method.triadapt.interval=5",
        "optim.warmup_steps=5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    RunConfig::load(&root().join("experiments/synthetic_rte.yaml"), &sets).unwrap()
}

/// Options that never listen for signals (the test process's own handlers stay as they are).
fn options(resume: bool, stop_at: Option<i64>) -> RunOptions {
    RunOptions { progress: false, resume, stop: Some(Box::new(move |done| (Some(done) == stop_at).then_some(15))) }
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn metrics(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(&out.join("metrics.json"))).unwrap()
}

#[test]
fn a_run_stopped_at_a_boundary_resumes_to_the_uninterrupted_files() {
    let _rng = crate::common::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config();
    let whole = tmp.path().join("whole");
    let result = run(&cfg, &root(), &whole, options(false, None)).unwrap();
    assert_eq!(result.steps, 30);

    let cut = tmp.path().join("cut");
    let err = run(&cfg, &root(), &cut, options(false, Some(13))).unwrap_err();
    let stopped = err.downcast_ref::<Interrupted>().expect("an interruption");
    assert_eq!((stopped.signal, stopped.step), (15, 13));
    let m = metrics(&cut);
    assert_eq!((m["status"].as_str(), m["steps"].as_i64()), (Some("interrupted"), Some(13)));
    assert!(cut.join("checkpoints/step-00000013").is_dir(), "no checkpoint at the stop");
    assert!(!cut.join("adapter").exists(), "an interrupted run has no final adapter");

    let resumed = run(&cfg, &root(), &cut, options(true, None)).unwrap();
    assert_eq!(resumed.steps, 30);
    for file in
        ["curve.csv", "rank_history.csv", "rank_pattern.json", "adapter/adapter_model.safetensors", "best/adapter_model.safetensors"]
    {
        assert!(read(&whole.join(file)) == read(&cut.join(file)), "{file} differs from the uninterrupted run's");
    }
    // metrics.jsonl has a line where a log window ends: the stop ended one at step 13, which the
    // uninterrupted run's window (12 to 16) does not have; every other line is the same.
    let lines = |p: &Path| String::from_utf8(read(&p.join("metrics.jsonl"))).unwrap().lines().map(str::to_string).collect::<Vec<_>>();
    let mut cut_lines = lines(&cut);
    let at_stop = cut_lines.iter().position(|l| l.contains("\"step\":13,")).expect("the stop's log line");
    cut_lines.remove(at_stop);
    assert_eq!(cut_lines, lines(&whole), "metrics.jsonl");
    let (a, b) = (metrics(&whole), metrics(&cut));
    for key in ["status", "steps", "best_step", "best_score", "best_metrics", "final_metrics", "total_rank", "trainable_params"] {
        assert_eq!(a[key], b[key], "metrics.json `{key}`");
    }
    assert!(!cut.join("checkpoints").exists(), "a finished run keeps no checkpoints");

    // Resuming a finished run returns its result and trains nothing.
    let before = read(&cut.join("curve.csv"));
    let again = run(&cfg, &root(), &cut, options(true, None)).unwrap();
    assert_eq!(again.steps, 30);
    assert!(read(&cut.join("curve.csv")) == before, "a finished run was trained again");
}

/// best/ holds the adapter of the best evaluation (its step in adapter_config.json, equal to
/// metrics.json's best_step) and adapter/ the last step's; curve.csv has an evaluation at every
/// 8th step and the last.
#[test]
fn best_and_last_adapters_and_evaluations_on_the_cadence() {
    let _rng = crate::common::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let result = run(&config(), &root(), &out, options(false, None)).unwrap();
    let best: serde_json::Value = serde_json::from_slice(&read(&out.join("best/adapter_config.json"))).unwrap();
    let last: serde_json::Value = serde_json::from_slice(&read(&out.join("adapter/adapter_config.json"))).unwrap();
    assert_eq!(best["step"].as_i64(), result.best_step);
    assert_eq!(last["step"].as_i64(), Some(30));
    let curve = String::from_utf8(read(&out.join("curve.csv"))).unwrap();
    let evaluated: Vec<i64> = curve
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (!f[3].is_empty()).then(|| f[0].parse::<i64>().unwrap())
        })
        .collect();
    assert_eq!(evaluated, vec![8, 16, 24, 30]);
    assert_eq!(curve.lines().count(), 31, "one row per step and the header");
}
