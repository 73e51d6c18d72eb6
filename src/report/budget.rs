//! The rank budget of a run the way the papers' tables group them: the reference rank r (the
//! paper's "r = 2" and "r = 8" blocks), so that the table never averages runs of different
//! budgets.
//!
//! Each method names its budget with its own key: TriAdaptLoRA `method.triadapt.ref_rank`,
//! LoRA `method.lora.rank`, IncreLoRA and AdaLoRA `method.<m>.target_rank` (the average final
//! rank per matrix: its total budget is r x adapted matrices, the `rank_budget` of runs.csv).
//! The value is read from the run's runs.csv cell when the sweep swept that key, else from the
//! run folder's configuration (`config.yaml`, or the sweep's `resolved.yaml`). A run with
//! neither (a hand-made runs.csv without run folders) is grouped by its total `rank_budget`
//! (LoRA: `total_rank`); full fine-tuning has no budget.
//!
//! The figures group runs by their total rank budget instead ([`run_budget`]: the sum of ranks
//! a run may reach), so that no figure sets methods at different budgets side by side.

use std::path::Path;

use anyhow::{bail, Result};

use super::labels::short_number;
use super::runs::{parse_f64, RunRecord, Runs};

/// The key that sets a method's reference rank, None for methods without one (full).
pub fn rank_key(method: &str) -> Option<&'static str> {
    match method {
        "triadapt" => Some("method.triadapt.ref_rank"),
        "lora" => Some("method.lora.rank"),
        "increlora" => Some("method.increlora.target_rank"),
        "adalora" => Some("method.adalora.target_rank"),
        _ => None,
    }
}

/// A run's budget as the table groups it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    /// The reference rank r (the method's rank key).
    Rank(f64),
    /// Only the total rank budget is known (no rank key in runs.csv or the run folder).
    Total(f64),
    /// No rank budget (full fine-tuning).
    None,
}

impl Budget {
    /// The block heading: `r = 2`, `rank budget 144`, `no rank budget`.
    pub fn label(&self) -> String {
        match self {
            Budget::Rank(r) => format!("r = {}", short_number(*r)),
            Budget::Total(b) => format!("rank budget {}", short_number(*b)),
            Budget::None => "no rank budget".into(),
        }
    }

    /// The reference rank, where known.
    pub fn rank(&self) -> Option<f64> {
        match self {
            Budget::Rank(r) => Some(*r),
            _ => None,
        }
    }

    /// A total order for grouping and sorting: no budget first, then ranks, then totals, each
    /// ascending (values compared in thousandths: budgets are integers or simple fractions).
    pub fn sort_key(&self) -> (u8, i64) {
        let milli = |v: f64| (v * 1000.0).round() as i64;
        match self {
            Budget::None => (0, 0),
            Budget::Rank(r) => (1, milli(*r)),
            Budget::Total(b) => (2, milli(*b)),
        }
    }
}

/// The rank budget a run is drawn under: its `rank_budget`, else (LoRA, whose rank is fixed)
/// its final `total_rank`; None for runs without ranks (full fine-tuning).
pub fn run_budget(r: &RunRecord) -> Option<f64> {
    r.rank_budget.filter(|b| *b > 0.0).or(r.total_rank.filter(|t| *t > 0.0))
}

/// Whether two budgets are the same (budgets are integers; runs.csv may write `24` or `24.0`).
pub fn same_budget(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// The distinct budgets of `runs`, ascending; only `only` when given (an error when no run
/// has it, naming the budgets there are).
pub fn budgets_of<'a>(runs: impl IntoIterator<Item = &'a RunRecord>, only: Option<f64>, what: &str) -> Result<Vec<f64>> {
    let mut all: Vec<f64> = runs.into_iter().filter_map(run_budget).collect();
    all.sort_by(f64::total_cmp);
    all.dedup_by(|a, b| same_budget(*a, *b));
    match only {
        None => Ok(all),
        Some(b) if all.iter().any(|x| same_budget(*x, b)) => Ok(vec![b]),
        Some(b) => {
            let have: Vec<String> = all.iter().map(|x| short_number(*x)).collect();
            bail!(
                "--budget {}: no {what} has that rank budget (budgets: {})",
                short_number(b),
                if have.is_empty() { "none".into() } else { have.join(", ") }
            )
        }
    }
}

/// The value at a dotted key of a YAML document (`method.lora.rank`), as a number.
fn yaml_number(doc: &serde_yaml_ng::Value, dotted: &str) -> Option<f64> {
    let mut v = doc;
    for part in dotted.split('.') {
        v = v.get(part)?;
    }
    v.as_f64().or_else(|| v.as_i64().map(|i| i as f64)).filter(|x| x.is_finite())
}

/// The rank key's value from a run folder's configuration (`config.yaml`, written by the
/// trainer, else `resolved.yaml`, written by the sweep before the run starts).
fn from_run_folder(dir: &Path, key: &str) -> Option<f64> {
    ["config.yaml", "resolved.yaml"].iter().find_map(|f| {
        let text = std::fs::read_to_string(dir.join(f)).ok()?;
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).ok()?;
        yaml_number(&doc, key)
    })
}

/// The budget of every record of `runs` (same order as `records`).
pub fn run_budgets(runs: &Runs, records: &[RunRecord]) -> Vec<Budget> {
    // The rank keys that are runs.csv columns, read once.
    let mut columns: std::collections::HashMap<&str, Vec<Option<String>>> = std::collections::HashMap::new();
    for key in records.iter().filter_map(|r| rank_key(&r.method)) {
        if !columns.contains_key(key) {
            if let Ok(c) = runs.strings(key) {
                columns.insert(key, c);
            }
        }
    }
    records
        .iter()
        .map(|r| {
            if let Some(key) = rank_key(&r.method) {
                let cell = columns.get(key).and_then(|c| c[r.row].as_deref().and_then(parse_f64));
                if let Some(v) = cell.or_else(|| r.run_dir.as_deref().and_then(|d| from_run_folder(d, key))) {
                    return Budget::Rank(v);
                }
            }
            match run_budget(r) {
                Some(b) => Budget::Total(b),
                None => Budget::None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_order() {
        assert_eq!(Budget::Rank(2.0).label(), "r = 2");
        assert_eq!(Budget::Total(144.0).label(), "rank budget 144");
        assert_eq!(Budget::None.label(), "no rank budget");
        let mut v = [Budget::Total(24.0), Budget::Rank(8.0), Budget::None, Budget::Rank(2.0)];
        v.sort_by_key(Budget::sort_key);
        assert_eq!(v, [Budget::None, Budget::Rank(2.0), Budget::Rank(8.0), Budget::Total(24.0)]);
    }

    #[test]
    fn dotted_yaml_keys() {
        let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str("method:\n  lora:\n    rank: 8\n  triadapt:\n    ref_rank: 2.5\n").unwrap();
        assert_eq!(yaml_number(&doc, "method.lora.rank"), Some(8.0));
        assert_eq!(yaml_number(&doc, "method.triadapt.ref_rank"), Some(2.5));
        assert_eq!(yaml_number(&doc, "method.adalora.target_rank"), None);
    }
}
