//! `triadapt table`: the GLUE dev table in the paper's layout (its Table 1).
//!
//! One block per rank budget, as the paper's "r = 2" and "r = 8" blocks: the reference rank r
//! of each run (`budget.rs`; full fine-tuning in a block of its own, first). In a block, one row
//! per method and setting of the other swept keys (the runs.csv columns between `seed` and
//! `status`): runs of different budgets or settings are never averaged together, only seeds
//! are. Columns MNLI (m/mm), SST-2, CoLA (Mcc), QQP (Acc/F1), QNLI, RTE, MRPC (Acc), STS-B (Corr
//! = mean of Pearson and Spearman, per run) and All Avg. Each cell is the mean ± sample standard
//! deviation over the row's runs of the task, with their count: `87.9 ± 0.4 (5)` (x100, one
//! decimal; one run: `87.9 (1)`; no run: `-`). All Avg is `metrics::all_average` of each seed's
//! eight task scores, then mean ± std over the seeds, where every task has the same seeds (each
//! once); otherwise the All Avg of the cell means, marked `†`, without spread. #Params is the
//! runs' `adapter_params` (the adapters without the task head, as the papers count them;
//! `trainable_params` for a runs.csv without that column), averaged over the row's runs.
//!
//! `table.csv` holds the numbers behind every cell (n, mean, std, min, max, x100), and the
//! published numbers of `--reference` (`reference.rs`) with their differences, which the
//! markdown shows under each row they match.
//!
//! Runs.csv metric columns read: MNLI `m_accuracy`, `mm_accuracy` (`accuracy` stands in for the
//! matched score when `m_accuracy` is empty); QQP `accuracy`, `f1`; STS-B `pearson`, `spearmanr`;
//! CoLA `matthews_correlation`; the others `accuracy`. Other tasks are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::metrics::all_average;

use super::budget::{rank_key, run_budgets, Budget};
use super::reference::Reference;
use super::stats::{cell_text, difference_text, pair_text, summarize, Summary};
use super::{method_label, method_rank, short_number, Runs};

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

/// The scores of table.csv, per row: the table's (`SCORE_KEYS` but All Avg), STS-B's two
/// halves, then All Avg.
const CSV_SCORES: [&str; 13] =
    ["mnli_m", "mnli_mm", "sst2", "cola", "qqp_acc", "qqp_f1", "qnli", "rte", "mrpc", "stsb", "stsb_pearson", "stsb_spearman", "all_avg"];

/// The mark of an All Avg taken over cell means (the tasks' seeds differ).
pub const CELL_MEANS_MARK: &str = "†";

/// All Avg of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AllAvg {
    /// Over seeds: the All Avg of each seed's eight task scores, summarised (fractions).
    Seeds(Summary),
    /// The All Avg of the cell means: the tasks do not all have the same seeds (fraction).
    CellMeans(f64),
}

impl AllAvg {
    pub fn mean(&self) -> f64 {
        match self {
            AllAvg::Seeds(s) => s.mean,
            AllAvg::CellMeans(m) => *m,
        }
    }
}

/// The published numbers matching a row (`--reference`), x100.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub scores: BTreeMap<String, f64>,
    /// The published cells, `GlueTable::header` order (the first two: label and empty).
    pub cells: Vec<String>,
    /// Our mean minus the published score, per cell.
    pub differences: Vec<String>,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct TableRow {
    /// The block it is in.
    pub budget: Budget,
    pub method: String,
    /// The other swept keys' values of the row's runs, (key, value) in runs.csv order.
    pub setting: Vec<(String, String)>,
    pub label: String,
    /// Mean `adapter_params` (or `trainable_params`) over the row's runs.
    pub params: Option<f64>,
    /// Per score (`CSV_SCORES` but All Avg): the summary over the row's runs (fractions).
    pub scores: BTreeMap<String, Summary>,
    pub all_avg: Option<AllAvg>,
    /// The formatted cells, `GlueTable::header` order.
    pub cells: Vec<String>,
    pub published: Option<Published>,
}

impl TableRow {
    /// The runs behind each task's cell.
    pub fn runs(&self, score: &str) -> usize {
        self.scores.get(score).map_or(0, |s| s.n)
    }
}

#[derive(Debug, Clone)]
pub struct GlueTable {
    pub header: Vec<String>,
    /// Rows by block (no budget, then r ascending), in the paper's method order in a block.
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

/// The scores one run contributes (fractions), from its task and metric values: MNLI
/// `mnli_m`, `mnli_mm`; QQP `qqp_acc`, `qqp_f1`; STS-B `stsb_pearson`, `stsb_spearman` and
/// `stsb` (their mean, the Corr); CoLA `cola` (Mcc); the others their accuracy under the
/// task's name.
pub fn run_scores(task: &str, metric: &BTreeMap<&str, f64>) -> BTreeMap<String, f64> {
    let m = |k: &str| metric.get(k).copied();
    let pairs: Vec<(&str, Option<f64>)> = match task {
        "mnli" => vec![("mnli_m", m("m_accuracy").or(m("accuracy"))), ("mnli_mm", m("mm_accuracy"))],
        "qqp" => vec![("qqp_acc", m("accuracy")), ("qqp_f1", m("f1"))],
        "stsb" => vec![
            ("stsb_pearson", m("pearson")),
            ("stsb_spearman", m("spearmanr")),
            ("stsb", m("pearson").zip(m("spearmanr")).map(|(p, s)| (p + s) / 2.0)),
        ],
        "cola" => vec![("cola", m("matthews_correlation"))],
        t => vec![(t, m("accuracy"))],
    };
    pairs.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect()
}

/// All Avg of a row from its runs' (task, seed, scores): over seeds where every one of the
/// eight tasks has the same seeds, each once (and every seed's scores are complete); else the
/// All Avg of the cell means `means`; None when a task's scores are missing.
pub fn all_avg_of(runs: &[(String, Option<i64>, BTreeMap<String, f64>)], means: &BTreeMap<String, f64>) -> Option<AllAvg> {
    let mut seeds_of: BTreeMap<&str, Vec<Option<i64>>> = BTreeMap::new();
    for (task, seed, _) in runs {
        seeds_of.entry(task.as_str()).or_default().push(*seed);
    }
    let of_means = || all_average(means).ok().map(AllAvg::CellMeans);
    if COLUMNS.iter().any(|(t, _)| !seeds_of.contains_key(t)) {
        return None;
    }
    let sets: Vec<BTreeSet<i64>> = seeds_of.values().map(|v| v.iter().flatten().copied().collect()).collect();
    let each_once =
        seeds_of.values().all(|v| v.iter().all(Option::is_some)) && seeds_of.values().zip(&sets).all(|(v, s)| v.len() == s.len());
    if !each_once || sets.windows(2).any(|w| w[0] != w[1]) {
        return of_means();
    }
    let mut per_seed = Vec::new();
    for &seed in &sets[0] {
        let mut merged = BTreeMap::new();
        for (_, _, scores) in runs.iter().filter(|(_, s, _)| *s == Some(seed)) {
            merged.extend(scores.iter().map(|(k, v)| (k.clone(), *v)));
        }
        match all_average(&merged) {
            Ok(v) => per_seed.push(v),
            Err(_) => return of_means(),
        }
    }
    summarize(&per_seed).map(AllAvg::Seeds)
}

/// The cells of a row's scores (fractions, printed x100): label, #Params, the eight tasks,
/// All Avg.
fn score_cells(label: &str, params: Option<f64>, scores: &BTreeMap<String, Summary>, all_avg: Option<&AllAvg>) -> Vec<String> {
    let pct: BTreeMap<&str, Summary> = scores.iter().map(|(k, s)| (k.as_str(), s.scaled(100.0))).collect();
    let one = |k: &str| cell_text(pct.get(k));
    let two = |a: &str, b: &str| pair_text(pct.get(a), pct.get(b));
    let avg = match all_avg {
        Some(AllAvg::Seeds(s)) => cell_text(Some(&s.scaled(100.0))),
        Some(AllAvg::CellMeans(m)) if m.is_finite() => format!("{:.1}{CELL_MEANS_MARK}", m * 100.0),
        Some(AllAvg::CellMeans(_)) => "nan".into(),
        None => "-".into(),
    };
    let mut cells = vec![label.to_string(), params.map_or("-".into(), format_params)];
    cells.extend(task_cells(one, two));
    cells.push(avg);
    cells
}

/// The eight task cells in `COLUMNS` order, from a one-score and a two-score (MNLI m/mm, QQP
/// Acc/F1) cell maker.
fn task_cells(one: impl Fn(&str) -> String, two: impl Fn(&str, &str) -> String) -> Vec<String> {
    vec![two("mnli_m", "mnli_mm"), one("sst2"), one("cola"), two("qqp_acc", "qqp_f1"), one("qnli"), one("rte"), one("mrpc"), one("stsb")]
}

/// Our means (x100) by `SCORE_KEYS`, All Avg included.
fn our_means(row: &TableRow) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = row.scores.iter().map(|(k, s)| (k.clone(), s.mean * 100.0)).collect();
    if let Some(a) = &row.all_avg {
        m.insert("all_avg".into(), a.mean() * 100.0);
    }
    m
}

/// The published row under one of ours: the published cells and our mean minus them.
fn published_row(row: &TableRow, published: BTreeMap<String, f64>) -> Published {
    let ours = our_means(row);
    let p = |k: &str| published.get(k).copied();
    let one = |k: &str| p(k).map_or("-".into(), |v| format!("{v:.1}"));
    let two = |a: &str, b: &str| if p(a).is_none() && p(b).is_none() { "-".into() } else { format!("{}/{}", one(a), one(b)) };
    let d = |k: &str| difference_text(ours.get(k).copied(), p(k));
    let d2 = |a: &str, b: &str| if p(a).is_none() && p(b).is_none() { "-".into() } else { format!("{}/{}", d(a), d(b)) };
    let mut cells = vec!["↳ published".into(), String::new()];
    cells.extend(task_cells(one, two));
    cells.push(one("all_avg"));
    let mut differences = vec!["↳ ours − published".into(), String::new()];
    differences.extend(task_cells(d, d2));
    differences.push(d("all_avg"));
    Published { scores: published, cells, differences }
}

/// Orders two settings: values compared as numbers where both are, else as text.
fn setting_order(a: &[(String, String)], b: &[(String, String)]) -> std::cmp::Ordering {
    for ((ka, va), (kb, vb)) in a.iter().zip(b) {
        let o = ka.cmp(kb).then_with(|| match (super::parse_f64(va), super::parse_f64(vb)) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => va.cmp(vb),
        });
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Builds the table from the finished GLUE runs; `reference`: published numbers to show under
/// the rows they match (by method and reference rank r).
pub fn build(runs: &Runs, reference: Option<&Reference>) -> Result<GlueTable> {
    let records = runs.records()?;
    let is_glue = |t: &str| COLUMNS.iter().any(|(c, _)| *c == t);
    let ignored: BTreeSet<&str> = records.iter().map(|r| r.task.as_str()).filter(|t| !is_glue(t)).collect();
    if !ignored.is_empty() {
        eprintln!("note: the GLUE table ignores the runs of: {}", ignored.iter().copied().collect::<Vec<_>>().join(", "));
    }
    if !records.iter().any(|r| is_glue(&r.task)) {
        bail!("{}: no finished run of a GLUE task (tasks: {})", runs.dir.display(), runs.tasks()?.join(", "));
    }
    let budgets = run_budgets(runs, &records);
    let metric_values: Vec<(&str, Vec<Option<f64>>)> =
        METRIC_COLUMNS.iter().filter(|c| runs.has(c)).map(|c| Ok((*c, runs.floats(c)?))).collect::<Result<_>>()?;
    // #Params as the papers count it: the adapters without the head (runs.csv files written
    // before `adapter_params` existed fall back to everything the optimizer updates).
    let param_column = if runs.has("adapter_params") && runs.floats("adapter_params")?.iter().any(Option::is_some) {
        "adapter_params"
    } else {
        "trainable_params"
    };
    let params: Vec<Option<f64>> = if runs.has(param_column) { runs.floats(param_column)? } else { vec![None; runs.df.height()] };
    let swept: Vec<(String, Vec<Option<String>>)> = runs.swept.iter().map(|k| Ok((k.clone(), runs.strings(k)?))).collect::<Result<_>>()?;
    let head_params: Vec<f64> = if runs.has("head_params") {
        let h = runs.floats("head_params")?;
        records.iter().filter(|r| is_glue(&r.task)).filter_map(|r| h[r.row]).collect()
    } else {
        Vec::new()
    };

    // Group the runs by (budget, method, setting); the group's runs as (task, seed, scores).
    type Key = ((u8, i64), String, Vec<(String, String)>);
    struct Group {
        budget: Budget,
        runs: Vec<(String, Option<i64>, BTreeMap<String, f64>)>,
        params: Vec<f64>,
    }
    let mut groups: BTreeMap<Key, Group> = BTreeMap::new();
    for (r, budget) in records.iter().zip(&budgets) {
        if !is_glue(&r.task) {
            continue;
        }
        let block_key = if matches!(budget, Budget::Rank(_)) { rank_key(&r.method) } else { None };
        let setting: Vec<(String, String)> = swept
            .iter()
            .filter(|(k, _)| Some(k.as_str()) != block_key)
            .filter_map(|(k, v)| v[r.row].clone().map(|v| (k.clone(), v)))
            .collect();
        let metric: BTreeMap<&str, f64> = metric_values.iter().filter_map(|(c, v)| v[r.row].map(|x| (*c, x))).collect();
        let g = groups.entry((budget.sort_key(), r.method.clone(), setting)).or_insert_with(|| Group {
            budget: *budget,
            runs: Vec::new(),
            params: Vec::new(),
        });
        g.runs.push((r.task.clone(), r.seed, run_scores(&r.task, &metric)));
        g.params.extend(params[r.row]);
    }

    let mut header = vec!["Method".to_string(), "#Params".to_string()];
    header.extend(COLUMNS.iter().map(|(_, h)| h.to_string()));
    header.push("All Avg".into());
    let mut keys: Vec<&Key> = groups.keys().collect();
    keys.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| method_rank(&a.1).cmp(&method_rank(&b.1))).then_with(|| setting_order(&a.2, &b.2)));
    let mut rows = Vec::new();
    for key in keys {
        let g = &groups[key];
        let (method, setting) = (&key.1, &key.2);
        let mut scores: BTreeMap<String, Summary> = BTreeMap::new();
        for score in CSV_SCORES.iter().filter(|s| **s != "all_avg") {
            let values: Vec<f64> = g.runs.iter().filter_map(|(_, _, sc)| sc.get(*score).copied()).collect();
            if let Some(s) = summarize(&values) {
                scores.insert(score.to_string(), s);
            }
        }
        let means: BTreeMap<String, f64> = scores.iter().map(|(k, s)| (k.clone(), s.mean)).collect();
        let all_avg = all_avg_of(&g.runs, &means);
        let params = summarize(&g.params).map(|s| s.mean);
        let mut label = method_label(method);
        if !setting.is_empty() {
            let words: Vec<String> = setting.iter().map(|(k, v)| format!("{}={v}", k.rsplit('.').next().unwrap_or(k))).collect();
            label = format!("{label} ({})", words.join(", "));
        }
        let cells = score_cells(&label, params, &scores, all_avg.as_ref());
        let mut row = TableRow {
            budget: g.budget,
            method: method.clone(),
            setting: setting.clone(),
            label,
            params,
            scores,
            all_avg,
            cells,
            published: None,
        };
        if let Some(reference) = reference {
            let p = reference.scores(method, published_budget(&g.budget));
            if !p.is_empty() && !matches!(g.budget, Budget::Total(_)) {
                row.published = Some(published_row(&row, p));
            }
        }
        rows.push(row);
    }
    let notes = notes(&rows, param_column, &head_params, reference);
    Ok(GlueTable { header, rows, notes })
}

/// The reference file's budget a row's block matches: r, or none for the no-budget block.
fn published_budget(b: &Budget) -> Option<f64> {
    match b {
        Budget::Rank(r) => Some(*r),
        _ => None,
    }
}

/// The lines under the table: what each cell averages, the blocks, All Avg, #Params, the
/// published numbers.
fn notes(rows: &[TableRow], param_column: &str, head_params: &[f64], reference: Option<&Reference>) -> Vec<String> {
    let mut notes = Vec::new();
    let counts: Vec<usize> = rows.iter().flat_map(|r| r.scores.values().map(|s| s.n)).collect();
    let (lo, hi) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
    let n = match (lo, hi) {
        (1, 1) => "n = 1 in every cell: single runs, no spread".to_string(),
        (l, h) if l == h => format!("n = {h} in every cell"),
        (1, h) => format!("n = 1–{h} by cell; n = 1: a single run, no spread"),
        (l, h) => format!("n = {l}–{h} by cell"),
    };
    notes.push(format!(
        "GLUE dev scores ×100. Each cell: mean ± sample standard deviation over the seeds of one method, rank budget and setting, with the number of runs in parentheses ({n}). \
         MNLI: matched/mismatched accuracy; QQP: accuracy/F1; CoLA: Matthews corr.; STS-B: mean of Pearson and Spearman corr.; others: accuracy."
    ));
    let mut blocks = "One block per rank budget: the reference rank r (TriAdaptLoRA `ref_rank`, LoRA `rank`, IncreLoRA and AdaLoRA `target_rank`, the average final rank per adapted matrix)".to_string();
    if rows.iter().any(|r| matches!(r.budget, Budget::Total(_))) {
        blocks.push_str(
            "; `rank budget B`: runs whose rank setting is neither a runs.csv column nor in a run folder, by their total rank budget",
        );
    }
    blocks.push_str(
        ". One row per method and setting of the other swept keys. Runs of different blocks or rows are never averaged together.",
    );
    notes.push(blocks);
    let marked = rows.iter().any(|r| matches!(r.all_avg, Some(AllAvg::CellMeans(_))));
    let seeds: Vec<usize> = rows
        .iter()
        .filter_map(|r| match r.all_avg {
            Some(AllAvg::Seeds(s)) => Some(s.n),
            _ => None,
        })
        .collect();
    let mut avg = "All Avg: mean of the 8 task scores (MNLI mean(m, mm), QQP mean(acc, F1)), shown when all 8 tasks have runs".to_string();
    if !seeds.is_empty() {
        avg.push_str("; per seed, then mean ± std over the seeds (n seeds; every task has each seed once)");
    }
    if marked {
        avg.push_str(&format!(
            "; {CELL_MEANS_MARK}: the tasks' runs do not have the same seeds, so the mean of the cell means, without spread"
        ));
    }
    avg.push('.');
    notes.push(avg);
    notes.push(if param_column == "adapter_params" {
        let head = match (head_params.iter().copied().reduce(f64::min), head_params.iter().copied().reduce(f64::max)) {
            (Some(lo), Some(hi)) if lo == hi => format!(" (the head has {} parameters)", format_params(lo)),
            (Some(lo), Some(hi)) => format!(" (the head has {}–{} parameters, by task)", format_params(lo), format_params(hi)),
            _ => String::new(),
        };
        format!("#Params: the adapters' parameters as the papers count them, without the task head{head}: TriAdaptLoRA's triangle entries included, IncreLoRA without its reserve, AdaLoRA at its final budget (the kept triplets, as AdaLoRA's paper; its pruned triplets stay trainable), the backbone for full fine-tuning; mean over the row's runs.")
    } else {
        "#Params: trainable parameters (adapters and classification head: runs.csv has no adapter_params column), mean over the row's runs.".into()
    });
    if let Some(reference) = reference {
        notes.push(format!(
            "↳ published: {} (method and r as the row); ↳ ours − published: our mean minus the published score.",
            reference.path.display()
        ));
        let mut missing: Vec<String> = Vec::new();
        for e in &reference.entries {
            let matched = rows.iter().any(|r| {
                r.published.is_some()
                    && r.method == e.method
                    && published_budget(&r.budget).map(|b| (b - e.budget.unwrap_or(f64::NAN)).abs() < 1e-9).unwrap_or(e.budget.is_none())
            });
            let what = format!(
                "{} {}",
                method_label(&e.method),
                e.budget.map_or("(no rank budget)".into(), |b| format!("r = {}", short_number(b)))
            );
            if !matched && !missing.contains(&what) {
                missing.push(what);
            }
        }
        if !missing.is_empty() {
            notes.push(format!("Published numbers without a row here: {}.", missing.join("; ")));
        }
    }
    notes
}

impl GlueTable {
    /// The table as GitHub markdown: a heading row per block, published rows under the rows
    /// they match, the notes under the table.
    pub fn to_markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut s = line(&self.header);
        let align: Vec<String> = (0..self.header.len()).map(|i| if i == 0 { ":--".to_string() } else { "--:".to_string() }).collect();
        s.push_str(&line(&align));
        let mut block: Option<(u8, i64)> = None;
        for r in &self.rows {
            if block != Some(r.budget.sort_key()) {
                block = Some(r.budget.sort_key());
                let mut heading = vec![format!("**{}**", r.budget.label())];
                heading.resize(self.header.len(), String::new());
                s.push_str(&line(&heading));
            }
            s.push_str(&line(&r.cells));
            if let Some(p) = &r.published {
                s.push_str(&line(&p.cells));
                s.push_str(&line(&p.differences));
            }
        }
        s.push('\n');
        for n in &self.notes {
            s.push_str(n);
            s.push('\n');
        }
        s
    }

    /// Writes the numbers behind the cells: one CSV row per table row and score, columns
    /// `TABLE_CSV_COLUMNS` (scores x100, full precision).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
        w.write_record(TABLE_CSV_COLUMNS)?;
        let num = super::cell;
        for r in &self.rows {
            let setting: Vec<String> = r.setting.iter().map(|(k, v)| format!("{k}={v}")).collect();
            for score in CSV_SCORES {
                // (how it was averaged, its summary); All Avg of cell means: a mean only.
                let (averaged, s, mean_only): (&str, Option<Summary>, Option<f64>) = match (score, &r.all_avg) {
                    ("all_avg", Some(AllAvg::Seeds(s))) => ("seeds", Some(s.scaled(100.0)), None),
                    ("all_avg", Some(AllAvg::CellMeans(m))) => ("cell means", None, Some(m * 100.0)),
                    ("all_avg", None) => ("", None, None),
                    (k, _) => ("runs", r.scores.get(k).map(|s| s.scaled(100.0)), None),
                };
                let published = r.published.as_ref().and_then(|p| p.scores.get(score).copied());
                let mean = s.map(|s| s.mean).or(mean_only);
                if mean.is_none() && published.is_none() {
                    continue;
                }
                w.write_record([
                    r.budget.label(),
                    r.budget.rank().map(num).unwrap_or_default(),
                    r.method.clone(),
                    setting.join("; "),
                    r.label.clone(),
                    r.params.map(num).unwrap_or_default(),
                    score.to_string(),
                    averaged.to_string(),
                    s.map(|s| s.n.to_string()).unwrap_or_default(),
                    mean.map(num).unwrap_or_default(),
                    s.and_then(|s| s.std).map(num).unwrap_or_default(),
                    s.map(|s| num(s.min)).unwrap_or_default(),
                    s.map(|s| num(s.max)).unwrap_or_default(),
                    published.map(num).unwrap_or_default(),
                    mean.zip(published).map(|(m, p)| num(m - p)).unwrap_or_default(),
                ])?;
            }
        }
        w.flush()?;
        Ok(())
    }
}

/// The columns of table.csv.
pub const TABLE_CSV_COLUMNS: [&str; 15] = [
    "block",
    "r",
    "method",
    "setting",
    "label",
    "params",
    "score",
    "averaged",
    "n",
    "mean",
    "std",
    "min",
    "max",
    "published",
    "difference",
];

/// `triadapt table`: builds the table (with the published numbers of `reference`), writes
/// `table.md` and `table.csv` into `out` (default the results directory) and returns the table
/// and the two paths.
pub fn run(results: &Path, out: Option<&Path>, reference: Option<&Path>) -> Result<(GlueTable, Vec<PathBuf>)> {
    let runs = Runs::load(results)?;
    let reference = reference.map(Reference::load).transpose()?;
    let table = build(&runs, reference.as_ref())?;
    let dir = out.map(Path::to_path_buf).unwrap_or_else(|| runs.dir.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let md = dir.join("table.md");
    std::fs::write(&md, table.to_markdown()).with_context(|| format!("cannot write {}", md.display()))?;
    let csv = dir.join("table.csv");
    table.write_csv(&csv)?;
    Ok((table, vec![md, csv]))
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
