//! `triadapt table`: the GLUE dev table in the paper's layout (spec section 5).
//!
//! Rows are methods (optionally split by swept keys, `--by`), with their trainable-parameter
//! count; columns MNLI (m/mm), SST-2, CoLA (Mcc), QQP (Acc/F1), QNLI, RTE, MRPC (Acc), STS-B
//! (Corr = mean of Pearson and Spearman) and All Avg. Each cell is the mean over the finished
//! runs (seeds) of that method and task, grouped and averaged with polars, shown ×100 with one
//! decimal; a task without runs shows "-". All Avg is `metrics::all_average` of the cell means
//! (the scores merged with `metrics::all_average_inputs`), shown only when all eight tasks are
//! there. #Params is the runs' `adapter_params` (the adapters without the task head, as the
//! papers count them; `trainable_params` for a runs.csv without that column), averaged over the
//! method's runs of all tasks; the head's count is in a note under the table.
//!
//! Runs.csv metric columns read: MNLI `m_accuracy`, `mm_accuracy` (`accuracy` stands in for the
//! matched score when `m_accuracy` is empty); QQP `accuracy`, `f1`; STS-B `pearson`, `spearmanr`;
//! CoLA `matthews_correlation`; the others `accuracy`. Other tasks are ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::*;

use crate::metrics::{all_average, all_average_inputs};

use super::{method_label, method_rank, Runs};

/// The eight GLUE tasks in the paper's column order, with their column headers.
pub const COLUMNS: [(&str, &str); 8] = [
    ("mnli", "MNLI (m/mm)"),
    ("sst2", "SST-2 (Acc)"),
    ("cola", "CoLA (Mcc)"),
    ("qqp", "QQP (Acc/F1)"),
    ("qnli", "QNLI (Acc)"),
    ("rte", "RTE (Acc)"),
    ("mrpc", "MRPC (Acc)"),
    ("stsb", "STS-B (Corr)"),
];

/// The runs.csv metric columns the table reads.
const METRIC_COLUMNS: [&str; 7] = ["accuracy", "f1", "matthews_correlation", "pearson", "spearmanr", "m_accuracy", "mm_accuracy"];

/// One row of the table.
#[derive(Debug, Clone)]
pub struct TableRow {
    pub method: String,
    /// The `--by` keys' values.
    pub by: Vec<Option<String>>,
    pub label: String,
    /// Mean `adapter_params` (or `trainable_params`) over the row's runs.
    pub params: Option<f64>,
    /// The `metrics::ALL_AVG_KEYS` scores present (fractions, means over runs).
    pub scores: BTreeMap<String, f64>,
    /// Runs averaged per task.
    pub runs: BTreeMap<String, usize>,
    /// All Avg (fraction) when all eight tasks are present.
    pub all_avg: Option<f64>,
    /// The formatted cells, `GlueTable::header` order.
    pub cells: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct GlueTable {
    pub header: Vec<String>,
    pub rows: Vec<TableRow>,
    /// Lines printed under the markdown table.
    pub notes: Vec<String>,
}

/// A parameter count as the paper writes it: `0.33M`, `1.33M`, `184M`; below 0.1M in
/// thousands (`12.5K`).
pub fn format_params(n: f64) -> String {
    if n >= 1e8 {
        format!("{:.0}M", n / 1e6)
    } else if n >= 1e7 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e5 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}K", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

fn pct(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{:.1}", v * 100.0),
        _ => "-".into(),
    }
}

fn pair(a: Option<f64>, b: Option<f64>) -> String {
    if a.is_none() && b.is_none() {
        "-".into()
    } else {
        format!("{}/{}", pct(a), pct(b))
    }
}

/// Builds the table from the finished GLUE runs; `by` names swept keys that split a method's row.
pub fn build(runs: &Runs, by: &[String]) -> Result<GlueTable> {
    for k in by {
        if !runs.has(k) {
            bail!("--by {k:?}: runs.csv has no such column (swept keys: {})", runs.swept.join(", "));
        }
    }
    let tasks = runs.strings("task")?;
    let glue: Vec<bool> = tasks.iter().map(|t| t.as_deref().is_some_and(|t| COLUMNS.iter().any(|(c, _)| *c == t))).collect();
    let mut notes = Vec::new();
    let ignored: std::collections::BTreeSet<String> =
        tasks.iter().zip(&glue).filter(|(_, g)| !**g).filter_map(|(t, _)| t.clone()).collect();
    if !ignored.is_empty() {
        eprintln!("note: the GLUE table ignores the runs of: {}", ignored.iter().cloned().collect::<Vec<_>>().join(", "));
    }
    if !glue.iter().any(|g| *g) {
        bail!("{}: no finished run of a GLUE task (tasks: {})", runs.dir.display(), runs.tasks()?.join(", "));
    }
    let metrics: Vec<&str> = METRIC_COLUMNS.iter().copied().filter(|c| runs.has(c)).collect();
    // Cells: the mean of each metric over the runs (seeds) of one (method, task, --by...).
    let mut keys: Vec<String> = vec!["method".into(), "task".into()];
    keys.extend(by.iter().cloned());
    let cells = aggregate_means(runs, &glue, &keys, &metrics, "__n").context("averaging runs.csv over seeds with polars")?;
    let mut row_keys: Vec<String> = vec!["method".into()];
    row_keys.extend(by.iter().cloned());
    // #Params as the papers count it: the adapters without the head (runs.csv files written
    // before `adapter_params` existed fall back to everything the optimizer updates).
    let param_column = if runs.has("adapter_params") && runs.floats("adapter_params")?.iter().any(Option::is_some) { "adapter_params" } else { "trainable_params" };
    let params = if runs.has(param_column) {
        let mut p = aggregate_means(runs, &glue, &row_keys, &[param_column], "__count")
            .with_context(|| format!("averaging {param_column} with polars"))?;
        p.rename(param_column, "__params".into())?;
        Some(p)
    } else {
        None
    };
    let head_params: Vec<f64> = if runs.has("head_params") {
        runs.floats("head_params")?.into_iter().zip(&glue).filter(|(_, g)| **g).filter_map(|(v, _)| v).collect()
    } else {
        Vec::new()
    };

    // Gather the aggregates per row key.
    type Key = (String, Vec<Option<String>>);
    let key_of = |frame: &DataFrame| -> Result<Vec<Key>> {
        let m = super::str_values(frame, "method")?;
        let b: Vec<Vec<Option<String>>> = by.iter().map(|k| super::str_values(frame, k)).collect::<Result<_>>()?;
        Ok((0..frame.height()).map(|i| (m[i].clone().unwrap_or_default(), b.iter().map(|c| c[i].clone()).collect())).collect())
    };
    let f64s = |frame: &DataFrame, name: &str| -> Result<Vec<Option<f64>>> {
        let c = frame.column(name)?.cast(&DataType::Float64)?;
        Ok(c.f64()?.into_iter().map(|v| v.filter(|x| x.is_finite())).collect())
    };
    // Row key -> task -> (metric means, runs).
    type TaskCells = BTreeMap<String, (BTreeMap<String, f64>, usize)>;
    let mut per_row: BTreeMap<Key, TaskCells> = BTreeMap::new();
    let cell_keys = key_of(&cells)?;
    let cell_tasks = super::str_values(&cells, "task")?;
    let counts = f64s(&cells, "__n")?;
    let values: Vec<(&str, Vec<Option<f64>>)> = metrics.iter().map(|m| Ok((*m, f64s(&cells, m)?))).collect::<Result<_>>()?;
    for i in 0..cells.height() {
        let mut m = BTreeMap::new();
        for (name, v) in &values {
            if let Some(x) = v[i] {
                m.insert(name.to_string(), x);
            }
        }
        let n = counts[i].unwrap_or(0.0) as usize;
        per_row.entry(cell_keys[i].clone()).or_default().insert(cell_tasks[i].clone().unwrap_or_default(), (m, n));
    }
    let mut param_of: BTreeMap<Key, f64> = BTreeMap::new();
    if let Some(p) = &params {
        for (k, v) in key_of(p)?.into_iter().zip(f64s(p, "__params")?) {
            if let Some(v) = v {
                param_of.insert(k, v);
            }
        }
    }

    let mut header = vec!["Method".to_string(), "#Params".to_string()];
    header.extend(COLUMNS.iter().map(|(_, h)| h.to_string()));
    header.push("All Avg".into());
    let mut keys: Vec<Key> = per_row.keys().cloned().collect();
    keys.sort_by(|a, b| {
        method_rank(&a.0).cmp(&method_rank(&b.0)).then_with(|| {
            for (x, y) in a.1.iter().zip(&b.1) {
                let nx = x.as_deref().and_then(super::parse_f64);
                let ny = y.as_deref().and_then(super::parse_f64);
                let o = match (nx, ny) {
                    (Some(p), Some(q)) => p.total_cmp(&q),
                    _ => x.cmp(y),
                };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            std::cmp::Ordering::Equal
        })
    });
    let mut rows = Vec::new();
    for key in keys {
        let tasks = &per_row[&key];
        let mut scores: BTreeMap<String, f64> = BTreeMap::new();
        let mut run_counts = BTreeMap::new();
        for (task, (m, n)) in tasks {
            run_counts.insert(task.clone(), *n);
            if task == "mnli" {
                let matched = m.get("m_accuracy").or_else(|| m.get("accuracy"));
                if let Some(&v) = matched {
                    scores.extend(all_average_inputs("mnli", &BTreeMap::from([("accuracy".to_string(), v)]))?);
                }
                if let Some(&v) = m.get("mm_accuracy") {
                    scores.extend(all_average_inputs("mnli_mm", &BTreeMap::from([("accuracy".to_string(), v)]))?);
                }
                continue;
            }
            match all_average_inputs(task, m) {
                Ok(inputs) => scores.extend(inputs),
                // Half of a pair (QQP acc/F1, STS-B Pearson/Spearman) still shows in its cell.
                Err(_) => {
                    let halves: &[(&str, &str)] = match task.as_str() {
                        "qqp" => &[("qqp_acc", "accuracy"), ("qqp_f1", "f1")],
                        "stsb" => &[("stsb_pearson", "pearson"), ("stsb_spearman", "spearmanr")],
                        _ => &[],
                    };
                    for (key, metric) in halves {
                        if let Some(&v) = m.get(*metric) {
                            scores.insert(key.to_string(), v);
                        }
                    }
                }
            }
        }
        let s = |k: &str| scores.get(k).copied();
        let corr = match (s("stsb_pearson"), s("stsb_spearman")) {
            (Some(p), Some(r)) => Some((p + r) / 2.0),
            _ => None,
        };
        let all_avg = all_average(&scores).ok();
        let params = param_of.get(&key).copied();
        let mut label = method_label(&key.0);
        let extra: Vec<String> = by
            .iter()
            .zip(&key.1)
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{}={v}", k.rsplit('.').next().unwrap_or(k))))
            .collect();
        if !extra.is_empty() {
            label = format!("{label} ({})", extra.join(", "));
        }
        let cells = vec![
            label.clone(),
            params.map_or("-".into(), format_params),
            pair(s("mnli_m"), s("mnli_mm")),
            pct(s("sst2")),
            pct(s("cola")),
            pair(s("qqp_acc"), s("qqp_f1")),
            pct(s("qnli")),
            pct(s("rte")),
            pct(s("mrpc")),
            pct(corr),
            pct(all_avg),
        ];
        rows.push(TableRow { method: key.0.clone(), by: key.1.clone(), label, params, scores, runs: run_counts, all_avg, cells });
    }
    let counts: Vec<usize> = rows.iter().flat_map(|r| r.runs.values().copied()).collect();
    let (lo, hi) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
    let n = if lo == hi { format!("{hi}") } else { format!("{lo}–{hi}") };
    notes.push(format!(
        "GLUE dev scores ×100, mean over seeds ({n} runs per cell). MNLI: matched/mismatched accuracy; QQP: accuracy/F1; \
         CoLA: Matthews corr.; STS-B: mean of Pearson and Spearman corr.; others: accuracy."
    ));
    let params_note = if param_column == "adapter_params" {
        let head = match (head_params.iter().copied().reduce(f64::min), head_params.iter().copied().reduce(f64::max)) {
            (Some(lo), Some(hi)) if lo == hi => format!(" (the head has {} parameters)", format_params(lo)),
            (Some(lo), Some(hi)) => format!(" (the head has {}–{} parameters, by task)", format_params(lo), format_params(hi)),
            _ => String::new(),
        };
        format!("#Params: the adapters' trainable parameters (TriAdaptLoRA's triangle entries included; the backbone for full fine-tuning), as the papers count them, without the task head{head}; mean over the method's runs.")
    } else {
        "#Params: trainable parameters (adapters and classification head: runs.csv has no adapter_params column), mean over the method's runs.".into()
    };
    notes.push(format!(
        "All Avg: mean of the 8 task scores (MNLI mean(m, mm), QQP mean(acc, F1)), shown when all 8 tasks have runs. {params_note}"
    ));
    Ok(GlueTable { header, rows, notes })
}

impl GlueTable {
    /// The table as GitHub markdown, with the notes under it.
    pub fn to_markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut s = line(&self.header);
        let align: Vec<String> = (0..self.header.len()).map(|i| if i == 0 { ":--".to_string() } else { "--:".to_string() }).collect();
        s.push_str(&line(&align));
        for r in &self.rows {
            s.push_str(&line(&r.cells));
        }
        s.push('\n');
        for n in &self.notes {
            s.push_str(n);
            s.push('\n');
        }
        s
    }

    /// Writes the same cells as CSV (header row, one row per method).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
        w.write_record(&self.header)?;
        for r in &self.rows {
            w.write_record(&r.cells)?;
        }
        w.flush()?;
        Ok(())
    }
}

/// `triadapt table`: builds the table, writes `table.md` and `table.csv` into `out` (default the
/// results directory) and returns the table and the two paths.
pub fn run(results: &Path, out: Option<&Path>, by: &[String]) -> Result<(GlueTable, Vec<PathBuf>)> {
    let runs = Runs::load(results)?;
    let table = build(&runs, by)?;
    let dir = out.map(Path::to_path_buf).unwrap_or_else(|| runs.dir.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let md = dir.join("table.md");
    std::fs::write(&md, table.to_markdown()).with_context(|| format!("cannot write {}", md.display()))?;
    let csv = dir.join("table.csv");
    table.write_csv(&csv)?;
    Ok((table, vec![md, csv]))
}

/// Groups the rows of `runs` where `mask` holds by `keys` and averages each of `columns` (cells
/// parsed as numbers; a `nan` cell makes its group's mean NaN, as a polars mean would). The frame
/// has the key columns, one column per averaged column and the run count under `count`.
fn aggregate_means(runs: &Runs, mask: &[bool], keys: &[String], columns: &[&str], count: &str) -> Result<DataFrame> {
    let (mut frame, groups) = super::group_rows(&runs.df, mask, keys)?;
    for c in columns {
        let raw: Vec<Option<f64>> =
            runs.strings(c)?.into_iter().map(|s| s.and_then(|s| s.trim().parse::<f64>().ok())).collect();
        let means: Vec<Option<f64>> = groups.iter().map(|rows| super::group_stats(rows.iter().map(|&i| raw[i])).mean).collect();
        frame.with_column(Column::new((*c).into(), means))?;
    }
    let n: Vec<u32> = groups.iter().map(|rows| rows.len() as u32).collect();
    frame.with_column(Column::new(count.into(), n))?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_as_in_the_paper() {
        assert_eq!(format_params(330_000.0), "0.33M");
        assert_eq!(format_params(1_330_000.0), "1.33M");
        assert_eq!(format_params(12_345_678.0), "12.3M");
        assert_eq!(format_params(184_420_000.0), "184M");
        assert_eq!(format_params(11_462.0), "11.5K");
        assert_eq!(format_params(950.0), "950");
    }
}
