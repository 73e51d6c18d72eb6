//! `triadapt sweep` and `triadapt collect`: run a sweep's runs (each as a child
//! `triadapt train` process, so a crash ends one run, not the sweep), each under a claim so that
//! several sweep processes on one folder divide the runs (src/sweep/claim.rs), resume, shard,
//! print a Slurm submission script, and rebuild runs.csv.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::sweep::claim::{self, Attempt, Claim, Found, Holder, Kept, Stale};
use crate::sweep::{self, PlannedRun, Row, RunState, Shard, Sweep, CSV_FILE, RESOLVED_FILE};
use crate::train::result::RunStatus;

/// `triadapt sweep`'s arguments.
// The field docs are --help text: `[...]` and `<...>` in them are literal, not links or HTML.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, clap::Args)]
pub struct SweepArgs {
    /// Sweep YAML (e.g. sweeps/demo.yaml).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the runs (id, task, method, seed, swept values, done/failed/pending/running,
    /// and who holds a claimed run: host, pid, since) and stop.
    #[arg(long)]
    pub dry_run: bool,
    /// Only every N-th run starting at I (0-based; run i belongs to shard i % N).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Run one run per listed device at a time, e.g. --devices 0,1 (cuda:0, cuda:1); names
    /// such as cpu or cuda:2 are taken as they are. Default: one run at a time on the
    /// config's device.
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
    /// Print a bash script that submits the sweep to Slurm (an array job, one task per
    /// shard: N from --shard I/N, else one per run; requeued on preemption, its runs
    /// checkpointing on SIGUSR1 120 s ahead and resuming) and a dependent `triadapt
    /// collect`. The tasks use --devices (default 0; `cpu` on a CPU cluster).
    #[arg(long)]
    pub slurm: bool,
    /// sbatch options for --slurm (default: $TRIADAPT_SBATCH_OPTS, else
    /// "--gres=gpu:1 --cpus-per-task=8 --time=48:00:00").
    #[arg(long, value_name = "OPTS", allow_hyphen_values = true)]
    pub sbatch_opts: Option<String>,
}

/// `triadapt collect`'s arguments.
// The field docs are --help text: `[...]` and `<...>` in them are literal, not links or HTML.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, clap::Args)]
pub struct CollectArgs {
    /// Results folders (each holding runs/<id>/row.json).
    #[arg(value_name = "RESULTS_DIR", required = true)]
    pub dirs: Vec<PathBuf>,
    /// Output file (default: runs.csv in the first folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `0,1` -> cuda:0, cuda:1; `cpu` and `cuda:N` are taken as they are.
pub fn parse_devices(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for d in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let name = if d.chars().all(|c| c.is_ascii_digit()) { format!("cuda:{d}") } else { d.to_string() };
        crate::device::parse_device_name(&name).with_context(|| format!("--devices {s:?}"))?;
        out.push(name);
    }
    if out.is_empty() {
        bail!("--devices {s:?}: no device given (e.g. --devices 0,1)");
    }
    Ok(out)
}

pub fn run(args: &SweepArgs) -> Result<()> {
    let shard = args.shard.as_deref().map(str::parse::<Shard>).transpose()?;
    let devices = args.devices.as_deref();
    let sweep = Sweep::load(&args.file)?;
    if args.slurm {
        let opts = args
            .sbatch_opts
            .clone()
            .or_else(|| std::env::var("TRIADAPT_SBATCH_OPTS").ok())
            .unwrap_or_else(|| DEFAULT_SBATCH_OPTS.to_string());
        print!("{}", slurm_script(&sweep, &args.file, shard, &opts, devices.unwrap_or("0"))?);
        return Ok(());
    }
    let me = claim::Me::this_process();
    let stale_after = claim::stale_after()?;
    let selected = sweep.shard(shard);
    let states: Vec<RunState> = selected.iter().map(|r| sweep::run_state(&sweep.run_dir(r))).collect();
    let holders: Vec<Holder> = selected.iter().map(|r| claim::holder(&sweep.run_dir(r), &me, stale_after)).collect::<Result<_>>()?;
    let held = |h: &Holder| matches!(h, Holder::Held(_));
    if args.dry_run {
        print!("{}", table(&sweep, &selected, &states, &holders));
        let count = |f: fn(&RunState) -> bool| states.iter().zip(&holders).filter(|(s, h)| f(s) && !held(h)).count();
        println!(
            "{} run(s){}: {} done, {} failed, {} pending, {} running{}; results in {}",
            selected.len(),
            shard.map(|s| format!(" in shard {}/{} of {}", s.index, s.count, sweep.runs.len())).unwrap_or_default(),
            states.iter().filter(|s| matches!(s, RunState::Finished | RunState::Adoptable)).count(),
            count(|s| matches!(s, RunState::Failed)),
            count(|s| matches!(s, RunState::Pending)),
            states.iter().zip(&holders).filter(|(s, h)| !matches!(s, RunState::Finished | RunState::Adoptable) && held(h)).count(),
            if sweep.merged > 0 { format!(" ({} identical expansion point(s) merged)", sweep.merged) } else { String::new() },
            sweep.out.display()
        );
        return Ok(());
    }
    let devices = devices.map(parse_devices).transpose()?;
    let runs_dir = sweep.out.join("runs");
    std::fs::create_dir_all(&runs_dir).with_context(|| format!("cannot create {}", runs_dir.display()))?;

    let mut todo: Vec<Todo> = Vec::new();
    let mut busy_at_start = 0;
    for ((run, state), holder) in selected.iter().zip(&states).zip(&holders) {
        let dir = sweep.run_dir(run);
        match state {
            RunState::Finished => refresh_row(&sweep, run, &dir)?,
            // Its owner is writing the row now.
            RunState::Adoptable if held(holder) => {}
            RunState::Adoptable => adopt(&sweep, run, &dir)?,
            RunState::Failed | RunState::Pending => {
                busy_at_start += usize::from(held(holder));
                todo.push(Todo { run, row_stamp: row_stamp(&dir) });
            }
        }
    }
    let csv_path = sweep.out.join(CSV_FILE);
    let csv_lock = Mutex::new(());
    let write_csv = || -> Result<usize> {
        let _guard = csv_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Other sweep processes on this folder rebuild it too: one at a time, so the last
        // rebuild sees every row written before it.
        let _across = FileLock::exclusive(&sweep.out.join(CSV_LOCK_FILE))?;
        sweep::collect(std::slice::from_ref(&sweep.out), &csv_path)
    };
    write_csv()?;
    let skipped = selected.len() - todo.len();
    eprintln!(
        "sweep {}: {} run(s){}, {} done, {} to run{}{}",
        sweep.name,
        selected.len(),
        shard.map(|s| format!(" in shard {}/{}", s.index, s.count)).unwrap_or_default(),
        skipped,
        todo.len(),
        if busy_at_start > 0 { format!(" ({busy_at_start} of them claimed by other processes now)") } else { String::new() },
        devices.as_ref().map(|d| format!(" on {}", d.join(", "))).unwrap_or_default()
    );

    let exe = std::env::current_exe().context("cannot find the triadapt executable")?;
    // Runs at once share the cores equally, GPU children included (unless the user chose a
    // thread count).
    let slots = devices.as_ref().map_or(1, Vec::len);
    // In a Slurm task the cores are the allocation's, not the machine's.
    let allocated = std::env::var("SLURM_CPUS_PER_TASK").ok().and_then(|v| v.parse::<usize>().ok());
    let cores = allocated.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cpu_threads = ((slots > 1 || allocated.is_some()) && std::env::var_os("OMP_NUM_THREADS").is_none()).then(|| (cores / slots).max(1));
    let bar = crate::progress::step_bar(todo.len() as u64, std::io::stderr().is_terminal(), &format!("sweep {}", sweep.name));
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    let total = todo.len();
    let done = Mutex::new((0usize, 0usize)); // (ended, failed)
    let report = |run: &PlannedRun, row: &Row| {
        let mut d = done.lock().unwrap_or_else(|e| e.into_inner());
        d.0 += 1;
        if row.status != RunStatus::Finished {
            d.1 += 1;
        }
        say(format!("[{}/{total}] {}", d.0, describe(run, row)));
        bar.inc(1);
    };
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let fail = |what: String| failures.lock().unwrap_or_else(|e| e.into_inner()).push(what);
    // SIGTERM, SIGINT, SIGUSR1 (a cluster preempting the job): the running children are asked
    // to checkpoint and stop, no new run starts, and the sweep exits with code 75.
    crate::train::signals::install();
    let children = Children::default();
    let interrupted = Mutex::new(0usize);
    // Runs another process ended during this call (found when claimed), and runs this process
    // had to stop because another took them over.
    let ended_elsewhere = Mutex::new(0usize);
    let lost = Mutex::new(0usize);
    let bump = |m: &Mutex<usize>| *m.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    let finished_all = std::sync::atomic::AtomicBool::new(false);
    let one = |todo: &Todo, device: Option<&str>| -> Turn {
        let run = todo.run;
        if crate::train::signals::stop_requested().is_some() {
            return Turn::Done;
        }
        let dir = sweep.run_dir(run);
        let (claim, took_over) = match claim::try_claim(&dir, &me, stale_after) {
            Ok(Attempt::Held(found)) => return Turn::ClaimedElsewhere(found.describe()),
            Ok(Attempt::Claimed { claim, took_over }) => (claim, took_over),
            Err(e) => {
                fail(format!("{}: {e:#}", run.id));
                return Turn::Done;
            }
        };
        let mut outcome = Ok(());
        if row_stamp(&dir) != todo.row_stamp {
            // Another process ran it during this call (its row is not the one planned on).
            bump(&ended_elsewhere);
            bar.inc(1);
        } else if sweep::run_state(&dir) == RunState::Adoptable {
            // Its training finished in a process killed before it wrote the row.
            outcome = adopt(&sweep, run, &dir);
            bump(&ended_elsewhere);
            bar.inc(1);
        } else {
            bar.set_message(format!("{} {} {}", run.id, run.task, run.method.as_str()));
            if let Some((found, why)) = &took_over {
                say(format!("{}: taking over the claim of {} ({})", describe_planned(run), found.describe(), why.label()));
            }
            let attempt = ClaimedRun { claim: &claim, took_over: took_over.as_ref(), stale_after };
            match run_one(&exe, &sweep, run, device, cpu_threads, &children, &attempt) {
                Ok(RunEnd::Interrupted) => {
                    bump(&interrupted);
                    say(format!("{}: interrupted, checkpoint saved (pending: the next call resumes it)", describe_planned(run)));
                }
                Ok(RunEnd::Lost(by)) => {
                    bump(&lost);
                    say(format!("{}: another process took the run over ({by}); this process stopped its training", describe_planned(run)));
                    bar.inc(1);
                }
                Ok(RunEnd::Ended(row)) => report(run, &row),
                Err(e) => {
                    // The row could not be written (e.g. a full disk): say so, keep going.
                    fail(format!("{}: {e:#}", run.id));
                    let mut row = sweep.row_for(run);
                    row.status = RunStatus::Failed;
                    row.error = Some(format!("{e:#}"));
                    report(run, &row);
                }
            }
        }
        if let Err(e) = outcome.and_then(|()| claim.release()) {
            fail(format!("{}: {e:#}", run.id));
        }
        if let Err(e) = write_csv() {
            fail(format!("{}: {e:#}", csv_path.display()));
        }
        Turn::Done
    };
    let forward = || {
        // Forwards a stop request to the children once, then waits for the runs to end.
        while !finished_all.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some(sig) = crate::train::signals::stop_requested() {
                children.signal(sig);
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let busy = std::thread::scope(|s| {
        s.spawn(forward);
        let busy = run_all(&devices, &todo, &one);
        finished_all.store(true, std::sync::atomic::Ordering::SeqCst);
        busy
    });
    bar.finish_and_clear();
    let rows = write_csv()?;
    let (ended, failed) = *done.lock().unwrap_or_else(|e| e.into_inner());
    let stopped = *interrupted.lock().unwrap_or_else(|e| e.into_inner());
    let elsewhere = *ended_elsewhere.lock().unwrap_or_else(|e| e.into_inner());
    let lost = *lost.lock().unwrap_or_else(|e| e.into_inner());
    for (run, who) in &busy {
        eprintln!("{}: claimed by {who}: left to that process", describe_planned(run));
    }
    let mut others = Vec::new();
    if !busy.is_empty() {
        others.push(format!("{} left to other processes that hold them", busy.len()));
    }
    if lost > 0 {
        others.push(format!("{lost} taken over by other processes"));
    }
    println!(
        "{} ({rows} row(s)); this call ran {ended} run(s), {failed} failed, {stopped} interrupted, skipped {} done{}",
        csv_path.display(),
        skipped + elsewhere,
        others.iter().map(|o| format!(", {o}")).collect::<String>()
    );
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    if !failures.is_empty() {
        bail!("sweep {}: {}", sweep.name, failures.join("; "));
    }
    if let Some(signal) = crate::train::signals::stop_requested() {
        return Err(crate::train::signals::Interrupted { signal, step: -1 }.into());
    }
    if failed > 0 {
        bail!(
            "sweep {}: {failed} of {ended} run(s) failed (their errors are in {}); run the same command again to retry them",
            sweep.name,
            csv_path.display()
        );
    }
    Ok(())
}

/// A run this call may have to train, and its row file's mtime when the call planned it: a
/// different one when claimed means another process ended the run meanwhile.
struct Todo<'a> {
    run: &'a PlannedRun,
    row_stamp: Option<SystemTime>,
}

fn row_stamp(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir.join(sweep::ROW_FILE)).and_then(|m| m.modified()).ok()
}

/// What became of one turn at a run.
enum Turn {
    Done,
    /// A live process holds it (who).
    ClaimedElsewhere(String),
}

/// Runs `one` over `todo`: one at a time, or one per device at a time. A run another process
/// holds goes to the back of the queue once (its holder may have ended by then); the runs still
/// held at their second turn are returned with their holders.
fn run_all<'a>(
    devices: &Option<Vec<String>>,
    todo: &'a [Todo<'a>],
    one: &(dyn Fn(&Todo, Option<&str>) -> Turn + Sync),
) -> Vec<(&'a PlannedRun, String)> {
    let slots: Vec<Option<&str>> = match devices {
        None => vec![None],
        Some(devs) => devs.iter().map(|d| Some(d.as_str())).collect(),
    };
    let queue = Mutex::new(todo.iter().map(|t| (t, false)).collect::<VecDeque<_>>());
    let busy = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for slot in slots {
            let (queue, busy) = (&queue, &busy);
            s.spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((t, second_turn)) = next else { break };
                if let Turn::ClaimedElsewhere(who) = one(t, slot) {
                    if second_turn {
                        busy.lock().unwrap_or_else(|e| e.into_inner()).push((t.run, who));
                    } else {
                        queue.lock().unwrap_or_else(|e| e.into_inner()).push_back((t, true));
                    }
                }
            });
        }
    });
    let mut busy = busy.into_inner().unwrap_or_else(|e| e.into_inner());
    busy.sort_by_key(|(r, _)| r.index);
    busy
}

/// Writes the row of a run whose training finished but whose row was not written (its sweep
/// was killed), without training again.
fn adopt(sweep: &Sweep, run: &PlannedRun, dir: &Path) -> Result<()> {
    let mut row = sweep.row_for(run);
    if let Some(m) = sweep::read_metrics(dir) {
        row.fill_from_metrics(&m);
    }
    row.status = RunStatus::Finished;
    row.error = None;
    sweep::write_row(dir, &row)
}

/// Beside runs.csv: the lock of its rebuild.
const CSV_LOCK_FILE: &str = ".runs.csv.lock";

/// An exclusive flock(2) on a file, held until dropped (released by the kernel if the process
/// dies). On a filesystem without locks (flock fails with ENOLCK or EOPNOTSUPP) it holds nothing:
/// runs.csv may then miss a row written at the same moment, and `triadapt collect` rebuilds it.
struct FileLock(Option<std::fs::File>);

impl FileLock {
    fn exclusive(path: &Path) -> Result<FileLock> {
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::ENOLCK | libc::EOPNOTSUPP)) {
                return Ok(FileLock(None));
            }
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
        Ok(FileLock(Some(f)))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::unix::io::AsRawFd;
        if let Some(f) = &self.0 {
            // SAFETY: as above.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

/// `triadapt collect DIR... [--out FILE]`: runs.csv from the row files of one or more copies of
/// a results folder (default output: the first folder's runs.csv).
pub fn collect(args: &CollectArgs) -> Result<()> {
    let dirs = &args.dirs;
    let Some(first) = dirs.first() else { bail!("collect: give at least one results folder") };
    let out = args.out.clone().unwrap_or_else(|| first.join(CSV_FILE));
    let n = sweep::collect(dirs, &out)?;
    println!("{} ({n} row(s))", out.display());
    Ok(())
}

/// A finished run's row, rewritten if the sweep now names or orders it differently.
fn refresh_row(sweep: &Sweep, run: &PlannedRun, dir: &Path) -> Result<()> {
    let Some(mut row) = sweep::read_row(dir)? else { return Ok(()) };
    let fresh = sweep.row_for(run);
    if row.name != fresh.name || row.index != fresh.index || row.swept != fresh.swept {
        row.name = fresh.name;
        row.index = fresh.index;
        row.swept = fresh.swept;
        sweep::write_row(dir, &row)?;
    }
    Ok(())
}

/// A run in a message: id, task, method, seed.
fn describe_planned(run: &PlannedRun) -> String {
    format!("{} {} {} seed {}", run.id, run.task, run.method.as_str(), run.seed)
}

/// One line about an ended run.
fn describe(run: &PlannedRun, row: &Row) -> String {
    let swept: Vec<String> = run.swept.iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", sweep::value_text(v)))).collect();
    let what = format!("{}{}{}", describe_planned(run), if swept.is_empty() { "" } else { " " }, swept.join(" "));
    let secs = row.wall_seconds.map(|s| format!(" ({s:.1} s)")).unwrap_or_default();
    if row.status == RunStatus::Finished {
        let score = match (&row.main_metric, row.best_score) {
            (Some(m), Some(s)) => format!(" {m} {s:.4}"),
            _ => String::new(),
        };
        format!("{what}: finished{score}{secs}")
    } else {
        format!("{what}: FAILED{secs}: {}", row.error.as_deref().unwrap_or("unknown error"))
    }
}

/// Makes a child die with the sweep process (Linux), so a killed sweep leaves no run behind
/// that would go on writing a folder the next call retrains.
#[cfg(target_os = "linux")]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated after fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The parent died between fork and prctl.
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_cmd: &mut Command) {}

fn status_text(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("the training process was killed by signal {sig}");
        }
    }
    format!("the training process exited with {status}")
}

/// The last `error: ...` line of a child's log.
fn last_error_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find_map(|l| l.strip_prefix("error: ").map(str::to_string))
}

/// Whether a run folder holds a checkpoint of this very run (its config.yaml the same run):
/// then the child continues it instead of starting again.
fn resumable(dir: &Path, run: &PlannedRun) -> bool {
    if crate::train::checkpoint::latest(dir).is_none() {
        return false;
    }
    match crate::config::RunConfig::load(&dir.join("config.yaml"), &[]) {
        Ok(stored) => crate::train::run::config_differences(&stored, &run.config).is_empty(),
        Err(_) => false,
    }
}

/// The claim a run is trained under: refreshed while the child runs, and named in train.log.
struct ClaimedRun<'a> {
    claim: &'a Claim,
    took_over: Option<&'a (Found, Stale)>,
    stale_after: Duration,
}

/// How a child run ended.
enum RunEnd {
    /// Finished or failed: its row file is written.
    Ended(Box<Row>),
    /// Stopped on a signal after saving a checkpoint: the run stays pending (the next sweep call
    /// resumes it).
    Interrupted,
    /// Another process took the claim over (who): the child was killed, no row written.
    Lost(String),
}

/// Empties a run folder for a fresh start, keeping the claims in it.
fn clear_run_dir(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("cannot list {}", dir.display()))?;
        if claim::belongs_to_claims(&e.file_name().to_string_lossy()) {
            continue;
        }
        let p = e.path();
        let removed = if e.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        removed.with_context(|| format!("cannot clear {}", p.display()))?;
    }
    Ok(())
}

/// Trains one run in a child `triadapt train` process, under its claim, and writes its row file.
fn run_one(
    exe: &Path,
    sweep: &Sweep,
    run: &PlannedRun,
    device: Option<&str>,
    threads: Option<usize>,
    children: &Children,
    held: &ClaimedRun,
) -> Result<RunEnd> {
    let dir = sweep.run_dir(run);
    let resume = resumable(&dir, run);
    if !resume {
        // A failed attempt, or one interrupted before its first checkpoint: start clean.
        clear_run_dir(&dir)?;
    }
    let _ = std::fs::remove_file(dir.join(sweep::ROW_FILE));
    let resolved = dir.join(RESOLVED_FILE);
    crate::files::write_atomic(&resolved, run.config.to_yaml().as_bytes())?;
    let log_path = dir.join("train.log");
    // A resumed run appends to the log of its earlier attempts.
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    {
        use std::io::Write;
        let how = if resume { "resuming from its checkpoint" } else { "from step 0" };
        let over =
            held.took_over.map(|(f, why)| format!(", taking over the claim of {} ({})", f.describe(), why.label())).unwrap_or_default();
        writeln!(log, "sweep {}: run {} started by {} ({how}{over})", sweep.name, run.id, held.claim.owner.describe())
            .with_context(|| format!("cannot write {}", log_path.display()))?;
    }
    let parent_visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let mut cmd = child_command(exe, &resolved, &dir, device, threads, parent_visible.as_deref());
    if resume {
        cmd.arg("--resume");
    }
    // Off a terminal (a Slurm job log, nohup, CI) the child's lines also reach the sweep's
    // stderr, prefixed with the run id, so `tail -f` on the job log shows where every run is.
    let pass_through = !std::io::stderr().is_terminal();
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?);
    if pass_through {
        cmd.stderr(Stdio::piped());
    } else {
        cmd.stderr(log.try_clone()?);
    }
    die_with_parent(&mut cmd);
    let started = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("cannot start {}", exe.display()))?;
    children.add(child.id());
    let relay = child.stderr.take().map(|from| {
        let id = run.id.clone();
        std::thread::spawn(move || relay_lines(from, log, &id))
    });
    let status = wait_refreshing(&mut child, held);
    children.remove(child.id());
    if let Some(relay) = relay {
        // The pipe closes when the child ends (or is killed): every line has been relayed then.
        let _ = relay.join();
    }
    let status = match status.with_context(|| format!("waiting for {}", exe.display()))? {
        Ok(status) => status,
        Err(by) => return Ok(RunEnd::Lost(by)),
    };
    if status.code() == Some(i32::from(crate::train::signals::EXIT_INTERRUPTED)) {
        return Ok(RunEnd::Interrupted);
    }
    let mut row = sweep.row_for(run);
    let metrics = sweep::read_metrics(&dir);
    if let Some(m) = &metrics {
        row.fill_from_metrics(m);
    }
    let finished = status.success() && metrics.as_ref().and_then(|m| m.get("status")).and_then(|s| s.as_str()) == Some("finished");
    if finished {
        row.status = RunStatus::Finished;
        row.error = None;
    } else {
        row.status = RunStatus::Failed;
        if row.error.is_none() {
            row.error = Some(last_error_line(&log_path).unwrap_or_else(|| status_text(status)));
        }
    }
    if row.wall_seconds.is_none() {
        row.wall_seconds = Some(started.elapsed().as_secs_f64());
    }
    sweep::write_row(&dir, &row)?;
    Ok(RunEnd::Ended(Box::new(row)))
}

/// Copies a child's stderr, line by line, into its train.log and onto the sweep's stderr with
/// the run id in front (`<id> step 40/300 epoch 1 loss ...`).
fn relay_lines(from: std::process::ChildStderr, mut log: std::fs::File, id: &str) {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let _ = log.write_all(&line);
                let text = String::from_utf8_lossy(&line);
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{id} {}", text.trim_end_matches(['\n', '\r']));
            }
        }
    }
}

/// Waits for the child, refreshing the claim every heartbeat. Err(who) when another process
/// took the claim over: the child is killed at once (SIGKILL: it must not write a checkpoint
/// into a folder that now belongs to another process).
fn wait_refreshing(child: &mut std::process::Child, held: &ClaimedRun) -> std::io::Result<std::result::Result<ExitStatus, String>> {
    let beat = claim::heartbeat(held.stale_after);
    let mut next = Instant::now() + beat;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ok(status));
        }
        if Instant::now() >= next {
            next = Instant::now() + beat;
            match held.claim.refresh() {
                Ok(Kept::Held) => {}
                Ok(Kept::Lost(by)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Ok(Err(by.map(|f| f.describe()).unwrap_or_else(|| "its claim file was removed".into())));
                }
                // A filesystem hiccup: try again at the next beat (the claim is stale only
                // after many missed beats).
                Err(e) => eprintln!("warning: {e:#}"),
            }
        }
        std::thread::sleep(beat.min(Duration::from_millis(100)));
    }
}

/// The process ids of the running children, so that a stop signal reaches them once.
#[derive(Default)]
struct Children(Mutex<Vec<u32>>);

impl Children {
    fn add(&self, pid: u32) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    }
    fn remove(&self, pid: u32) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != pid);
    }
    /// Sends `sig` to every running child.
    fn signal(&self, sig: i32) {
        for &pid in self.0.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // SAFETY: kill with a child's pid and a signal number.
            unsafe { libc::kill(pid as libc::pid_t, sig) };
        }
    }
}

/// The `triadapt train` command of one sweep child. A GPU child sees only its own GPU
/// (`CUDA_VISIBLE_DEVICES=<n>`) and trains on `cuda:0` inside, so it creates no CUDA context on
/// the others; `threads` (the child's share of the cores) becomes `OMP_NUM_THREADS`. GPU n is
/// counted in the parent's `CUDA_VISIBLE_DEVICES` when that is set (`parent_visible`, e.g. a
/// Slurm allocation's "2,3": `--devices 0,1` then means GPUs 2 and 3).
pub fn child_command(
    exe: &Path,
    config: &Path,
    out: &Path,
    device: Option<&str>,
    threads: Option<usize>,
    parent_visible: Option<&str>,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg("train").arg("--config").arg(config).arg("--out").arg(out);
    match device.map(crate::device::parse_device_name) {
        Some(Ok(tch::Device::Cuda(n))) => {
            let visible: Vec<&str> =
                parent_visible.map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()).unwrap_or_default();
            let gpu = visible.get(n).map_or_else(|| n.to_string(), |s| s.to_string());
            cmd.env("CUDA_VISIBLE_DEVICES", gpu).arg("--device").arg("cuda:0");
        }
        Some(_) => {
            cmd.arg("--device").arg(device.unwrap_or("cpu"));
        }
        None => {}
    }
    if let Some(n) = threads {
        cmd.env("OMP_NUM_THREADS", n.to_string());
    }
    cmd
}

/// The dry-run table: one line per run with its state (`running` while a live process holds
/// it) and, when any run has a claim, who holds it.
fn table(sweep: &Sweep, runs: &[&PlannedRun], states: &[RunState], holders: &[Holder]) -> String {
    let mut header: Vec<String> = ["#", "id", "task", "method", "seed"].iter().map(|s| s.to_string()).collect();
    header.extend(sweep.swept_keys.iter().cloned());
    header.push("state".into());
    let any_claim = holders.iter().any(|h| !matches!(h, Holder::Free));
    if any_claim {
        header.push("claimed by".into());
    }
    let mut lines = vec![header];
    for ((r, s), h) in runs.iter().zip(states).zip(holders) {
        let mut l = vec![r.index.to_string(), r.id.clone(), r.task.clone(), r.method.as_str().to_string(), r.seed.to_string()];
        l.extend(r.swept.iter().map(|(_, v)| v.as_ref().map(sweep::value_text).unwrap_or_else(|| "-".into())));
        let ended = matches!(s, RunState::Finished | RunState::Adoptable);
        l.push(if matches!(h, Holder::Held(_)) && !ended { "running".into() } else { s.label().into() });
        if any_claim {
            l.push(match h {
                Holder::Free => String::new(),
                Holder::Held(f) => format!("{} (refreshed {} s ago)", f.describe(), f.age.as_secs()),
                Holder::Stale(f, why) => format!("stale: {} ({}; the next call takes it over)", f.describe(), why.label()),
            });
        }
        lines.push(l);
    }
    let widths: Vec<usize> = (0..lines[0].len()).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for l in &lines {
        let cells: Vec<String> = l.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// A bash script that submits the sweep to Slurm: an array job with one task per shard, then a
/// `triadapt collect` job that waits for the whole array.
/// sbatch options of `--slurm` when neither the flag nor $TRIADAPT_SBATCH_OPTS gives them.
pub const DEFAULT_SBATCH_OPTS: &str = "--gres=gpu:1 --cpus-per-task=8 --time=48:00:00";

/// The submit script of `--slurm`: an array job (requeued on preemption, warned with SIGUSR1
/// 120 s before its end so runs checkpoint) and a collect job after it.
pub fn slurm_script(sweep: &Sweep, file: &Path, shard: Option<Shard>, sbatch_opts: &str, devices: &str) -> Result<String> {
    if sweep.runs.is_empty() {
        bail!("{}: the sweep has no runs", file.display());
    }
    parse_devices(devices)?;
    let n = shard.map(|s| s.count).unwrap_or(sweep.runs.len());
    let exe = shell_quote(&std::env::current_exe()?.display().to_string());
    let cwd = shell_quote(&std::env::current_dir()?.display().to_string());
    let file_q = shell_quote(&absolute(file)?.display().to_string());
    let out = absolute(&sweep.out)?;
    let out_q = shell_quote(&out.display().to_string());
    let logs = shell_quote(&out.join("slurm").display().to_string());
    let name = &sweep.name;
    Ok(format!(
        r#"#!/usr/bin/env bash
# Submits sweep `{name}` ({runs} runs) to Slurm: an array of {n} task(s), task I running
# `triadapt sweep --shard I/{n}` (finished runs are skipped, failed ones retried), then one
# `triadapt collect` job that starts when every array task has ended.
#   triadapt sweep {file} --slurm > submit.sh && bash submit.sh
# SBATCH_OPTS come from `--sbatch-opts` or $TRIADAPT_SBATCH_OPTS (partition, account, time,
# GPUs); the tasks run on `--devices {devices}`. A preempted task is requeued (--requeue) and
# warned with SIGUSR1 120 s ahead (--signal=B:USR1@120): its runs save a checkpoint and the
# requeued task resumes them. Run from this folder: relative paths in the experiment files
# resolve here.
set -euo pipefail
cd {cwd}
SBATCH_OPTS={opts}
mkdir -p {logs}
array=$(sbatch --parsable $SBATCH_OPTS --requeue --signal=B:USR1@120 --job-name={job} --array=0-{last} --output={logs}/%A_%a.log \
  --open-mode=append --wrap="exec {exe} sweep {file_q} --shard \${{SLURM_ARRAY_TASK_ID}}/{n} --devices {devices}")
array=${{array%%;*}}
collect=$(sbatch --parsable $SBATCH_OPTS --dependency=afterany:$array --job-name={job_c} --output={logs}/collect-%j.log \
  --wrap="{exe} collect {out_q}")
echo "submitted array job $array ({n} tasks) and collect job ${{collect%%;*}}; results: {out_csv}"
"#,
        runs = sweep.runs.len(),
        out_csv = out.join(CSV_FILE).display(),
        file = file.display(),
        last = n - 1,
        job = shell_quote(&format!("triadapt-{name}")),
        job_c = shell_quote(&format!("triadapt-{name}-collect")),
        opts = shell_quote(sbatch_opts),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envs(cmd: &Command) -> Vec<(String, String)> {
        cmd.get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.map(|v| v.to_string_lossy().into_owned()).unwrap_or_default()))
            .collect()
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn a_gpu_child_sees_only_its_gpu_and_trains_on_cuda_0() {
        let (exe, cfg, out) = (Path::new("/bin/triadapt"), Path::new("r/config.yaml"), Path::new("r"));
        let c = child_command(exe, cfg, out, Some("cuda:1"), Some(8), None);
        assert_eq!(args(&c), ["train", "--config", "r/config.yaml", "--out", "r", "--device", "cuda:0"]);
        assert_eq!(envs(&c), [("CUDA_VISIBLE_DEVICES".to_string(), "1".to_string()), ("OMP_NUM_THREADS".to_string(), "8".to_string())]);
        // Inside an allocation that shows GPUs 2 and 3, device 1 is GPU 3.
        let c = child_command(exe, cfg, out, Some("cuda:1"), None, Some("2,3"));
        assert_eq!(envs(&c), [("CUDA_VISIBLE_DEVICES".to_string(), "3".to_string())]);
        let c = child_command(exe, cfg, out, Some("cpu"), Some(1), Some("2,3"));
        assert_eq!(args(&c)[5..], ["--device", "cpu"]);
        assert_eq!(envs(&c), [("OMP_NUM_THREADS".to_string(), "1".to_string())]);
        let c = child_command(exe, cfg, out, None, None, None);
        assert_eq!(args(&c).len(), 5);
        assert!(envs(&c).is_empty());
    }

    #[test]
    fn devices_parse_to_names() {
        assert_eq!(parse_devices("0,1").unwrap(), ["cuda:0", "cuda:1"]);
        assert_eq!(parse_devices("cpu,cpu").unwrap(), ["cpu", "cpu"]);
        assert!(parse_devices("gpu7").is_err());
    }
}
