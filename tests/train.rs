//! `triadapt train` end to end on the bundled tiny backbone and synthetic GLUE-layout data:
//! both data layouts, the run folder, learning, determinism, and bad input.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn triadapt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_triadapt")).current_dir(root()).env("OMP_NUM_THREADS", "1").args(args).output().expect("run triadapt")
}

fn train(out: &Path, sets: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "--config", "experiments/synthetic_rte.yaml", "--out", out.to_str().unwrap()];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    triadapt(&args)
}

fn metrics(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(o.status.success(), "triadapt failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// Chance on the balanced synthetic dev set is 50%; 200 examples. The cue word decides the label,
/// so a model that learns reaches far above 80%, while a model at chance reaches 80% with
/// probability below 1e-17 (binomial tail), so the threshold cannot pass by luck.
#[test]
fn triadapt_learns_the_synthetic_pair_task_and_writes_the_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    ok(&train(&out, &[]));
    let m = metrics(&out);
    assert_eq!(m["status"], "finished");
    assert_eq!(m["main_metric"], "accuracy");
    let acc = m["best_metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.8, "dev accuracy {acc} is not well above chance (0.5)");
    assert_eq!(m["total_rank"].as_i64(), m["rank_budget"].as_i64(), "TriAdaptLoRA ends at its budget");
    for f in ["config.yaml", "curve.csv", "rank_history.csv", "rank_pattern.json", "adapter/adapter_model.safetensors", "adapter/adapter_config.json"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let curve = std::fs::read_to_string(out.join("curve.csv")).unwrap();
    assert!(curve.starts_with("step,loss,lr,dev_metric,total_rank\n"));
    assert_eq!(curve.lines().count() as i64 - 1, m["steps"].as_i64().unwrap());
}

#[test]
fn the_same_seed_twice_gives_identical_results() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let sets = ["max_steps=30", "eval_steps=15", "method.triadapt.warmup_steps=5", "method.triadapt.interval=5"];
    ok(&train(&a, &sets));
    ok(&train(&b, &sets));
    let (ma, mb) = (metrics(&a), metrics(&b));
    for key in ["best_metrics", "final_metrics", "best_step", "total_rank", "trainable_params"] {
        assert_eq!(ma[key], mb[key], "{key} differs between identical runs");
    }
    assert_eq!(std::fs::read(a.join("curve.csv")).unwrap(), std::fs::read(b.join("curve.csv")).unwrap());
    assert_eq!(std::fs::read(a.join("adapter/adapter_model.safetensors")).unwrap(), std::fs::read(b.join("adapter/adapter_model.safetensors")).unwrap());
}

#[test]
fn hub_parquet_layout_trains_like_the_tsv_layout() {
    use polars::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("rte");
    std::fs::create_dir_all(&data).unwrap();
    for (tsv, parquet) in [("train.tsv", "train-00000-of-00001.parquet"), ("dev.tsv", "validation-00000-of-00001.parquet")] {
        let text = std::fs::read_to_string(root().join("data/synthetic/rte").join(tsv)).unwrap();
        let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();
        let s1: Vec<&str> = rows.iter().map(|r| r[1]).collect();
        let s2: Vec<&str> = rows.iter().map(|r| r[2]).collect();
        let label: Vec<i64> = rows.iter().map(|r| if r[3] == "entailment" { 0 } else { 1 }).collect();
        let idx: Vec<i32> = (0..rows.len() as i32).collect();
        let mut df = df!("sentence1" => s1, "sentence2" => s2, "label" => label, "idx" => idx).unwrap();
        ParquetWriter::new(std::fs::File::create(data.join(parquet)).unwrap()).finish(&mut df).unwrap();
    }
    let (a, b) = (tmp.path().join("parquet_run"), tmp.path().join("tsv_run"));
    let data_set = format!("data_dir={}", data.display());
    ok(&train(&a, &["max_steps=12", "eval_steps=12", "method.name=lora", &data_set]));
    ok(&train(&b, &["max_steps=12", "eval_steps=12", "method.name=lora"]));
    assert_eq!(metrics(&a)["final_metrics"], metrics(&b)["final_metrics"], "the two layouts hold the same data");
}

fn train_err(sets: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(&tmp.path().join("run"), sets);
    assert!(!o.status.success(), "expected a failure for {sets:?}");
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // A missing column.
    let d = tmp.path().join("missing_col");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("train.tsv"), "index\tsentence1\tlabel\n0\tA b.\tentailment\n").unwrap();
    std::fs::write(d.join("dev.tsv"), "index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\tentailment\n").unwrap();
    let err = train_err(&[&format!("data_dir={}", d.display())]);
    assert!(err.contains("train.tsv:1") && err.contains("sentence2"), "{err}");
    // A bad label, on its line.
    let d = tmp.path().join("bad_label");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("train.tsv"), "index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\tentailment\n1\tA b.\tC d.\tmaybe\n").unwrap();
    let err = train_err(&[&format!("data_dir={}", d.display())]);
    assert!(err.contains("train.tsv:3") && err.contains("maybe"), "{err}");
    // An unknown task and an unknown --set key.
    let err = train_err(&["task=wnli"]);
    assert!(err.contains("task") && err.contains("wnli"), "{err}");
    let err = train_err(&["optim.learning_rate=3"]);
    assert!(err.contains("optim.learning_rate"), "{err}");
}
