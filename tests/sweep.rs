//! Sweeps: expansion (grid, zip, parts, method scoping), stable run ids, sharding, errors that
//! name the file, line and key, every shipped sweep's dry run, and crash safety: a sweep killed
//! mid-way and run again trains every run exactly once and lists each once in runs.csv.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use triadapt::config::RunConfig;
use triadapt::peft::method::MethodName;
use triadapt::sweep::{self, Shard, Sweep};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn triadapt() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triadapt"));
    // The tiny model on a loaded machine: one thread per process is many times faster.
    c.current_dir(root()).env("OMP_NUM_THREADS", "1");
    c
}

fn run_cli(args: &[&str]) -> Output {
    triadapt().args(args).output().expect("run triadapt")
}

fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn base_yaml() -> String {
    root().join("experiments/synthetic_rte.yaml").display().to_string()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// Reads runs.csv as (header, rows of column -> value).
fn read_csv(path: &Path) -> (Vec<String>, Vec<HashMap<String, String>>) {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r.records().map(|rec| header.iter().cloned().zip(rec.unwrap().iter().map(str::to_string)).collect()).collect();
    (header, rows)
}

#[test]
fn grid_and_zip_expand_with_method_scoping() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "name: expand\nbase: {}\nmethods: [triadapt, lora]\nseeds: [1, 2]\n\
         grid:\n  optim.lr: [1.0e-3, 2.0e-3]\n  max_steps: [10, 20, 30]\n\
         zip:\n  method.triadapt.ref_rank: [2, 3]\n  method.triadapt.interval: [5, 7]\n\
         set:\n  eval_steps: 5\n",
        base_yaml()
    );
    let path = write(dir.path(), "expand.yaml", &body);
    let s = Sweep::load(&path).unwrap();
    let base = RunConfig::load(Path::new(&base_yaml()), &[]).unwrap();
    assert_eq!(s.name, "expand");
    assert_eq!(s.out, PathBuf::from("results/expand"));
    assert_eq!(s.swept_keys, ["optim.lr", "max_steps", "method.triadapt.ref_rank", "method.triadapt.interval"]);
    let tri: Vec<_> = s.runs.iter().filter(|r| r.method == MethodName::Triadapt).collect();
    let lora: Vec<_> = s.runs.iter().filter(|r| r.method == MethodName::Lora).collect();
    // triadapt: 2 seeds x 6 grid points x 2 zip rows; lora: the zip keys are triadapt's, so its 2
    // zip rows are one run (merged).
    assert_eq!(tri.len(), 24);
    assert_eq!(lora.len(), 12);
    assert_eq!(s.merged, 12);
    assert!(s.runs.iter().enumerate().all(|(i, r)| r.index == i));
    let ids: BTreeSet<&str> = s.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), s.runs.len(), "distinct runs have distinct ids");
    for r in &s.runs {
        assert_eq!(r.config.seed, r.seed);
        assert_eq!(r.config.method.name, r.method);
        assert_eq!(r.config.eval_steps, 5, "`set` applies to every run");
        assert_eq!(r.id, sweep::run_id(&r.config));
        assert_eq!(r.swept.len(), 4);
    }
    // zip rows move together; grid points are the full product.
    let mut combos = BTreeSet::new();
    for r in &tri {
        let c = &r.config;
        assert_eq!(c.method.triadapt.interval, if c.method.triadapt.ref_rank == 2 { 5 } else { 7 });
        combos.insert((r.seed, c.optim.lr.to_bits(), c.max_steps, c.method.triadapt.ref_rank));
    }
    assert_eq!(combos.len(), 24);
    for r in &lora {
        assert_eq!(r.config.method.triadapt, base.method.triadapt, "triadapt keys stay at the base value for lora");
        assert!(r.swept[2].1.is_none() && r.swept[3].1.is_none(), "{:?}", r.swept);
        assert!(r.swept[0].1.is_some() && r.swept[1].1.is_some());
    }
    // Seeds vary slowest, the last grid key fastest.
    assert_eq!(s.runs[0].seed, 1);
    assert_eq!(s.runs.last().unwrap().seed, 2);
    assert_eq!(s.runs[0].config.max_steps, Some(10));
    assert_eq!(s.runs[0].config.method.triadapt.ref_rank, 2);
    assert_eq!(s.runs[1].config.method.triadapt.ref_rank, 3);
    assert_eq!(s.runs[2].config.max_steps, Some(20));
}

#[test]
fn parts_and_method_set_merge_over_the_top_level() {
    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "name: parts\nout: {out}\nmethods: [lora, adalora]\nseeds: [1]\n\
         method_set:\n  adalora: {{optim.lr: 5.0e-4, method.lora_dropout: 0.0}}\n\
         parts:\n  - base: {b}\n    method_set:\n      adalora: {{epochs: 7}}\n\
         \x20 - base: {b}\n    seeds: [3, 4]\n    set: {{task: sst2, data_dir: data/synthetic/sst2}}\n",
        out = dir.path().join("o").display(),
        b = base_yaml()
    );
    let s = Sweep::parse(&body, &dir.path().join("parts.yaml")).unwrap();
    assert_eq!(s.out, dir.path().join("o"));
    assert_eq!(s.runs.len(), 2 + 4);
    let ada: Vec<_> = s.runs.iter().filter(|r| r.method == MethodName::Adalora).collect();
    assert_eq!(ada[0].config.optim.lr, 5.0e-4);
    assert_eq!(ada[0].config.epochs, 7.0, "the part's method_set adds to the top-level one");
    assert_eq!(ada[1].config.optim.lr, 5.0e-4);
    assert_eq!(ada[1].config.epochs, 4.0, "the second part keeps the base epochs");
    assert_eq!(ada[1].task, "sst2");
    let lora = s.runs.iter().find(|r| r.method == MethodName::Lora).unwrap();
    assert_eq!(lora.config.optim.lr, 5.0e-3, "method_set.adalora leaves lora alone");
    assert_eq!(s.runs.iter().filter(|r| r.seed >= 3).count(), 4);
}

#[test]
fn run_ids_are_stable() {
    let cfg = RunConfig::from_yaml_str(
        "task: mnli\nseed: 7\noptim:\n  lr: 3.5e-4\nmethod:\n  name: increlora\n  triadapt:\n    ref_rank: 8\n  lora_dropout: 0.0\n",
        &[],
    )
    .unwrap();
    // Only values that differ from the defaults, sorted, as compact JSON (lora_dropout 0.0 is the
    // default): adding a config key later changes no id.
    assert_eq!(
        triadapt::config::canonical_form(&cfg),
        "method.name=\"increlora\"\nmethod.triadapt.ref_rank=8\noptim.lr=0.00035\nseed=7\ntask=\"mnli\"\n"
    );
    // sha256 of that text, first 12 hex digits (python: hashlib.sha256(text).hexdigest()[:12]).
    assert_eq!(sweep::run_id(&cfg), "1bf270b4cdb4");
    // The resolved YAML a child process reads gives the same config and id.
    let back = RunConfig::from_yaml_str(&cfg.to_yaml(), &[]).unwrap();
    assert_eq!(back, cfg);
    assert_eq!(sweep::run_id(&back), "1bf270b4cdb4");
    assert_eq!(sweep::run_id(&RunConfig::default()), "e3b0c44298fc", "defaults hash the empty text");
}

#[test]
fn shards_partition_the_runs() {
    let s = Sweep::load(&root().join("sweeps/glue_r2.yaml")).unwrap();
    let all: BTreeSet<usize> = s.runs.iter().map(|r| r.index).collect();
    for n in 1..=7 {
        let mut seen = BTreeSet::new();
        for i in 0..n {
            let shard = Shard { index: i, count: n };
            let part = s.shard(Some(shard));
            assert_eq!(part.first().map(|r| r.index), Some(i), "shard {i}/{n} starts at run {i}");
            for r in part {
                assert!(seen.insert(r.index), "run {} in two shards of {n}", r.index);
                assert_eq!(r.index % n, i);
            }
        }
        assert_eq!(seen, all, "the {n} shards cover every run");
    }
    assert_eq!(s.shard(None).len(), s.runs.len());
    assert!("2/2".parse::<Shard>().is_err());
    assert_eq!("1/4".parse::<Shard>().unwrap(), Shard { index: 1, count: 4 });
}

#[test]
fn every_shipped_sweep_dry_runs() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("sweeps"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let names: Vec<String> = files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
    for want in [
        "demo",
        "glue_r2",
        "glue_r8",
        "glue_r2_adalora_matched",
        "glue_r8_adalora_matched",
        "mnli_ranks",
        "paper_unknowns",
        "rte_interval",
        "rte_refrank",
        "rte_warmup",
        "squad_v2",
    ] {
        assert!(names.iter().any(|n| n == want), "sweeps/{want}.yaml missing");
    }
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap().to_str().unwrap().to_string();
        let o = run_cli(&["sweep", &rel, "--dry-run"]);
        assert!(o.status.success(), "{rel}: {}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.starts_with("#  ") || out.starts_with("# "), "{rel}: {out}");
        let s = Sweep::load(f).unwrap();
        assert!(out.contains(&format!("{} run(s)", s.runs.len())), "{rel}: {out}");
        for r in &s.runs {
            // The YAML a child reads back is the same configuration.
            assert_eq!(RunConfig::from_yaml_str(&r.config.to_yaml(), &[]).unwrap(), r.config, "{rel} run {}", r.id);
        }
    }
    let count = |name: &str| Sweep::load(&root().join("sweeps").join(name)).unwrap().runs.len();
    assert_eq!(count("glue_r2.yaml"), 8 * 5 * 5);
    assert_eq!(count("glue_r8.yaml"), 8 * 5 * 5);
    assert_eq!(count("rte_warmup.yaml"), 2 * 3 * 4);
    assert_eq!(count("demo.yaml"), 8);
    // TriAdaptLoRA 2 x 2 x 2 settings, LoRA 2 x 2, each on 3 tasks x 3 seeds.
    assert_eq!(count("paper_unknowns.yaml"), (8 + 4) * 3 * 3);
    // The heatmap runs are glue_r2's seed-1 MNLI runs of the same methods (same ids).
    let glue: BTreeSet<String> = Sweep::load(&root().join("sweeps/glue_r2.yaml")).unwrap().runs.into_iter().map(|r| r.id).collect();
    for r in Sweep::load(&root().join("sweeps/mnli_ranks.yaml")).unwrap().runs {
        assert!(glue.contains(&r.id), "mnli_ranks {} {} not in glue_r2", r.method.as_str(), r.id);
    }
    // Every shipped experiment file loads.
    for e in std::fs::read_dir(root().join("experiments")).unwrap() {
        let p = e.unwrap().path();
        RunConfig::load(&p, &[]).unwrap_or_else(|e| panic!("{}: {e:#}", p.display())).validate().unwrap();
    }
}

fn parse_err(body: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad_sweep.yaml");
    let err = Sweep::parse(body, &path).unwrap_err();
    format!("{err:#}")
}

#[test]
fn bad_sweep_files_name_the_file_line_and_key() {
    let base = base_yaml();
    // YAML syntax error: the file and the line.
    let e = parse_err(&format!("name: x\nbase: {base}\ngrid:\n  optim.lr: [1, 2\n"));
    assert!(e.contains("bad_sweep.yaml:") && e.contains("line"), "{e}");
    // Unknown top-level field.
    let e = parse_err(&format!("name: x\nbase: {base}\ngrdi:\n  optim.lr: [1]\n"));
    assert!(e.contains("bad_sweep.yaml:3") && e.contains("grdi"), "{e}");
    // Unknown config key in a grid: the key and its line.
    let e = parse_err(&format!("name: x\nbase: {base}\ngrid:\n  optim.lr: [1]\n  method.triadapt.refrank: [2, 3]\n"));
    assert!(e.contains("bad_sweep.yaml:5") && e.contains("method.triadapt.refrank") && e.contains("unknown key"), "{e}");
    // Empty grid list.
    let e = parse_err(&format!("name: x\nbase: {base}\ngrid:\n  optim.lr: []\n"));
    assert!(e.contains("bad_sweep.yaml:4") && e.contains("optim.lr") && e.contains("empty"), "{e}");
    // A grid value that is not a list.
    let e = parse_err(&format!("name: x\nbase: {base}\ngrid:\n  optim.lr: 1.0e-3\n"));
    assert!(e.contains("optim.lr") && e.contains("list"), "{e}");
    // Zip lists of different lengths.
    let e = parse_err(&format!("name: x\nbase: {base}\nzip:\n  method.triadapt.ref_rank: [2, 3]\n  method.triadapt.interval: [5]\n"));
    assert!(
        e.contains("bad_sweep.yaml:5")
            && e.contains("method.triadapt.ref_rank")
            && e.contains("method.triadapt.interval")
            && e.contains("length"),
        "{e}"
    );
    // A value of the wrong type: the run and the key.
    let e = parse_err(&format!("name: x\nbase: {base}\ngrid:\n  method.triadapt.ref_rank: [2, two]\n"));
    assert!(e.contains("bad_sweep.yaml") && e.contains("method.triadapt.ref_rank"), "{e}");
    // Unknown method, missing base, seeds and methods in the wrong place.
    let e = parse_err(&format!("name: x\nbase: {base}\nmethods: [triadapt, dora]\n"));
    assert!(e.contains("bad_sweep.yaml:3") && e.contains("dora"), "{e}");
    let e = parse_err("name: x\nbase: no_such_experiment.yaml\n");
    assert!(e.contains("no_such_experiment.yaml") && e.contains("not found"), "{e}");
    let e = parse_err(&format!("name: x\nbase: {base}\ngrid:\n  seed: [1, 2]\n"));
    assert!(e.contains("seeds"), "{e}");
    let e = parse_err(&format!("name: x\nbase: {base}\nseeds: []\n"));
    assert!(e.contains("seeds") && e.contains("empty"), "{e}");
    let e = parse_err(&format!("name: x\nbase: {base}\nmethod_set:\n  lora: {{optim.learning_rate: 1}}\n"));
    assert!(e.contains("optim.learning_rate"), "{e}");
    // Through the binary: a failing exit and the message on stderr.
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.yaml", &format!("name: x\nbase: {base}\ngrid:\n  optim.lr: []\n"));
    let o = run_cli(&["sweep", p.to_str().unwrap(), "--dry-run"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:4") && err.contains("optim.lr"), "{err}");
}

/// A small sweep of the tiny model: 2 methods x 2 seeds of 20 steps.
fn small_sweep(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let body = format!(
        "name: {name}\nout: {out}\nbase: {base}\nmethods: [triadapt, lora]\nseeds: [1, 2]\n\
         set:\n  max_steps: 20\n  eval_steps: 10\n  max_eval_examples: 64\n  method.triadapt.warmup_steps: 5\n  method.triadapt.interval: 5\n{extra}",
        out = dir.join("results").display(),
        base = base_yaml()
    );
    write(dir, &format!("{name}.yaml"), &body)
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).modified().unwrap()
}

/// Processes whose command line mentions `needle` (Linux /proc).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

/// Off a terminal (a Slurm job log, nohup) the sweep passes its children's progress lines
/// through, each prefixed with its run id, at the runs' log cadence; train.log keeps them too.
#[test]
fn off_a_terminal_a_sweep_shows_where_every_run_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = small_sweep(dir.path(), "relay", "  log_steps: 5\n");
    let s = Sweep::load(&file).unwrap();
    let o = triadapt().args(["sweep", file.to_str().unwrap(), "--devices", "cpu,cpu"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for r in &s.runs {
        for step in [5, 10, 15, 20] {
            let line = format!("{} step {step}/20 ", r.id);
            assert!(err.lines().any(|l| l.starts_with(&line)), "no `{line}` line in the sweep's output:\n{err}");
        }
        let log = std::fs::read_to_string(s.run_dir(r).join("train.log")).unwrap();
        assert!(log.lines().any(|l| l.starts_with("step 20/20 ")), "train.log of {}: {log}", r.id);
    }
}

#[test]
fn a_killed_sweep_resumes_without_retraining_or_duplicate_rows() {
    let dir = tempfile::tempdir().unwrap();
    let file = small_sweep(dir.path(), "killme", "");
    let results = dir.path().join("results");
    let s = Sweep::load(&file).unwrap();
    assert_eq!(s.runs.len(), 4);

    let mut child = triadapt().args(["sweep", file.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let finished_rows = || s.runs.iter().filter(|r| sweep::read_row(&s.run_dir(r)).ok().flatten().is_some()).count();
    while finished_rows() == 0 {
        assert!(started.elapsed() < Duration::from_secs(120), "no run finished in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    #[cfg(target_os = "linux")]
    assert!(
        processes_mentioning(results.to_str().unwrap()).is_empty(),
        "a training child outlived the killed sweep: {:?}",
        processes_mentioning(results.to_str().unwrap())
    );

    let done: Vec<_> = s
        .runs
        .iter()
        .filter(|r| matches!(sweep::run_state(&s.run_dir(r)), sweep::RunState::Finished | sweep::RunState::Adoptable))
        .collect();
    assert!(!done.is_empty() && done.len() < 4, "{} runs finished before the kill", done.len());
    let stamps: Vec<(PathBuf, SystemTime)> = done
        .iter()
        .map(|r| {
            let p = s.run_dir(r).join("metrics.json");
            let t = mtime(&p);
            (p, t)
        })
        .collect();
    // runs.csv at the kill: whole rows only, each run at most once.
    if results.join("runs.csv").exists() {
        let (_, rows) = read_csv(&results.join("runs.csv"));
        let ids: BTreeSet<&String> = rows.iter().map(|r| &r["run_id"]).collect();
        assert_eq!(ids.len(), rows.len());
        assert!(rows.iter().all(|r| r["status"] == "finished"));
    }

    let o = run_cli(&["sweep", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{} done, {} to run", done.len(), 4 - done.len())), "{err}");
    let (header, rows) = read_csv(&results.join("runs.csv"));
    assert_eq!(rows.len(), 4, "{rows:?}");
    let ids: BTreeSet<&String> = rows.iter().map(|r| &r["run_id"]).collect();
    let want: BTreeSet<&String> = s.runs.iter().map(|r| &r.id).collect();
    assert_eq!(ids, want, "every run exactly once");
    for r in &rows {
        assert_eq!(r["status"], "finished", "{r:?}");
        assert_eq!(r["main_metric"], "accuracy");
        assert!(r["accuracy"].parse::<f64>().unwrap() > 0.0);
        assert_eq!(r["best_score"], r["accuracy"]);
        assert!(Path::new(&r["run_dir"]).join("adapter").is_dir());
        assert_eq!(r["name"], "killme");
    }
    for (p, t) in &stamps {
        assert_eq!(mtime(p), *t, "{} was trained again", p.display());
    }
    let lead = [
        "run_id",
        "name",
        "task",
        "method",
        "seed",
        "status",
        "error",
        "main_metric",
        "best_score",
        "best_step",
        "accuracy",
        "trainable_params",
        "adapter_params",
        "head_params",
        "total_rank",
        "rank_budget",
        "wall_seconds",
        "run_dir",
    ];
    assert_eq!(header, lead, "no swept keys in this sweep");

    // A third call has nothing to do; the dry run says so.
    let o = run_cli(&["sweep", file.to_str().unwrap(), "--dry-run"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("4 run(s): 4 done, 0 failed, 0 pending"), "{}", text(&o));
}

#[test]
fn failed_runs_are_recorded_and_retried_and_devices_run_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no_such_data");
    let file = small_sweep(dir.path(), "fails", &format!("zip:\n  data_dir: [data/synthetic/rte, {}]\n", missing.display()));
    let results = dir.path().join("results");
    let o = run_cli(&["sweep", file.to_str().unwrap(), "--devices", "cpu,cpu"]);
    assert!(!o.status.success(), "a failed run makes the sweep exit non-zero: {}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("4 of 8 run(s) failed"), "{}", text(&o));
    let (header, rows) = read_csv(&results.join("runs.csv"));
    assert_eq!(rows.len(), 8);
    assert_eq!(&header[5], "data_dir", "{header:?}");
    let failed: Vec<_> = rows.iter().filter(|r| r["status"] == "failed").collect();
    assert_eq!(failed.len(), 4);
    for r in &failed {
        assert!(r["data_dir"].contains("no_such_data"));
        assert!(r["error"].contains("no_such_data"), "the error names the cause: {r:?}");
    }
    let ok_stamps: Vec<(PathBuf, SystemTime)> = rows
        .iter()
        .filter(|r| r["status"] == "finished")
        .map(|r| {
            let p = Path::new(&r["run_dir"]).join("metrics.json");
            let t = mtime(&p);
            (p, t)
        })
        .collect();
    assert_eq!(ok_stamps.len(), 4);
    // Again: the failed runs are retried (and fail again), the finished ones are not touched.
    let o = run_cli(&["sweep", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("4 done, 4 to run"), "{}", text(&o));
    let (_, rows) = read_csv(&results.join("runs.csv"));
    assert_eq!(rows.len(), 8);
    for (p, t) in &ok_stamps {
        assert_eq!(mtime(p), *t);
    }
}

#[test]
fn collect_merges_shard_copies() {
    let dir = tempfile::tempdir().unwrap();
    let file = small_sweep(dir.path(), "merge", "grid:\n  method.triadapt.ref_rank: [2, 3]\n");
    let s = Sweep::load(&file).unwrap();
    assert_eq!(s.runs.len(), 6);
    // Two copies of the results folder, as two machines running --shard 0/2 and 1/2 write them;
    // the second also holds a failed attempt of a run the first finished.
    let copies = [dir.path().join("a"), dir.path().join("b")];
    for (k, copy) in copies.iter().enumerate() {
        for r in s.shard(Some(Shard { index: k, count: 2 })) {
            let mut row = s.row_for(r);
            row.status = triadapt::train::result::RunStatus::Finished;
            row.best_score = Some(0.5 + r.index as f64 / 100.0);
            row.main_metric = Some("accuracy".into());
            row.best_metrics.insert("accuracy".into(), row.best_score.unwrap());
            if r.index == 0 {
                row.best_metrics.insert("f1".into(), 0.25);
            }
            let d = copy.join("runs").join(&r.id);
            std::fs::create_dir_all(&d).unwrap();
            sweep::write_row(&d, &row).unwrap();
        }
    }
    let r0 = &s.runs[0];
    let mut failed = s.row_for(r0);
    failed.status = triadapt::train::result::RunStatus::Failed;
    failed.error = Some("out of memory".into());
    let d = copies[1].join("runs").join(&r0.id);
    std::fs::create_dir_all(&d).unwrap();
    sweep::write_row(&d, &failed).unwrap();

    let out = dir.path().join("merged.csv");
    let o = run_cli(&["collect", copies[1].to_str().unwrap(), copies[0].to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let (header, rows) = read_csv(&out);
    assert_eq!(
        header,
        [
            "run_id",
            "name",
            "task",
            "method",
            "seed",
            "method.triadapt.ref_rank",
            "status",
            "error",
            "main_metric",
            "best_score",
            "best_step",
            "accuracy",
            "f1",
            "trainable_params",
            "adapter_params",
            "head_params",
            "total_rank",
            "rank_budget",
            "wall_seconds",
            "run_dir"
        ]
    );
    assert_eq!(rows.len(), 6);
    let ids: Vec<&str> = rows.iter().map(|r| r["run_id"].as_str()).collect();
    let want: Vec<&str> = s.runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, want, "rows in sweep order, each once");
    assert_eq!(rows[0]["status"], "finished", "a finished copy wins over a failed one");
    assert!(rows[0]["run_dir"].starts_with(copies[0].to_str().unwrap()));
    assert_eq!(rows[0]["f1"], "0.25");
    assert_eq!(rows[1]["f1"], "");
    let lora = rows.iter().find(|r| r["method"] == "lora").unwrap();
    assert_eq!(lora["method.triadapt.ref_rank"], "", "blank where the key does not apply");
    let tri = rows.iter().find(|r| r["method"] == "triadapt").unwrap();
    assert_eq!(tri["method.triadapt.ref_rank"], "2");
    // Default output: runs.csv in the first folder.
    let o = run_cli(&["collect", copies[0].to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(read_csv(&copies[0].join("runs.csv")).1.len(), 3);
}

#[test]
fn slurm_prints_an_array_job_and_a_dependent_collect() {
    let o = run_cli(&["sweep", "sweeps/rte_warmup.yaml", "--slurm", "--shard", "0/6"]);
    assert!(o.status.success(), "{}", text(&o));
    let script = String::from_utf8_lossy(&o.stdout);
    assert!(script.starts_with("#!/usr/bin/env bash"), "{script}");
    assert!(script.contains("--array=0-5"), "{script}");
    assert!(script.contains(r"--shard \${SLURM_ARRAY_TASK_ID}/6"), "{script}");
    assert!(script.contains("--dependency=afterany:$array"), "{script}");
    assert!(script.contains(" collect "), "{script}");
    let o = run_cli(&["sweep", "sweeps/rte_warmup.yaml", "--slurm"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("--array=0-23"), "one task per run by default");
}

/// The shipped paper sweeps train as the authors' code did (docs/method.md): the old HF AdamW
/// and reference budgets for every method, LoRA and AdaLoRA without adapter dropout, the baselines
/// with the GLUE harness's attention and AdaLoRA with its scripts' evaluation cadence, and
/// the MNLI rank sweep writes `results/mnli` (the design's `triadapt heatmap results/mnli`).
#[test]
fn shipped_paper_sweeps_use_the_reference_settings() {
    use triadapt::optim::AdamWVariant;
    use triadapt::peft::adapted::PositionQuery;
    use triadapt::peft::schedule::BudgetMode;
    for name in ["glue_r2", "glue_r8", "mnli_ranks", "rte_warmup", "rte_interval", "rte_refrank", "squad_v2"] {
        let s = Sweep::load(&root().join("sweeps").join(format!("{name}.yaml"))).unwrap();
        assert!(!s.runs.is_empty(), "{name}");
        for r in &s.runs {
            assert_eq!(r.config.optim.adamw, AdamWVariant::LegacyHf, "{name} run {} ({})", r.id, r.method.as_str());
            assert_eq!(r.config.method.budget, BudgetMode::Reference, "{name} run {}", r.id);
            if matches!(r.method, MethodName::Lora | MethodName::Adalora) {
                assert_eq!(r.config.method.adapter_dropout(), 0.0, "{name}: {} run {} has adapter dropout", r.method.as_str(), r.id);
            }
            // The baselines' published rows come from the IncreLoRA/AdaLoRA GLUE harnesses.
            if name.starts_with("glue") || name == "mnli_ranks" {
                let want = if matches!(r.method, MethodName::Lora | MethodName::Adalora | MethodName::Increlora) {
                    PositionQuery::Frozen
                } else {
                    PositionQuery::Adapted
                };
                assert_eq!(r.config.method.position_query, want, "{name}: {} run {}", r.method.as_str(), r.id);
            }
            if r.method == MethodName::Triadapt {
                assert_eq!(r.config.method.triadapt.growth_step, None, "{name} run {}: TriAdaptLoRA keeps its own growth step", r.id);
            }
            if r.method == MethodName::Adalora && name.starts_with("glue") {
                // AdaLoRA's scripts' evaluation cadence.
                let want = match r.config.task.as_str() {
                    "mnli" | "sst2" | "qqp" => Some(3000),
                    "qnli" => Some(1000),
                    "mrpc" => Some(300),
                    _ => None,
                };
                if let Some(want) = want {
                    assert_eq!(r.config.eval_steps, want, "{name}: AdaLoRA on {}", r.config.task);
                }
            }
        }
    }
    // Every task file run on its own with --method lora or adalora has no adapter dropout.
    for e in std::fs::read_dir(root().join("experiments")).unwrap() {
        let p = e.unwrap().path();
        if p.file_stem().is_some_and(|n| n != "synthetic_rte") {
            let mut c = RunConfig::load(&p, &[]).unwrap();
            for m in [MethodName::Lora, MethodName::Adalora] {
                c.method.name = m;
                assert_eq!(c.method.adapter_dropout(), 0.0, "{}: {}", p.display(), m.as_str());
            }
        }
    }
    // Budget-matched AdaLoRA ends at the others' total rank (target 2 / 8).
    for (r, target) in [("2", 2), ("8", 8)] {
        let s = Sweep::load(&root().join(format!("sweeps/glue_r{r}_adalora_matched.yaml"))).unwrap();
        assert_eq!(s.runs.len(), 8 * 5);
        assert!(s.runs.iter().all(|run| run.config.method.adalora.target_rank == target), "glue_r{r}_adalora_matched");
    }
    let mnli = Sweep::load(&root().join("sweeps/mnli_ranks.yaml")).unwrap();
    assert_eq!(mnli.out, PathBuf::from("results/mnli"));
}

/// A sweep on a cluster: while a child trains, its train.log gets plain log lines and its
/// curve.csv is flushed; SIGTERM to the sweep reaches the child, which checkpoints, and the
/// sweep exits with 75 leaving the run pending; the same command resumes it from its checkpoint
/// (not step 0), and runs.csv lists it once.
#[test]
fn an_interrupted_sweep_resumes_its_run_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let body = format!(
        "name: preempt\nbase: {}\nout: {}\nmethods: [triadapt]\nseeds: [1]\nset:\n  max_steps: 200\n  save_steps: 20\n  log_steps: 10\n  eval_steps: 100\n",
        base_yaml(),
        out.display()
    );
    let file = write(dir.path(), "preempt.yaml", &body);
    let sweep = Sweep::load(&file).unwrap();
    let run_dir = sweep.run_dir(&sweep.runs[0]);
    let mut child = triadapt()
        .args(["sweep", file.to_str().unwrap(), "--devices", "cpu"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    // While it runs: log lines in train.log, curve.csv flushed, a checkpoint.
    loop {
        let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap_or_default();
        let rows = std::fs::read_to_string(run_dir.join("curve.csv")).map(|c| c.lines().count()).unwrap_or(0);
        let checkpointed = std::fs::read_dir(run_dir.join("checkpoints"))
            .map(|d| d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().starts_with("step-")))
            .unwrap_or(false);
        if log.contains("step 40/200 ") && rows > 40 && checkpointed {
            assert!(log.contains("loss") && log.contains("ex/s") && log.contains("eta"), "{log}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "no log lines / checkpoint in time:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(75), "the sweep's exit status: {status:?}");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "interrupted");
    let stopped = m["steps"].as_i64().unwrap();
    assert!((40..200).contains(&stopped), "stopped at {stopped}");
    assert!(!run_dir.join("row.json").exists(), "an interrupted run must stay pending");
    let o = run_cli(&["sweep", file.to_str().unwrap(), "--devices", "cpu"]);
    assert!(o.status.success(), "{}", text(&o));
    let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap();
    assert!(log.contains(&format!("from step {stopped} of 200")), "the run did not resume from its checkpoint:\n{log}");
    let (_, rows) = read_csv(&out.join("runs.csv"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], "finished");
    assert_eq!(std::fs::read_to_string(run_dir.join("curve.csv")).unwrap().lines().count(), 201);
}

/// `--slurm` takes the cluster's sbatch options and devices from flags (or
/// $TRIADAPT_SBATCH_OPTS) and requeues preempted tasks, warning them with SIGUSR1.
#[test]
fn the_slurm_script_requeues_with_a_warning_signal_and_takes_options() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "s.yaml", &format!("name: s\nbase: {}\nmethods: [lora]\nseeds: [1, 2]\n", base_yaml()));
    let o =
        run_cli(&["sweep", file.to_str().unwrap(), "--slurm", "--sbatch-opts", "--cpus-per-task=1 --partition=debug", "--devices", "cpu"]);
    assert!(o.status.success(), "{}", text(&o));
    let script = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(script.contains("SBATCH_OPTS='--cpus-per-task=1 --partition=debug'"), "{script}");
    assert!(script.contains("--requeue") && script.contains("--signal=B:USR1@120"), "{script}");
    assert!(script.contains("--devices cpu") && script.contains("exec "), "{script}");
    assert!(!script.contains("--gres"), "{script}");
    let o = triadapt().env("TRIADAPT_SBATCH_OPTS", "--account=lab").args(["sweep", file.to_str().unwrap(), "--slurm"]).output().unwrap();
    let script = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(script.contains("SBATCH_OPTS='--account=lab'") && script.contains("--devices 0"), "{script}");
}
