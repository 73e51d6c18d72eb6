//! Claims: which process is running a sweep's run, so that several `triadapt sweep` processes on
//! one results folder (two terminals, machines sharing a filesystem, the workers of `--devices`,
//! Slurm array tasks) divide the runs instead of each running every one.
//!
//! A claim is a file `claim.<generation>.json` in the run's folder naming its owner (host, pid,
//! start time). It is written whole to a temporary file and hard-linked into place: link(2) fails
//! when the name exists, so of two processes creating the same generation exactly one succeeds,
//! and nobody reads a half-written claim. The owner refreshes the file's mtime while the run
//! trains ([`heartbeat`]) and removes it when the run ends. The current claim is the highest
//! generation.
//!
//! A claim is stale when its owner is gone: on the same machine (host name and boot id) its pid
//! is dead; it was made by an earlier incarnation of a requeued Slurm task; or it has not been
//! refreshed for [`STALE_AFTER`] (any host: clocks must agree to well within that). Taking over
//! stale generation g means creating generation g + 1 with the same exclusive link, so of two
//! processes that find the same stale claim only one wins. An owner that was alive after all
//! (e.g. frozen longer than the stale time) sees the higher generation at its next refresh and
//! stops its run.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A claim not refreshed for this long is stale whoever made it (README: sweeps, known limits).
pub const STALE_AFTER: Duration = Duration::from_secs(600);
/// Overrides [`STALE_AFTER`] in seconds (tests; filesystems whose mtimes lag).
pub const STALE_ENV: &str = "TRIADAPT_CLAIM_STALE_SECONDS";

const PREFIX: &str = "claim.";
const SUFFIX: &str = ".json";
const TMP_PREFIX: &str = ".claim-";

/// The stale time: $TRIADAPT_CLAIM_STALE_SECONDS, else [`STALE_AFTER`].
pub fn stale_after() -> Result<Duration> {
    match std::env::var(STALE_ENV) {
        Ok(v) => {
            let secs: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .with_context(|| format!("${STALE_ENV}={v:?}: not a positive number of seconds"))?;
            Ok(Duration::from_secs_f64(secs))
        }
        Err(_) => Ok(STALE_AFTER),
    }
}

/// How often an owner refreshes its claim: a twentieth of the stale time (30 s by default), so
/// that a live owner's claim is never near stale.
pub fn heartbeat(stale_after: Duration) -> Duration {
    (stale_after / 20).clamp(Duration::from_millis(50), Duration::from_secs(30))
}

/// A Slurm array task (or job) and how many times it was requeued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlurmTask {
    /// `<array job>_<task>`, or the job id outside an array.
    pub job: String,
    /// $SLURM_RESTART_COUNT: a requeued task runs again under the same id with a higher count.
    pub restart: u32,
}

impl SlurmTask {
    fn from_env() -> Option<SlurmTask> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let job = match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
            (Some(a), Some(t)) => format!("{a}_{t}"),
            _ => var("SLURM_JOB_ID")?,
        };
        Some(SlurmTask { job, restart: var("SLURM_RESTART_COUNT").and_then(|r| r.parse().ok()).unwrap_or(0) })
    }
}

/// What a claim file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub host: String,
    /// Linux's boot id: a pid is only meaningful on the same machine in the same boot.
    #[serde(default)]
    pub boot_id: Option<String>,
    pub pid: u32,
    /// When the claim was made (RFC 3339 UTC).
    pub since: String,
    /// Tells apart the claims of one process (one per `--devices` worker and run).
    pub token: String,
    #[serde(default)]
    pub slurm: Option<SlurmTask>,
}

impl Owner {
    /// `host pid 123 since 2026-12-03T19:40:12Z` (and the Slurm task).
    pub fn describe(&self) -> String {
        let slurm = self.slurm.as_ref().map(|s| format!(" (Slurm {} restart {})", s.job, s.restart)).unwrap_or_default();
        format!("{} pid {} since {}{slurm}", self.host, self.pid, self.since)
    }
}

/// This process, as its claims name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    pub host: String,
    pub boot_id: Option<String>,
    pub pid: u32,
    pub slurm: Option<SlurmTask>,
}

static CLAIMS_MADE: AtomicU64 = AtomicU64::new(0);

impl Me {
    pub fn this_process() -> Me {
        let boot_id =
            std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        Me { host: crate::train::provenance::host_name(), boot_id, pid: std::process::id(), slurm: SlurmTask::from_env() }
    }

    fn new_owner(&self) -> Owner {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let n = CLAIMS_MADE.fetch_add(1, Ordering::SeqCst);
        Owner {
            host: self.host.clone(),
            boot_id: self.boot_id.clone(),
            pid: self.pid,
            since: crate::train::provenance::rfc3339(nanos.as_secs() as i64),
            token: format!("{}-{}-{}-{n}", self.host, self.pid, nanos.as_nanos()),
            slurm: self.slurm.clone(),
        }
    }

    fn same_machine(&self, o: &Owner) -> bool {
        o.host == self.host && o.boot_id.is_some() && o.boot_id == self.boot_id
    }
}

/// A claim file as found in a run folder.
#[derive(Debug, Clone)]
pub struct Found {
    pub generation: u64,
    pub path: PathBuf,
    /// None when the file does not parse (then only its age can make it stale).
    pub owner: Option<Owner>,
    /// Time since its last refresh (its mtime; zero when the mtime is ahead of this clock).
    pub age: Duration,
}

impl Found {
    pub fn describe(&self) -> String {
        match &self.owner {
            Some(o) => o.describe(),
            None => format!("an unreadable claim ({})", self.path.display()),
        }
    }
}

/// Why a claim's owner is taken to be gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// Same machine, and its pid is not running.
    DeadPid,
    /// Made by an earlier incarnation of this requeued Slurm task.
    Requeued,
    /// Not refreshed within the stale time.
    NoRefresh,
}

impl Stale {
    pub fn label(self) -> &'static str {
        match self {
            Stale::DeadPid => "its process is gone",
            Stale::Requeued => "its Slurm task was requeued",
            Stale::NoRefresh => "not refreshed within the stale time",
        }
    }
}

/// Who holds a run.
#[derive(Debug, Clone)]
pub enum Holder {
    Free,
    Held(Found),
    Stale(Found, Stale),
}

fn claim_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{generation}{SUFFIX}"))
}

/// Whether a file in a run folder is a claim or a claim being made (clearing a run folder for a
/// fresh start keeps them).
pub fn belongs_to_claims(name: &str) -> bool {
    parse_generation(name).is_some() || (name.starts_with(TMP_PREFIX) && name.ends_with(".tmp"))
}

fn parse_generation(name: &str) -> Option<u64> {
    name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?.parse().ok()
}

/// The claim generations present in `dir`, ascending.
fn generations(dir: &Path) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut gens: Vec<u64> = entries.filter_map(|e| e.ok()).filter_map(|e| parse_generation(&e.file_name().to_string_lossy())).collect();
    gens.sort_unstable();
    Ok(gens)
}

/// Reads one claim file; None when it vanished meanwhile.
fn read_found(dir: &Path, generation: u64) -> Result<Option<Found>> {
    let path = claim_path(dir, generation);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let age = meta.modified().ok().and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default();
    let owner = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
    Ok(Some(Found { generation, path, owner, age }))
}

/// Whether process `pid` of this machine is running (a zombie is not).
fn pid_alive(pid: u32) -> bool {
    if pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    // A killed process whose parent has not reaped it yet still answers kill(0).
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()), Some('Z' | 'X')),
        Err(_) => true,
    }
}

/// Whether (and why) `found` is stale for `me`.
pub fn judge(found: &Found, me: &Me, stale_after: Duration) -> Option<Stale> {
    if let Some(o) = &found.owner {
        if me.same_machine(o) && !pid_alive(o.pid) {
            return Some(Stale::DeadPid);
        }
        if let (Some(mine), Some(theirs)) = (&me.slurm, &o.slurm) {
            if mine.job == theirs.job && theirs.restart < mine.restart {
                return Some(Stale::Requeued);
            }
        }
    }
    (found.age > stale_after).then_some(Stale::NoRefresh)
}

/// Who holds the run of folder `dir` (its highest claim generation).
pub fn holder(dir: &Path, me: &Me, stale_after: Duration) -> Result<Holder> {
    for _ in 0..8 {
        let Some(&top) = generations(dir)?.last() else { return Ok(Holder::Free) };
        // None: it was released or taken over between the listing and the read: look again.
        if let Some(found) = read_found(dir, top)? {
            return Ok(match judge(&found, me, stale_after) {
                Some(why) => Holder::Stale(found, why),
                None => Holder::Held(found),
            });
        }
    }
    bail!("{}: its claim files keep changing", dir.display())
}

/// A claim this process holds; removed when dropped.
#[derive(Debug)]
pub struct Claim {
    dir: PathBuf,
    path: PathBuf,
    generation: u64,
    pub owner: Owner,
}

/// What a refresh found.
#[derive(Debug)]
pub enum Kept {
    Held,
    /// Another process took the run over (it judged this claim stale): stop the run.
    Lost(Option<Found>),
}

impl Claim {
    /// Refreshes the claim's mtime, unless another process took it over.
    pub fn refresh(&self) -> Result<Kept> {
        let gens = generations(&self.dir)?;
        if gens.last() != Some(&self.generation) {
            let top = match gens.last() {
                Some(&g) => read_found(&self.dir, g)?,
                None => None,
            };
            return Ok(Kept::Lost(top));
        }
        let f =
            std::fs::OpenOptions::new().write(true).open(&self.path).with_context(|| format!("cannot refresh {}", self.path.display()))?;
        f.set_modified(SystemTime::now()).with_context(|| format!("cannot refresh {}", self.path.display()))?;
        Ok(Kept::Held)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the claim (the run ended, failed or was interrupted).
    pub fn release(self) -> Result<()> {
        let path = self.path.clone();
        std::mem::forget(self);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove the claim {}", path.display()))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The outcome of [`try_claim`].
#[derive(Debug)]
pub enum Attempt {
    /// This process now holds the run; `took_over` is the stale claim it replaced.
    Claimed { claim: Claim, took_over: Option<(Found, Stale)> },
    /// Another live process holds it.
    Held(Found),
}

/// Claims the run of folder `dir` (created if missing) for `me`: a new claim when there is none,
/// the next generation over a stale one, or [`Attempt::Held`] when a live process holds it.
pub fn try_claim(dir: &Path, me: &Me, stale_after: Duration) -> Result<Attempt> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for _ in 0..8 {
        let (generation, took_over) = match holder(dir, me, stale_after)? {
            Holder::Held(found) => return Ok(Attempt::Held(found)),
            Holder::Free => (1, None),
            Holder::Stale(found, why) => (found.generation + 1, Some((found, why))),
        };
        let owner = me.new_owner();
        let path = claim_path(dir, generation);
        if !create_exclusive(&path, &owner)? {
            continue; // another process made this generation first: look again
        }
        let claim = Claim { dir: dir.to_path_buf(), path, generation, owner };
        // A listing that missed a higher generation (made and its predecessors removed while
        // this one was being created) means this claim lost: drop it and look again.
        if generations(dir)?.last() != Some(&generation) {
            drop(claim);
            continue;
        }
        for old in generations(dir)?.into_iter().filter(|&g| g < generation) {
            let _ = std::fs::remove_file(claim_path(dir, old));
        }
        return Ok(Attempt::Claimed { claim, took_over });
    }
    bail!("{}: could not claim the run (its claim files kept changing)", dir.display())
}

/// Creates `path` holding `owner`, whole, only if it does not exist; false when it does.
fn create_exclusive(path: &Path, owner: &Owner) -> Result<bool> {
    let tmp = path.with_file_name(format!("{TMP_PREFIX}{}.tmp", owner.token));
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(owner)?.as_bytes()).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().ok();
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| {
            format!("cannot create the claim {} (the results folder's filesystem must support hard links)", path.display())
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    const LONG: Duration = Duration::from_secs(3600);

    fn me() -> Me {
        Me::this_process()
    }

    /// Another machine (so its pid cannot be checked).
    fn elsewhere(pid: u32) -> Me {
        Me { host: "other-host".into(), boot_id: Some("other-boot".into()), pid, slurm: None }
    }

    /// A pid that ran on this machine and has ended (reaped).
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    /// Writes claim generation `g` for `who` (as a killed process leaves it), `age` old.
    fn plant(dir: &Path, g: u64, who: &Me, age: Duration) -> Owner {
        let owner = who.new_owner();
        let path = claim_path(dir, g);
        std::fs::write(&path, serde_json::to_string(&owner).unwrap()).unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(SystemTime::now() - age).unwrap();
        owner
    }

    fn claimed(a: Attempt) -> (Claim, Option<(Found, Stale)>) {
        match a {
            Attempt::Claimed { claim, took_over } => (claim, took_over),
            Attempt::Held(f) => panic!("held by {}", f.describe()),
        }
    }

    #[test]
    fn a_claim_names_its_owner_refuses_others_and_is_removed_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("runs/abc");
        let me = me();
        let (claim, took) = claimed(try_claim(&run, &me, LONG).unwrap());
        assert!(took.is_none());
        assert_eq!(claim.path(), run.join("claim.1.json"));
        let on_disk: Owner = serde_json::from_str(&std::fs::read_to_string(claim.path()).unwrap()).unwrap();
        assert_eq!(on_disk, claim.owner);
        assert_eq!((on_disk.pid, on_disk.host.as_str()), (std::process::id(), me.host.as_str()));
        // A second worker of this process, and a process elsewhere, are refused.
        for who in [me.clone(), elsewhere(1)] {
            match try_claim(&run, &who, LONG).unwrap() {
                Attempt::Held(f) => assert_eq!(f.owner.as_ref(), Some(&claim.owner)),
                Attempt::Claimed { .. } => panic!("claimed twice"),
            }
        }
        assert!(matches!(claim.refresh().unwrap(), Kept::Held));
        claim.release().unwrap();
        assert!(matches!(holder(&run, &me, LONG).unwrap(), Holder::Free));
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0);
    }

    #[test]
    fn a_dead_pid_on_this_machine_is_stale_and_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let me = me();
        let gone = Me { pid: dead_pid(), ..me.clone() };
        let planted = plant(dir.path(), 1, &gone, Duration::ZERO);
        match holder(dir.path(), &me, LONG).unwrap() {
            Holder::Stale(f, why) => {
                assert_eq!(why, Stale::DeadPid);
                assert_eq!(f.owner, Some(planted.clone()));
            }
            other => panic!("{other:?}"),
        }
        // The same pid seen from another machine is only judged by age: held.
        assert!(matches!(holder(dir.path(), &elsewhere(7), LONG).unwrap(), Holder::Held(_)));
        let (claim, took) = claimed(try_claim(dir.path(), &me, LONG).unwrap());
        let (old, why) = took.unwrap();
        assert_eq!((old.generation, why, old.owner), (1, Stale::DeadPid, Some(planted)));
        assert_eq!(claim.path(), dir.path().join("claim.2.json"));
        assert!(!dir.path().join("claim.1.json").exists(), "the stale generation is removed");
        // A live pid on this machine (this test process) with an old mtime is still held
        // within the stale time.
        drop(claim);
        plant(dir.path(), 1, &me, Duration::from_secs(5));
        assert!(matches!(holder(dir.path(), &me, LONG).unwrap(), Holder::Held(_)));
    }

    #[test]
    fn a_claim_not_refreshed_within_the_stale_time_is_stale_and_a_refresh_renews_it() {
        let dir = tempfile::tempdir().unwrap();
        let other = elsewhere(std::process::id());
        plant(dir.path(), 3, &other, Duration::from_secs(120));
        let me = me();
        assert!(matches!(holder(dir.path(), &me, Duration::from_secs(180)).unwrap(), Holder::Held(_)));
        match holder(dir.path(), &me, Duration::from_secs(60)).unwrap() {
            Holder::Stale(f, Stale::NoRefresh) => {
                assert!(f.age >= Duration::from_secs(120) && f.age < Duration::from_secs(130), "{:?}", f.age)
            }
            h => panic!("{h:?}"),
        }
        let (claim, _) = claimed(try_claim(dir.path(), &me, Duration::from_secs(60)).unwrap());
        assert_eq!(claim.path(), dir.path().join("claim.4.json"));
        // Its own claim made old, then refreshed: young again.
        std::fs::File::options()
            .write(true)
            .open(claim.path())
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(120))
            .unwrap();
        assert!(matches!(holder(dir.path(), &other, Duration::from_secs(60)).unwrap(), Holder::Stale(..)));
        assert!(matches!(claim.refresh().unwrap(), Kept::Held));
        match holder(dir.path(), &other, Duration::from_secs(60)).unwrap() {
            Holder::Held(f) => assert!(f.age < Duration::from_secs(5)),
            h => panic!("{h:?}"),
        }
        // An unreadable claim is judged by its age alone.
        drop(claim);
        std::fs::write(dir.path().join("claim.9.json"), "").unwrap();
        assert!(matches!(holder(dir.path(), &me, LONG).unwrap(), Holder::Held(Found { owner: None, generation: 9, .. })));
    }

    #[test]
    fn an_owner_judged_stale_learns_at_its_next_refresh_that_it_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = claimed(try_claim(dir.path(), &me(), LONG).unwrap());
        // Another machine whose stale time has passed (a frozen owner, or skewed clocks).
        std::thread::sleep(Duration::from_millis(20));
        let (b, took) = claimed(try_claim(dir.path(), &elsewhere(42), Duration::from_millis(10)).unwrap());
        assert_eq!(took.unwrap().1, Stale::NoRefresh);
        match a.refresh().unwrap() {
            Kept::Lost(Some(f)) => assert_eq!(f.owner, Some(b.owner.clone())),
            k => panic!("{k:?}"),
        }
        // The loser's release leaves the winner's claim alone.
        a.release().unwrap();
        assert!(b.path().exists());
        assert!(matches!(b.refresh().unwrap(), Kept::Held));
    }

    #[test]
    fn a_requeued_slurm_task_takes_over_its_earlier_incarnations_claim() {
        let dir = tempfile::tempdir().unwrap();
        let task = |restart| Some(SlurmTask { job: "812_3".into(), restart });
        // Requeued tasks usually land on another node: the pid rule cannot apply.
        let on = |host: &str, slurm| Me { host: host.into(), boot_id: Some(format!("{host}-boot")), pid: 99, slurm };
        plant(dir.path(), 1, &on("node-a", task(0)), Duration::ZERO);
        let again = on("node-b", task(1));
        assert!(matches!(holder(dir.path(), &again, LONG).unwrap(), Holder::Stale(_, Stale::Requeued)));
        let sibling = on("node-c", Some(SlurmTask { job: "812_4".into(), restart: 1 }));
        assert!(matches!(holder(dir.path(), &sibling, LONG).unwrap(), Holder::Held(_)));
        let same = on("node-d", task(0));
        assert!(matches!(holder(dir.path(), &same, LONG).unwrap(), Holder::Held(_)));
    }

    #[test]
    fn of_many_processes_taking_over_one_stale_claim_exactly_one_wins() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let gone = Me { pid: dead_pid(), ..me() };
            plant(dir.path(), 5, &gone, Duration::ZERO);
            let n = 8;
            let start = Arc::new(Barrier::new(n));
            let outcomes: Vec<Attempt> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..n)
                    .map(|_| {
                        let start = start.clone();
                        let d = dir.path();
                        s.spawn(move || {
                            start.wait();
                            try_claim(d, &me(), LONG).unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let winners: Vec<&Claim> =
                outcomes.iter().filter_map(|a| if let Attempt::Claimed { claim, .. } = a { Some(claim) } else { None }).collect();
            assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
            let winner = &winners[0].owner;
            assert_eq!(winners[0].path(), dir.path().join("claim.6.json"));
            for a in &outcomes {
                if let Attempt::Held(f) = a {
                    assert_eq!(f.owner.as_ref(), Some(winner), "round {round}: a loser saw another holder");
                }
            }
            assert_eq!(generations(dir.path()).unwrap(), [6]);
        }
    }
}
