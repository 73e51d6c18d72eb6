//! `triadapt eval` against HF transformers + scikit-learn (fixture from
//! scripts/make_eval_fixture.py), and on a run folder against the run's own final metrics.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn triadapt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_triadapt")).current_dir(root()).env("OMP_NUM_THREADS", "1").args(args).output().unwrap()
}

fn json_out(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn eval_gives_hf_predictions_and_sklearn_accuracy() {
    let fx: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/fixtures/eval/rte_v2.json")).unwrap()).unwrap();
    let n = fx["examples"].as_u64().unwrap() as usize;
    let tmp = tempfile::tempdir().unwrap();
    let dev = std::fs::read_to_string(root().join("data/synthetic/rte/dev.tsv")).unwrap();
    let head: Vec<&str> = dev.lines().take(n + 1).collect();
    std::fs::write(tmp.path().join("dev.tsv"), head.join("\n") + "\n").unwrap();
    let out = json_out(&triadapt(&[
        "eval",
        "--model",
        "tests/fixtures/eval/model_v2",
        "--task",
        "rte",
        "--data-dir",
        tmp.path().to_str().unwrap(),
        "--max-len",
        "128",
        "--predictions",
    ]));
    assert_eq!(out["examples"].as_u64().unwrap() as usize, n);
    assert_eq!(out["predictions"]["classes"], fx["predictions"], "predictions differ from HF's");
    let acc = out["metrics"]["accuracy"].as_f64().unwrap();
    assert!((acc - fx["accuracy"].as_f64().unwrap()).abs() < 1e-12, "accuracy {acc} vs scikit-learn {}", fx["accuracy"]);
}

#[test]
fn eval_of_a_run_folder_reproduces_its_final_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let o = triadapt(&[
        "train",
        "--config",
        "experiments/synthetic_rte.yaml",
        "--method",
        "lora",
        "--out",
        run.to_str().unwrap(),
        "--set",
        "max_steps=20",
        "--set",
        "eval_steps=20",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let out = json_out(&triadapt(&["eval", "--model", run.to_str().unwrap(), "--task", "rte"]));
    assert_eq!(out["metrics"], m["final_metrics"]);
    let bad = triadapt(&["eval", "--model", run.to_str().unwrap(), "--task", "wnli"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("wnli"));
}
