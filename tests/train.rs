//! `triadapt train` end to end on the bundled tiny backbone and synthetic GLUE-layout data:
//! both data layouts, the run folder, learning, determinism, and bad input.

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
    for f in [
        "config.yaml",
        "curve.csv",
        "rank_history.csv",
        "rank_pattern.json",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
    ] {
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
    assert_eq!(
        std::fs::read(a.join("adapter/adapter_model.safetensors")).unwrap(),
        std::fs::read(b.join("adapter/adapter_model.safetensors")).unwrap()
    );
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

// ---- Long runs: checkpoints, resume, preemption, best weights, logs (README "Long runs") ----

fn spawn_train(out: &Path, method: &str, sets: &[&str], extra: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_triadapt"));
    cmd.current_dir(root()).env("OMP_NUM_THREADS", "1").args([
        "train",
        "--config",
        "experiments/synthetic_rte.yaml",
        "--method",
        method,
        "--out",
        out.to_str().unwrap(),
    ]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd.args(extra).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    cmd.spawn().expect("start triadapt")
}

/// Polls `cond` every 20 ms for up to 120 s.
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed().as_secs() < 120, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether a run folder holds a complete checkpoint.
fn has_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints"))
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with("step-") && e.path().join("trainer_state.json").is_file())
        })
        .unwrap_or(false)
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The settings of the long-run tests: 60 steps, a checkpoint every 20, evaluations every 10
/// (so the best evaluation is usually not the last), growth early enough to happen in 60 steps.
const LONG: [&str; 9] = [
    "max_steps=60",
    "save_steps=20",
    "eval_steps=10",
    "log_steps=10",
    "method.triadapt.warmup_steps=5",
    "method.triadapt.interval=5",
    "method.increlora.init_warmup=5",
    "method.increlora.incre_interval=5",
    "method.adalora.tinit=5",
];

/// A run killed with SIGKILL after its first checkpoint and resumed with `--resume` ends
/// bit-identical to an uninterrupted run, for every method: the same adapter and best-adapter
/// bytes, the same curve.csv, rank_history.csv and metrics.jsonl, the same scores.
#[test]
fn a_sigkilled_run_resumes_bit_identically_for_every_method() {
    let tmp = tempfile::tempdir().unwrap();
    let methods = ["lora", "triadapt", "adalora", "increlora", "full"];
    for method in methods {
        let (straight, killed) = (tmp.path().join(format!("{method}_straight")), tmp.path().join(format!("{method}_killed")));
        let mut sets: Vec<&str> = LONG.to_vec();
        sets.push("method.adalora.tfinal=10");
        let o = spawn_train(&straight, method, &sets, &[]).wait_with_output().unwrap();
        assert!(o.status.success(), "{method}: {}", String::from_utf8_lossy(&o.stderr));
        let mut child = spawn_train(&killed, method, &sets, &[]);
        // Any checkpoint (only the newest is kept, so a slow poll may see step 40 instead).
        wait_for("a checkpoint", || has_checkpoint(&killed));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert_eq!(metrics(&killed)["status"], "running", "{method}: killed after it had finished: the test proves nothing");
        let o = spawn_train(&killed, method, &sets, &["--resume"]).wait_with_output().unwrap();
        assert!(o.status.success(), "{method} resume: {}", String::from_utf8_lossy(&o.stderr));
        let log = String::from_utf8_lossy(&o.stderr);
        assert!(log.contains("resuming") && !log.contains("from step 0 "), "{method}: did not resume from a checkpoint:\n{log}");
        for f in [
            "curve.csv",
            "rank_history.csv",
            "metrics.jsonl",
            "rank_pattern.json",
            "adapter/adapter_model.safetensors",
            "best/adapter_model.safetensors",
        ] {
            assert!(read(&straight.join(f)) == read(&killed.join(f)), "{method}: {f} differs after resume");
        }
        let (a, b) = (metrics(&straight), metrics(&killed));
        for k in ["status", "best_step", "best_score", "best_metrics", "final_metrics", "steps", "total_rank"] {
            assert_eq!(a[k], b[k], "{method}: metrics.json {k}");
        }
        assert!(!killed.join("checkpoints").exists(), "{method}: checkpoints left after the end (adapter/ is the end state)");
    }
    // TensorBoard (its own reader) shows the resumed run's points once each, equal to the
    // uninterrupted run's (wall times differ, so the event files are compared as read).
    let folders: Vec<PathBuf> =
        methods.iter().flat_map(|m| [tmp.path().join(format!("{m}_straight")), tmp.path().join(format!("{m}_killed"))]).collect();
    let boards = tensorboard_scalars(&folders);
    for m in methods {
        let (a, b) = (&boards[&tmp.path().join(format!("{m}_straight"))], &boards[&tmp.path().join(format!("{m}_killed"))]);
        assert_eq!(a, b, "{m}: TensorBoard shows other points after the resume");
        assert_eq!(
            a["train/loss"].iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            (1..=60).collect::<Vec<_>>(),
            "{m}: one loss point per step"
        );
    }
}

/// Every scalar TensorBoard's reader finds in each run folder, by tag: (step, value) in file order.
fn tensorboard_scalars(folders: &[PathBuf]) -> std::collections::HashMap<PathBuf, std::collections::BTreeMap<String, Vec<(i64, f64)>>> {
    let o = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("scripts/tensorboard_oracle.py"))
        .args(folders)
        .output()
        .expect("the venv's python (make test creates it)");
    assert!(o.status.success(), "tensorboard oracle: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The event file carries what the run's other files say: every step's loss and learning rate
/// (curve.csv, as float32), the gradient norm, each evaluation's metrics (metrics.jsonl), the
/// parameter count at log points, each matrix's rank where it changed (rank_history.csv); with
/// `log.tensorboard: false` there is none.
#[test]
fn tensorboard_shows_the_runs_curves_evaluations_and_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    ok(&train(
        &out,
        &["max_steps=30", "eval_steps=10", "log_steps=5", "save_steps=100", "method.triadapt.warmup_steps=5", "method.triadapt.interval=5"],
    ));
    let board = tensorboard_scalars(std::slice::from_ref(&out)).remove(&out).unwrap();
    let curve = std::fs::read_to_string(out.join("curve.csv")).unwrap();
    let rows: Vec<Vec<&str>> = curve.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 30);
    for (col, tag) in [(1, "train/loss"), (2, "train/learning_rate"), (4, "train/total_rank")] {
        let want: Vec<(i64, f64)> = rows.iter().map(|r| (r[0].parse().unwrap(), r[col].parse::<f64>().unwrap() as f32 as f64)).collect();
        assert_eq!(board[tag], want, "{tag}");
    }
    assert_eq!(board["train/grad_norm"].len(), 30);
    assert!(board["train/grad_norm"].iter().all(|(_, g)| g.is_finite() && *g > 0.0));
    let params = metrics(&out)["adapter_params"].as_f64().unwrap();
    assert_eq!(board["train/adapter_params"].last().unwrap(), &(30, params as f32 as f64));
    assert_eq!(board["train/adapter_params"].iter().map(|(s, _)| *s).collect::<Vec<_>>(), [5, 10, 15, 20, 25, 30], "at each log point");
    for line in std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        for (k, x) in v.get("eval").and_then(|e| e.as_object()).into_iter().flatten() {
            let step = v["step"].as_i64().unwrap();
            assert!(board[&format!("eval/{k}")].contains(&(step, x.as_f64().unwrap() as f32 as f64)), "eval/{k} at {step}");
        }
    }
    assert_eq!(board["eval/accuracy"].iter().map(|(s, _)| *s).collect::<Vec<_>>(), [10, 20, 30]);
    let history = std::fs::read_to_string(out.join("rank_history.csv")).unwrap();
    let changes: Vec<(String, i64, f64)> = history
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (format!("rank/{}", f[1]), f[0].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    assert!(changes.iter().any(|(_, s, _)| *s > 0), "the run must grow for the test to show allocations");
    for (tag, step, rank) in &changes {
        assert!(board[tag].contains(&(*step, *rank)), "{tag} at {step}");
    }
    assert_eq!(board.keys().filter(|k| k.starts_with("rank/")).map(|k| board[k].len()).sum::<usize>(), changes.len());

    let quiet = tmp.path().join("quiet");
    ok(&train(
        &quiet,
        &["max_steps=5", "eval_steps=5", "method.triadapt.warmup_steps=2", "method.triadapt.interval=2", "log.tensorboard=false"],
    ));
    assert!(!quiet.join(triadapt::train::tensorboard::EVENT_FILE).exists());
}

/// SIGTERM: the run saves a checkpoint at the next step boundary, records `interrupted` and
/// exits with 75; `--resume` then finishes it. A second config is refused by --resume.
#[test]
fn sigterm_checkpoints_and_exits_75_and_resume_checks_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let sets: Vec<&str> = LONG.iter().copied().filter(|s| !s.starts_with("save_steps")).chain(["save_steps=1000"]).collect();
    let child = spawn_train(&out, "triadapt", &sets, &[]);
    wait_for("10 steps in curve.csv", || std::fs::read_to_string(out.join("curve.csv")).is_ok_and(|c| c.lines().count() > 10));
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(75), "exit status {:?}: {}", o.status, String::from_utf8_lossy(&o.stderr));
    let m = metrics(&out);
    assert_eq!(m["status"], "interrupted");
    let steps = m["steps"].as_i64().unwrap();
    assert!((10..60).contains(&steps), "stopped at step {steps}");
    let ckpt = out.join(format!("checkpoints/step-{steps:08}"));
    let state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["step"].as_i64(), Some(steps));
    assert_eq!(
        std::fs::read_to_string(out.join("curve.csv")).unwrap().lines().count() as i64,
        steps + 1,
        "curve.csv holds every step up to the checkpoint"
    );
    // Another learning rate is another run.
    let mut other = sets.clone();
    other.push("optim.lr=0.01");
    let o = spawn_train(&out, "triadapt", &other, &["--resume"]).wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("optim.lr"), "--resume with another config must be refused naming the key:\n{err}");
    let o = spawn_train(&out, "triadapt", &sets, &["--resume"]).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("from step {steps} ")));
    assert_eq!(metrics(&out)["status"], "finished");
    // Provenance: what made the run, kept across the resume.
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("run_info.json")).unwrap()).unwrap();
    for k in ["triadapt_version", "git_commit", "libtorch_version", "device", "host", "started", "ended"] {
        assert!(info[k].as_str().is_some_and(|v| !v.is_empty()), "run_info.json {k}: {info}");
    }
    assert_eq!(info["libtorch_version"].as_str().map(|v| v.starts_with("2.11.0")), Some(true));
    assert_eq!(info["resumed_at"].as_array().map(Vec::len), Some(1), "one resume recorded: {info}");
    assert!(info["command_line"].as_array().unwrap().iter().any(|a| a == "train"), "the first start's command line: {info}");
    assert_eq!(std::fs::read_to_string(out.join("curve.csv")).unwrap().lines().count(), 61);
}

/// `best/` is the best evaluation's adapter and `adapter/` the last step's: eval, merge and
/// export-peft take `--checkpoint best|last` (default best), and eval of each reproduces the
/// run's best and final scores. A run folder moved elsewhere still evaluates (its base model
/// is stored as the config named it, resolved from the working directory).
#[test]
fn best_and_last_checkpoints_and_a_moved_run_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut sets: Vec<&str> = LONG.to_vec();
    sets.extend(["max_steps=90", "optim.lr=0.02"]);
    let o = spawn_train(&out, "lora", &sets, &[]).wait_with_output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = metrics(&out);
    let (best_step, steps) = (m["best_step"].as_i64().unwrap(), m["steps"].as_i64().unwrap());
    assert!(best_step < steps, "the best evaluation is the last one (step {best_step}): this run cannot tell best from last");
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("best/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(cfg["step"].as_i64(), Some(best_step));
    assert_eq!(cfg["base_model"], "data/tiny-deberta-v3", "the base model as the config named it");
    let eval = |dir: &Path, which: &str| -> serde_json::Value {
        let o = triadapt(&[
            "eval",
            "--model",
            dir.to_str().unwrap(),
            "--task",
            "rte",
            "--data-dir",
            "data/synthetic/rte",
            "--checkpoint",
            which,
        ]);
        ok(&o);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let acc = |v: &serde_json::Value| v["metrics"]["accuracy"].as_f64().unwrap();
    assert_eq!(acc(&eval(&out, "best")), m["best_metrics"]["accuracy"].as_f64().unwrap());
    assert_eq!(acc(&eval(&out, "last")), m["final_metrics"]["accuracy"].as_f64().unwrap());
    let (mb, ml) = (tmp.path().join("merged_best"), tmp.path().join("merged_last"));
    ok(&triadapt(&["merge", out.to_str().unwrap(), "--out", mb.to_str().unwrap()]));
    ok(&triadapt(&["merge", out.to_str().unwrap(), "--checkpoint", "last", "--out", ml.to_str().unwrap()]));
    assert!(
        read(&mb.join("model.safetensors")) != read(&ml.join("model.safetensors")),
        "merge --checkpoint best and last gave the same weights"
    );
    let pb = tmp.path().join("peft_best");
    ok(&triadapt(&["export-peft", out.to_str().unwrap(), "--out", pb.to_str().unwrap()]));
    let pc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(pb.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(pc["base_model_name_or_path"], "data/tiny-deberta-v3");
    // Moved to another folder: evaluates the same.
    let moved = tmp.path().join("elsewhere/deeper/run");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::rename(&out, &moved).unwrap();
    assert_eq!(acc(&eval(&moved, "best")), m["best_metrics"]["accuracy"].as_f64().unwrap());
}
