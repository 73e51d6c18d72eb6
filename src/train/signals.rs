//! Preemption: SIGTERM, SIGINT and SIGUSR1 ask a run to stop at the next step boundary (after
//! saving a checkpoint); a second signal (two seconds or more after the first) ends the process
//! at once.
//!
//! Clusters send SIGTERM before killing a preempted job (Slurm also SIGUSR1 when asked with
//! `--signal`); a training loop that notices it at a step boundary loses no work.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicUsize, Ordering};

/// The exit code of a run (or sweep) that stopped on a signal after saving its state:
/// EX_TEMPFAIL, "try again later" (the sweep treats the run as pending).
pub const EXIT_INTERRUPTED: u8 = 75;

static RECEIVED: AtomicUsize = AtomicUsize::new(0);
static LAST: AtomicI32 = AtomicI32::new(0);
/// Monotonic seconds of the first signal.
static FIRST_AT: AtomicI64 = AtomicI64::new(0);

/// A second signal this soon after the first is the same request delivered twice (a cluster
/// signals every process of a job, and a sweep forwards to its children too): not a second one.
const SAME_REQUEST_SECONDS: i64 = 2;

fn monotonic_seconds() -> i64 {
    // SAFETY: clock_gettime is async-signal-safe.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let now = monotonic_seconds();
    if RECEIVED.load(Ordering::SeqCst) == 0 {
        FIRST_AT.store(now, Ordering::SeqCst);
        LAST.store(sig, Ordering::SeqCst);
        RECEIVED.store(1, Ordering::SeqCst);
    } else if now - FIRST_AT.load(Ordering::SeqCst) >= SAME_REQUEST_SECONDS {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(128 + sig) };
    }
}

/// The signals that request a stop.
pub const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1];

/// Installs the handler for [`STOP_SIGNALS`].
pub fn install() {
    for sig in STOP_SIGNALS {
        // SAFETY: the handler only touches atomics and calls _exit.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// The signal that asked for a stop, if one arrived.
pub fn stop_requested() -> Option<i32> {
    (RECEIVED.load(Ordering::SeqCst) > 0).then(|| LAST.load(Ordering::SeqCst))
}

/// A signal's name for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// The error of a run that stopped on a signal after saving its checkpoint; `main` exits with
/// [`EXIT_INTERRUPTED`] on it.
#[derive(Debug)]
pub struct Interrupted {
    pub signal: i32,
    pub step: i64,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.step < 0 {
            // A sweep: its running children saved their checkpoints.
            return write!(
                f,
                "interrupted by {}: the runs in progress saved checkpoints; run the same command again to continue",
                name(self.signal)
            );
        }
        write!(f, "interrupted by {} at step {}: checkpoint saved; run again with --resume to continue", name(self.signal), self.step)
    }
}

impl std::error::Error for Interrupted {}
