//! Counting the ATen ops a piece of code launches, in process, from LibTorch's own op events
//! (RecordFunction, the events torch.profiler is built on): a C++ callback (csrc/op_counter.cpp,
//! compiled by build.rs) registered only while a [`OpCounter`] lives, so that code outside a
//! count pays nothing. The callback is the counting thread's own: it sees that thread's ops and
//! the backward work the thread hands to the autograd engine (which carries the caller's
//! callbacks to its threads), not other threads of the process.
//!
//! The rule (README "Counting kernels"), with the op classes of `assets/op_count_rules.txt`,
//! which `scripts/bench_peft.py --ops` applies to torch.profiler's events:
//! - every ATen op (RecordFunction scope FUNCTION, backward ops included) counts when no op other than a *silent* one starts inside it, i.e. a
//!   leaf once silent ops are removed; an op that only dispatches others (linear, softmax, to)
//!   does not count, the ops it dispatches do;
//! - *silent* ops (views, metadata, `empty*`, no-op conversions, and every event not named
//!   `aten::*`, such as the engine's `autograd::engine::evaluate_function: ...`) never count;
//! - *one* ops (multi-tensor `_foreach_*`/`_fused_*`, `addmm` and the other GEMMs that add an
//!   input) count once, and nothing inside them counts: one launch on CUDA, whatever CPU runs
//!   inside.
//!
//! Autograd's own node events (scope BACKWARD_FUNCTION, e.g. `MmBackward0`) are not ops and are
//! not observed: the ops a node runs are.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

use anyhow::{anyhow, bail, Result};

extern "C" {
    fn triadapt_ops_clear_rules();
    fn triadapt_ops_rule(name: *const libc::c_char, kind: libc::c_int, prefix: libc::c_int) -> libc::c_int;
    fn triadapt_ops_enable(names: libc::c_int) -> libc::c_int;
    fn triadapt_ops_disable();
    fn triadapt_ops_reset();
    fn triadapt_ops_read() -> i64;
    fn triadapt_ops_names(buf: *mut libc::c_char, cap: libc::size_t) -> libc::size_t;
}

/// The rules file, shared with the PEFT peer.
pub const RULES: &str = include_str!("../assets/op_count_rules.txt");
const RULES_PATH: &str = "assets/op_count_rules.txt";

/// How an op is counted (the numbering of csrc/op_counter.cpp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    /// Counted when a leaf once silent ops are removed (every op not in the rules file).
    Leaf = 0,
    /// Never counted.
    Silent = 1,
    /// Counted once, nothing inside it counted.
    One = 2,
}

/// One line of the rules file: an op name, or a prefix of op names (`aten::_foreach_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub class: OpClass,
    pub name: String,
    pub prefix: bool,
}

/// Parses the rules file's text (`CLASS OP` lines; `#` comments).
pub fn parse_rules(text: &str) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(class), Some(name), None) = (words.next(), words.next(), words.next()) else {
            bail!("{RULES_PATH} line {}: expected `CLASS OP`, found {line:?}", i + 1);
        };
        let class = match class {
            "silent" => OpClass::Silent,
            "one" => OpClass::One,
            other => bail!("{RULES_PATH} line {}: unknown class {other:?} (expected silent or one)", i + 1),
        };
        let (name, prefix) = match name.strip_suffix('*') {
            Some(stem) => (stem.to_string(), true),
            None => (name.to_string(), false),
        };
        rules.push(Rule { class, name, prefix });
    }
    Ok(rules)
}

/// Hands the rules file to the C++ counter, once per process.
fn load_rules() -> Result<()> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let rules = parse_rules(RULES).map_err(|e| e.to_string())?;
            // SAFETY: plain C calls; the strings live across each call.
            unsafe { triadapt_ops_clear_rules() };
            for r in rules {
                let name = std::ffi::CString::new(r.name.clone()).map_err(|e| e.to_string())?;
                let rc = unsafe { triadapt_ops_rule(name.as_ptr(), r.class as libc::c_int, r.prefix as libc::c_int) };
                if rc != 0 {
                    return Err(format!("{RULES_PATH}: the counter refused the rule for {} ({rc})", r.name));
                }
            }
            Ok(())
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

/// Held by the live counter: the C++ counts are process-wide, so one count runs at a time.
static COUNTING: Mutex<()> = Mutex::new(());

/// Counts the ops of the thread that created it, from its creation until it is dropped (on the
/// same thread: it is not `Send`).
#[derive(Debug)]
pub struct OpCounter {
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl OpCounter {
    /// Starts counting from zero; `by_name` also keeps a count per op name ([`OpCounter::names`]).
    /// Waits while a counter of another thread is live; fails if this thread already has one.
    pub fn start(by_name: bool) -> Result<OpCounter> {
        load_rules()?;
        let guard = match COUNTING.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::WouldBlock) if OWNER.with(|o| o.get()) => bail!("this thread already counts ops"),
            Err(_) => COUNTING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        OWNER.with(|o| o.set(true));
        // SAFETY: plain C calls.
        unsafe {
            triadapt_ops_reset();
            triadapt_ops_enable(by_name as libc::c_int);
        }
        Ok(OpCounter { _one_at_a_time: guard })
    }

    /// Ops counted since the start or the last `take`, and starts again from zero.
    pub fn take(&self) -> i64 {
        // SAFETY: plain C calls. Ops still running on another thread may land on either side.
        unsafe {
            let n = triadapt_ops_read();
            triadapt_ops_reset();
            n
        }
    }

    /// Ops counted since the start or the last `take`.
    pub fn read(&self) -> i64 {
        // SAFETY: a plain C call.
        unsafe { triadapt_ops_read() }
    }

    /// Counted ops by name since the start or the last `take` (with `by_name`); composite ops,
    /// seen but not counted because ops they dispatch are, as `~name`.
    pub fn names(&self) -> BTreeMap<String, i64> {
        let mut buf: Vec<u8> = Vec::new();
        loop {
            // SAFETY: the buffer has `buf.len()` writable bytes.
            let need = unsafe { triadapt_ops_names(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
            if need <= buf.len() {
                buf.truncate(need);
                break;
            }
            buf = vec![0; need + 4096];
        }
        String::from_utf8_lossy(&buf)
            .lines()
            .filter_map(|l| l.rsplit_once('\t'))
            .filter_map(|(name, n)| Some((name.to_string(), n.parse().ok()?)))
            .collect()
    }
}

impl Drop for OpCounter {
    fn drop(&mut self) {
        // SAFETY: a plain C call.
        unsafe { triadapt_ops_disable() };
        OWNER.with(|o| o.set(false));
    }
}

thread_local! {
    /// Whether this thread holds the live counter (a second `start` here would wait forever).
    static OWNER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_file_parses_with_prefixes() {
        let rules = parse_rules(RULES).unwrap();
        assert!(rules.contains(&Rule { class: OpClass::One, name: "aten::_foreach_".into(), prefix: true }));
        assert!(rules.contains(&Rule { class: OpClass::Silent, name: "aten::view".into(), prefix: false }));
        assert!(parse_rules("loud aten::mm").unwrap_err().to_string().contains("line 1: unknown class"));
    }
}
