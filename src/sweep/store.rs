//! A sweep's results on disk: one row file per ended run (`runs/<id>/row.json`), the run states
//! a resumed sweep reads from them, and runs.csv rebuilt from all rows.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::id::json_text;
use crate::files::write_atomic;
use crate::train::result::RunStatus;

/// One line of runs.csv, stored as `runs/<id>/row.json` when a run ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub run_id: String,
    /// The sweep's name.
    pub name: String,
    /// Position in the sweep's expansion (orders the table).
    pub index: usize,
    pub task: String,
    pub method: String,
    pub seed: i64,
    /// (dotted key, value) of each swept key; null where the key does not apply to the method.
    pub swept: Vec<(String, serde_json::Value)>,
    /// finished or failed (pending while planned).
    pub status: RunStatus,
    pub error: Option<String>,
    pub main_metric: Option<String>,
    pub best_score: Option<f64>,
    pub best_step: Option<i64>,
    pub best_metrics: BTreeMap<String, f64>,
    pub trainable_params: Option<i64>,
    /// Adapter parameters (the table's #Params) and head parameters, counted apart.
    #[serde(default)]
    pub adapter_params: Option<i64>,
    #[serde(default)]
    pub head_params: Option<i64>,
    pub total_rank: Option<i64>,
    pub rank_budget: Option<i64>,
    pub wall_seconds: Option<f64>,
}

impl Row {
    /// Fills the outcome from a run folder's metrics.json (read loosely, by field name).
    pub fn fill_from_metrics(&mut self, metrics: &serde_json::Value) {
        let f = |k: &str| metrics.get(k).and_then(serde_json::Value::as_f64);
        let i = |k: &str| metrics.get(k).and_then(serde_json::Value::as_i64);
        self.main_metric = metrics.get("main_metric").and_then(|v| v.as_str()).map(str::to_string);
        self.best_score = f("best_score");
        self.best_step = i("best_step");
        self.best_metrics = metrics
            .get("best_metrics")
            .and_then(|v| v.as_object())
            .map(|m| m.iter().filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x))).collect())
            .unwrap_or_default();
        self.trainable_params = i("trainable_params");
        self.adapter_params = i("adapter_params");
        self.head_params = i("head_params");
        self.total_rank = i("total_rank");
        self.rank_budget = i("rank_budget");
        self.wall_seconds = f("wall_seconds");
        if let Some(e) = metrics.get("error").and_then(|v| v.as_str()) {
            self.error = Some(e.to_string());
        }
    }
}

pub const ROW_FILE: &str = "row.json";
pub const METRICS_FILE: &str = "metrics.json";
pub const RESOLVED_FILE: &str = "resolved.yaml";
pub const CSV_FILE: &str = "runs.csv";

pub fn write_row(run_dir: &Path, row: &Row) -> Result<()> {
    write_atomic(&run_dir.join(ROW_FILE), serde_json::to_string_pretty(row)?.as_bytes())
}

/// The row file of a run folder, if the run ended.
pub fn read_row(run_dir: &Path) -> Result<Option<Row>> {
    let p = run_dir.join(ROW_FILE);
    match std::fs::read_to_string(&p) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("{}: not a row file", p.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// A run folder's metrics.json, if present and readable.
pub fn read_metrics(run_dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join(METRICS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Where a planned run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Its row says finished: skipped.
    Finished,
    /// Its training finished (metrics.json) but the sweep died before writing the row: the row
    /// is written from metrics.json without training again.
    Adoptable,
    /// Its row says failed: retried.
    Failed,
    /// Never ran, or was interrupted: run.
    Pending,
}

impl RunState {
    pub fn label(self) -> &'static str {
        match self {
            RunState::Finished | RunState::Adoptable => "done",
            RunState::Failed => "failed",
            RunState::Pending => "pending",
        }
    }
}

pub fn run_state(run_dir: &Path) -> RunState {
    match read_row(run_dir) {
        Ok(Some(r)) if r.status == RunStatus::Finished => return RunState::Finished,
        Ok(Some(_)) => return RunState::Failed,
        _ => {}
    }
    match read_metrics(run_dir) {
        Some(m) if m.get("status").and_then(|s| s.as_str()) == Some("finished") => RunState::Adoptable,
        _ => RunState::Pending,
    }
}

/// Every row file under `<dir>/runs/*/row.json`, with its run folder.
pub fn read_rows(dir: &Path) -> Result<Vec<(Row, PathBuf)>> {
    let runs = dir.join("runs");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", runs.display())),
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for d in dirs {
        if let Some(row) = read_row(&d)? {
            out.push((row, d));
        }
    }
    Ok(out)
}

/// The fixed columns before the swept keys, between them and the metrics, and after the metrics.
pub const LEAD_COLUMNS: [&str; 5] = ["run_id", "name", "task", "method", "seed"];
pub const MID_COLUMNS: [&str; 5] = ["status", "error", "main_metric", "best_score", "best_step"];
pub const TAIL_COLUMNS: [&str; 7] =
    ["trainable_params", "adapter_params", "head_params", "total_rank", "rank_budget", "wall_seconds", "run_dir"];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

/// The text of runs.csv for these rows (merged by run id: a finished row wins over a failed one,
/// then the first given).
pub fn csv_text(rows: Vec<(Row, PathBuf)>) -> Result<(String, usize)> {
    let mut best: Vec<(Row, PathBuf)> = Vec::new();
    let mut pos: HashMap<String, usize> = HashMap::new();
    for (row, dir) in rows {
        match pos.get(&row.run_id) {
            Some(&i) => {
                if best[i].0.status != RunStatus::Finished && row.status == RunStatus::Finished {
                    best[i] = (row, dir);
                }
            }
            None => {
                pos.insert(row.run_id.clone(), best.len());
                best.push((row, dir));
            }
        }
    }
    let mut name_order: Vec<String> = Vec::new();
    for (r, _) in &best {
        if !name_order.contains(&r.name) {
            name_order.push(r.name.clone());
        }
    }
    best.sort_by(|(a, _), (b, _)| {
        let na = name_order.iter().position(|n| n == &a.name);
        let nb = name_order.iter().position(|n| n == &b.name);
        (na, a.index, &a.run_id).cmp(&(nb, b.index, &b.run_id))
    });
    let mut swept: Vec<String> = Vec::new();
    let mut metrics: BTreeSet<String> = BTreeSet::new();
    for (r, _) in &best {
        for (k, _) in &r.swept {
            if !swept.contains(k) {
                swept.push(k.clone());
            }
        }
        metrics.extend(r.best_metrics.keys().cloned());
    }
    let fixed: HashSet<&str> = LEAD_COLUMNS.iter().chain(&MID_COLUMNS).chain(&TAIL_COLUMNS).copied().collect();
    let metric_col = |m: &str| if fixed.contains(m) || swept.iter().any(|s| s == m) { format!("metric_{m}") } else { m.to_string() };
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = LEAD_COLUMNS.iter().map(|s| s.to_string()).collect();
    header.extend(swept.iter().cloned());
    header.extend(MID_COLUMNS.iter().map(|s| s.to_string()));
    header.extend(metrics.iter().map(|m| metric_col(m)));
    header.extend(TAIL_COLUMNS.iter().map(|s| s.to_string()));
    w.write_record(&header)?;
    for (r, dir) in &best {
        let mut rec: Vec<String> = vec![r.run_id.clone(), r.name.clone(), r.task.clone(), r.method.clone(), r.seed.to_string()];
        let sw: HashMap<&str, &serde_json::Value> = r.swept.iter().map(|(k, v)| (k.as_str(), v)).collect();
        rec.extend(swept.iter().map(|k| sw.get(k.as_str()).map(|v| json_text(v)).unwrap_or_default()));
        rec.extend([r.status.to_string(), opt(&r.error), opt(&r.main_metric), opt(&r.best_score), opt(&r.best_step)]);
        rec.extend(metrics.iter().map(|m| opt(&r.best_metrics.get(m))));
        rec.extend([
            opt(&r.trainable_params),
            opt(&r.adapter_params),
            opt(&r.head_params),
            opt(&r.total_rank),
            opt(&r.rank_budget),
            opt(&r.wall_seconds),
            dir.display().to_string(),
        ]);
        w.write_record(&rec)?;
    }
    let n = best.len();
    Ok((String::from_utf8(w.into_inner().map_err(|e| anyhow!("csv: {e}"))?)?, n))
}

/// Rebuilds `out` (runs.csv) from the row files of every results folder in `dirs`. Returns the
/// number of rows.
pub fn collect(dirs: &[PathBuf], out: &Path) -> Result<usize> {
    let mut rows = Vec::new();
    for d in dirs {
        if !d.is_dir() {
            bail!("{}: not a results folder", d.display());
        }
        rows.extend(read_rows(d)?);
    }
    let (text, n) = csv_text(rows)?;
    write_atomic(out, text.as_bytes())?;
    Ok(n)
}
