//! Several `triadapt sweep` processes on one results folder: they divide the runs through the
//! claims in the run folders (each run trained once, listed once), a claim left by a killed
//! process is taken over and its run resumed from the checkpoint, a live claim of another host
//! is left alone until it goes stale, an owner whose claim was taken over stops its run without
//! a row, and `--dry-run` says who holds what.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use triadapt::sweep::claim::Owner;
use triadapt::sweep::{self, Sweep};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn triadapt() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_triadapt"));
    // The tiny model on a loaded machine: one thread per process is many times faster.
    c.current_dir(root()).env("OMP_NUM_THREADS", "1");
    c
}

fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A sweep of the tiny model on the synthetic pair task: `methods` x `seeds`, `set` added.
fn sweep_file(dir: &Path, name: &str, methods: &str, seeds: &str, set: &str) -> PathBuf {
    let body = format!(
        "name: {name}\nout: {out}\nbase: {base}\nmethods: [{methods}]\nseeds: [{seeds}]\nset:\n  max_eval_examples: 64\n{set}",
        out = dir.join("results").display(),
        base = root().join("experiments/synthetic_rte.yaml").display()
    );
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, body).unwrap();
    p
}

/// runs.csv as (run_id, status) pairs.
fn csv_rows(path: &Path) -> Vec<(String, String)> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (id, status) = (col("run_id"), col("status"));
    r.records().map(|rec| rec.unwrap()).map(|rec| (rec[id].to_string(), rec[status].to_string())).collect()
}

/// The lines of a run's train.log that the sweep writes when it starts the run.
fn starts(run_dir: &Path) -> Vec<String> {
    let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap_or_default();
    log.lines().filter(|l| l.starts_with("sweep ") && l.contains(" started by ")).map(str::to_string).collect()
}

fn claim_files(run_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains("claim")).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// N in "this call ran N run(s)".
fn ran(o: &Output) -> usize {
    let out = String::from_utf8_lossy(&o.stdout);
    let rest = out.split("this call ran ").nth(1).unwrap_or_else(|| panic!("no summary: {}", text(o)));
    rest.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn two_sweeps_of_one_file_divide_the_runs_and_run_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(
        dir.path(),
        "twins",
        "triadapt, lora",
        "1, 2, 3",
        "  max_steps: 40\n  eval_steps: 10\n  method.triadapt.warmup_steps: 5\n  method.triadapt.interval: 5\n",
    );
    let s = Sweep::load(&file).unwrap();
    assert_eq!(s.runs.len(), 6);
    // One process with two workers, one with one, started together.
    let spawn =
        |extra: &[&str]| triadapt().arg("sweep").arg(&file).args(extra).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (spawn(&["--devices", "cpu,cpu"]), spawn(&[]));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    assert_eq!(ran(&a) + ran(&b), 6, "every run trained by exactly one process:\n{}\n{}", text(&a), text(&b));
    assert!(ran(&a) > 0 && ran(&b) > 0, "both processes took runs:\n{}\n{}", text(&a), text(&b));
    for r in &s.runs {
        let d = s.run_dir(r);
        assert_eq!(starts(&d).len(), 1, "run {}: {:?}", r.id, starts(&d));
        assert!(claim_files(&d).is_empty(), "run {}: claims left: {:?}", r.id, claim_files(&d));
    }
    let rows = csv_rows(&dir.path().join("results/runs.csv"));
    let mut ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    let mut want: Vec<&str> = s.runs.iter().map(|r| r.id.as_str()).collect();
    want.sort();
    assert_eq!(ids, want, "one row per run");
    assert!(rows.iter().all(|(_, st)| st == "finished"), "{rows:?}");
}

#[test]
fn a_claim_left_by_a_killed_sweep_is_taken_over_and_the_run_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let file =
        sweep_file(dir.path(), "killed", "triadapt", "1", "  max_steps: 200\n  save_steps: 20\n  log_steps: 10\n  eval_steps: 100\n");
    let s = Sweep::load(&file).unwrap();
    let run_dir = s.run_dir(&s.runs[0]);
    let mut child = triadapt().args(["sweep", file.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    let checkpointed = || {
        std::fs::read_dir(run_dir.join("checkpoints"))
            .map(|d| d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().starts_with("step-")))
            .unwrap_or(false)
    };
    while !checkpointed() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The claim names the sweep process; the dry run shows it running, held by that pid.
    assert_eq!(claim_files(&run_dir), ["claim.1.json"]);
    let owner: Owner = serde_json::from_str(&std::fs::read_to_string(run_dir.join("claim.1.json")).unwrap()).unwrap();
    assert_eq!(owner.pid, child.id());
    let dry = triadapt().args(["sweep", file.to_str().unwrap(), "--dry-run"]).output().unwrap();
    let out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(out.contains("running") && out.contains(&format!("{} pid {} since {}", owner.host, owner.pid, owner.since)), "{out}");
    assert!(out.contains("1 run(s): 0 done, 0 failed, 0 pending, 1 running"), "{out}");

    child.kill().unwrap(); // SIGKILL: no chance to remove the claim
    child.wait().unwrap();
    assert_eq!(claim_files(&run_dir), ["claim.1.json"], "the killed sweep's claim stays");
    let dry = triadapt().args(["sweep", file.to_str().unwrap(), "--dry-run"]).output().unwrap();
    let out = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(out.contains(&format!("stale: {} pid {}", owner.host, owner.pid)) && out.contains("its process is gone"), "{out}");
    assert!(out.contains("0 done, 0 failed, 1 pending, 0 running"), "{out}");
    // The child died with the sweep (Linux); wait for it to be gone before reading its steps.
    std::thread::sleep(Duration::from_millis(300));
    let saved: Vec<i64> = std::fs::read_dir(run_dir.join("checkpoints"))
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("step-").and_then(|n| n.parse().ok()))
        .collect();
    let newest = *saved.iter().max().unwrap();

    let o = triadapt().args(["sweep", file.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ran(&o), 1);
    let starts = starts(&run_dir);
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(
        starts[1].contains("resuming from its checkpoint")
            && starts[1].contains(&format!("taking over the claim of {} pid {}", owner.host, owner.pid)),
        "{starts:?}"
    );
    let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap();
    assert!(log.contains(&format!("from step {newest} of 200")), "not resumed from step {newest}:\n{log}");
    assert!(claim_files(&run_dir).is_empty(), "{:?}", claim_files(&run_dir));
    assert_eq!(csv_rows(&dir.path().join("results/runs.csv")), [(s.runs[0].id.clone(), "finished".to_string())]);
}

#[test]
fn a_live_claim_of_another_host_is_left_alone_until_it_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "elsewhere", "lora", "1, 2", "  max_steps: 10\n  eval_steps: 10\n");
    let s = Sweep::load(&file).unwrap();
    let held = &s.runs[1];
    let held_dir = s.run_dir(held);
    std::fs::create_dir_all(&held_dir).unwrap();
    // Another machine's sweep holds run 1 (its pid means nothing here).
    let other = Owner {
        host: "node-17".into(),
        boot_id: Some("b0".into()),
        pid: 4242,
        since: "2026-12-03T10:00:00Z".into(),
        token: "node-17-4242-1-0".into(),
        slurm: None,
    };
    let claim = held_dir.join("claim.1.json");
    std::fs::write(&claim, serde_json::to_string(&other).unwrap()).unwrap();

    let o = triadapt().args(["sweep", file.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ran(&o), 1);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("(1 of them claimed by other processes now)"), "{err}");
    assert!(
        err.contains(&format!(
            "{} {} lora seed {}: claimed by node-17 pid 4242 since 2026-12-03T10:00:00Z: left to that process",
            held.id, held.task, held.seed
        )),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 left to other processes that hold them"), "{}", text(&o));
    assert!(starts(&held_dir).is_empty() && sweep::read_row(&held_dir).unwrap().is_none(), "the held run was not touched");
    assert_eq!(csv_rows(&dir.path().join("results/runs.csv")).len(), 1);

    // Ten minutes without a refresh by default; here two seconds, and the claim is older.
    std::fs::File::options().write(true).open(&claim).unwrap().set_modified(std::time::SystemTime::now() - Duration::from_secs(5)).unwrap();
    let dry = triadapt().env("TRIADAPT_CLAIM_STALE_SECONDS", "2").args(["sweep", file.to_str().unwrap(), "--dry-run"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&dry.stdout)
            .contains("stale: node-17 pid 4242 since 2026-12-03T10:00:00Z (not refreshed within the stale time"),
        "{}",
        text(&dry)
    );
    let o = triadapt().env("TRIADAPT_CLAIM_STALE_SECONDS", "2").args(["sweep", file.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ran(&o), 1, "{}", text(&o));
    assert!(starts(&held_dir)[0].contains("taking over the claim of node-17 pid 4242"), "{:?}", starts(&held_dir));
    assert!(claim_files(&held_dir).is_empty());
    let rows = csv_rows(&dir.path().join("results/runs.csv"));
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(_, st)| st == "finished"), "{rows:?}");
    // A stale time that is not a number is an error naming the variable.
    let o = triadapt().env("TRIADAPT_CLAIM_STALE_SECONDS", "soon").args(["sweep", file.to_str().unwrap(), "--dry-run"]).output().unwrap();
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("TRIADAPT_CLAIM_STALE_SECONDS"), "{}", text(&o));
}

/// Processes whose command line mentions `needle` (Linux /proc).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn a_sweep_whose_claim_was_taken_over_stops_its_run_without_a_row() {
    let dir = tempfile::tempdir().unwrap();
    let file = sweep_file(dir.path(), "loser", "lora", "1", "  max_steps: 5000\n  eval_steps: 5000\n");
    let s = Sweep::load(&file).unwrap();
    let run_dir = s.run_dir(&s.runs[0]);
    // A 20 s stale time: the sweep refreshes (and checks) its claim every second.
    let child = triadapt()
        .env("TRIADAPT_CLAIM_STALE_SECONDS", "20")
        .args(["sweep", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while starts(&run_dir).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(60), "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(claim_files(&run_dir), ["claim.1.json"]);
    // Another host judged the claim stale and took the run over (the next generation).
    let other = Owner {
        host: "node-17".into(),
        boot_id: None,
        pid: 4242,
        since: "2026-12-03T11:00:00Z".into(),
        token: "node-17-4242-2-0".into(),
        slurm: None,
    };
    std::fs::write(run_dir.join("claim.2.json"), serde_json::to_string(&other).unwrap()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(90), "the sweep did not stop its run");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(ran(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 taken over by other processes"), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("another process took the run over (node-17 pid 4242 since 2026-12-03T11:00:00Z)"),
        "{}",
        text(&o)
    );
    assert!(sweep::read_row(&run_dir).unwrap().is_none(), "the loser wrote a row");
    assert_eq!(claim_files(&run_dir), ["claim.2.json"], "the winner's claim stays, the loser's is gone");
    std::thread::sleep(Duration::from_millis(300));
    let results = dir.path().join("results");
    assert!(processes_mentioning(results.to_str().unwrap()).is_empty(), "the training child outlived the lost claim");
}
