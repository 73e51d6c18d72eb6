//! Figures and tables from a sweep's results directory (`triadapt heatmap`, `plot`, `table`).
//!
//! Input: `<results dir>/runs.csv`, one row per run with the columns `run_id, name, task, method,
//! seed, <one column per swept key>, status, error, main_metric, best_score, best_step, <metric
//! columns>, trainable_params, total_rank, rank_budget, wall_seconds, run_dir` (metrics are
//! fractions), and each run's folder (`run_dir`, relative to the results directory or absolute)
//! with `rank_pattern.json`, `curve.csv` and `metrics.json`. Only rows whose `status` is
//! `finished` are used; the swept keys are the columns between `seed` and `status`.
//!
//! - `heatmap.rs`: the final rank of every adapted matrix (paper Figure 2).
//! - `curves.rs`: ablation curves (Figures 3-5), rank growth and training curves.
//! - `table.rs`: the GLUE table (the paper's Table 1): one block per reference rank r (`budget.rs`),
//!   mean ± std over seeds per cell (`stats.rs`), published numbers beside ours (`reference.rs`).
//! - `canvas.rs`: the PNG and SVG backends (text layout, PNG resolution).
//!
//! Figures are written as PNG and SVG, each with two CSV files beside it: `<stem>.csv`, the
//! plotted numbers (to redraw the figure in another style), and `<stem>.runs.csv`, the runs
//! drawn (run ids, seeds, scores, run folders; figures name no run ids). Text is drawn with the
//! bundled DejaVu Sans (`assets/fonts/`), laid out by `canvas.rs`, so no system font or
//! fontconfig is needed. Every figure draws the methods in one order (`figure_rank`, from `MethodName`:
//! TriAdaptLoRA first) and colours (`method_color`).

pub mod budget;
pub mod canvas;
pub mod curves;
pub mod heatmap;
pub mod reference;
pub mod stats;
pub mod table;

use std::path::{Path, PathBuf};
use std::sync::Once;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use polars::prelude::*;

use crate::peft::method::MethodName;

/// Columns every `runs.csv` must have.
const REQUIRED: [&str; 2] = ["task", "method"];

/// A results directory's `runs.csv`, reduced to finished runs. Every column is kept as text
/// (exactly as written), so swept values keep their spelling; numbers are parsed where used.
pub struct Runs {
    /// The results directory.
    pub dir: PathBuf,
    /// Its folder name (figures go to `<out>/<name>/`).
    pub name: String,
    /// The finished rows, all columns as strings.
    pub df: DataFrame,
    /// The swept keys: the columns between `seed` and `status`, in file order.
    pub swept: Vec<String>,
    /// Rows left out because their status is not `finished`.
    pub skipped: usize,
}

/// The fields of one row the figures need.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Row index in `Runs::df`.
    pub row: usize,
    pub run_id: String,
    pub task: String,
    pub method: String,
    pub seed: Option<i64>,
    pub best_score: Option<f64>,
    pub main_metric: Option<String>,
    pub rank_budget: Option<f64>,
    /// The final total rank (`total_rank` column).
    pub total_rank: Option<f64>,
    /// The run folder, resolved (see `Runs::resolve_run_dir`); None when the row names none.
    pub run_dir: Option<PathBuf>,
}

impl Runs {
    /// Reads `<dir>/runs.csv` (or `dir` itself when it is the CSV file).
    pub fn load(dir: &Path) -> Result<Runs> {
        let (dir, csv) = if dir.is_file() {
            (dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")), dir.to_path_buf())
        } else {
            (dir.to_path_buf(), dir.join("runs.csv"))
        };
        if !csv.is_file() {
            bail!("{} not found (a results directory holds the runs.csv a sweep writes)", csv.display());
        }
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .try_into_reader_with_file_path(Some(csv.clone()))
            .and_then(|r| r.finish())
            .with_context(|| format!("{}: not a readable CSV file", csv.display()))?;
        let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
        for need in REQUIRED {
            if !names.iter().any(|n| n == need) {
                bail!("{}: missing column {need:?} (has {})", csv.display(), names.join(", "));
            }
        }
        let swept = match (names.iter().position(|n| n == "seed"), names.iter().position(|n| n == "status")) {
            (Some(a), Some(b)) if a < b => names[a + 1..b].to_vec(),
            _ => Vec::new(),
        };
        let total = df.height();
        let df = if names.iter().any(|n| n == "status") {
            let status = str_values(&df, "status")?;
            let mask: BooleanChunked = status
                .iter()
                .map(|s| s.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case(crate::train::result::RunStatus::Finished.as_str())))
                .collect();
            df.filter(&mask)?
        } else {
            df
        };
        let skipped = total - df.height();
        if df.height() == 0 {
            bail!("{}: no finished runs ({total} rows, none with status `finished`)", csv.display());
        }
        let abs = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let name = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "results".into());
        Ok(Runs { dir, name, df, swept, skipped })
    }

    /// Whether `runs.csv` has the column.
    pub fn has(&self, column: &str) -> bool {
        self.df.get_column_names().iter().any(|c| c.as_str() == column)
    }

    /// A column as text (None for empty cells); an error names the columns there are.
    pub fn strings(&self, column: &str) -> Result<Vec<Option<String>>> {
        if !self.has(column) {
            bail!("runs.csv has no column {column:?} (has {})", self.column_list());
        }
        str_values(&self.df, column)
    }

    /// A column parsed as numbers (None for empty or non-numeric cells).
    pub fn floats(&self, column: &str) -> Result<Vec<Option<f64>>> {
        Ok(self.strings(column)?.into_iter().map(|s| s.and_then(|s| parse_f64(&s))).collect())
    }

    fn optional_strings(&self, column: &str) -> Vec<Option<String>> {
        self.strings(column).unwrap_or_else(|_| vec![None; self.df.height()])
    }

    pub fn column_list(&self) -> String {
        self.df.get_column_names().iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The tasks in order of first appearance.
    pub fn tasks(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for t in self.strings("task")?.into_iter().flatten() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// One record per finished row.
    pub fn records(&self) -> Result<Vec<RunRecord>> {
        let task = self.strings("task")?;
        let method = self.strings("method")?;
        let run_id = self.optional_strings("run_id");
        let seed = self.optional_strings("seed");
        let best = self.optional_strings("best_score");
        let main = self.optional_strings("main_metric");
        let budget = self.optional_strings("rank_budget");
        let total = self.optional_strings("total_rank");
        let run_dir = self.optional_strings("run_dir");
        Ok((0..self.df.height())
            .map(|i| RunRecord {
                row: i,
                run_id: run_id[i].clone().unwrap_or_else(|| format!("row {}", i + 1)),
                task: task[i].clone().unwrap_or_default(),
                method: method[i].clone().unwrap_or_default(),
                seed: seed[i].as_deref().and_then(parse_f64).map(|v| v as i64),
                best_score: best[i].as_deref().and_then(parse_f64),
                main_metric: main[i].clone(),
                rank_budget: budget[i].as_deref().and_then(parse_f64),
                total_rank: total[i].as_deref().and_then(parse_f64),
                run_dir: run_dir[i].as_deref().map(|d| self.resolve_run_dir(d)),
            })
            .collect())
    }

    /// A `run_dir` cell as a path: absolute as it is; relative to the results directory, else
    /// (when that does not exist but the path does) relative to the working directory.
    pub fn resolve_run_dir(&self, cell: &str) -> PathBuf {
        let p = PathBuf::from(cell);
        if p.is_absolute() {
            return p;
        }
        let under = self.dir.join(&p);
        if !under.exists() && p.exists() {
            return p;
        }
        under
    }
}

/// Eager polars group-by: the groups of the rows of `df` where `mask` holds, by `keys` in order
/// of first appearance. Returns the key columns (one row per group) and each group's row indices
/// into `df`. Eager on purpose: it keeps polars' lazy engine (most of a clean build) out.
pub(crate) fn group_rows(df: &DataFrame, mask: &[bool], keys: &[String]) -> Result<(DataFrame, Vec<Vec<usize>>)> {
    let kept: Vec<usize> = (0..df.height()).filter(|&i| mask[i]).collect();
    let filtered = df.filter(&BooleanChunked::from_slice("__mask".into(), mask))?;
    let gb = filtered.group_by_stable(keys.iter().map(String::as_str))?;
    let key_frame = DataFrame::new(gb.keys())?;
    let rows = gb
        .get_groups()
        .iter()
        .map(|g| match g {
            GroupsIndicator::Idx((_, idx)) => idx.iter().map(|&i| kept[i as usize]).collect(),
            GroupsIndicator::Slice([first, len]) => (first..first + len).map(|i| kept[i as usize]).collect(),
        })
        .collect();
    Ok((key_frame, rows))
}

/// Summary statistics of one group's values, as polars' aggregations define them: nulls are
/// left out, `std` is the sample standard deviation (None below two values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupStats {
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub std: Option<f64>,
}

pub(crate) fn group_stats(values: impl IntoIterator<Item = Option<f64>>) -> GroupStats {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    match stats::summarize(&v) {
        None => GroupStats { mean: None, min: None, max: None, std: None },
        Some(s) => GroupStats { mean: Some(s.mean), min: Some(s.min), max: Some(s.max), std: s.std },
    }
}

fn str_values(df: &DataFrame, column: &str) -> Result<Vec<Option<String>>> {
    let c = df.column(column)?.cast(&DataType::String)?;
    let s = c.str()?;
    Ok(s.into_iter().map(|v| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)).collect())
}

/// Parses a cell as a number: finite values only (`nan`, `inf` and text are None).
pub fn parse_f64(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The run that stands for its method where a figure draws one run per method: the highest
/// `best_score` (runs without one come last), ties broken by the lowest seed, then file order.
pub fn representative<'a>(runs: &[&'a RunRecord]) -> Option<&'a RunRecord> {
    let mut best: Option<&RunRecord> = None;
    for &r in runs {
        best = match best {
            None => Some(r),
            Some(b) => {
                let key = |x: &RunRecord| (x.best_score.unwrap_or(f64::NEG_INFINITY), -(x.seed.unwrap_or(i64::MAX) as f64));
                let (kr, kb) = (key(r), key(b));
                if kr.0 > kb.0 || (kr.0 == kb.0 && kr.1 > kb.1) {
                    Some(r)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// The paper's name of a method (`triadapt` -> `TriAdaptLoRA`, from [`MethodName::label`]);
/// unknown names unchanged.
pub fn method_label(method: &str) -> String {
    method.parse::<MethodName>().map(|m| m.label().to_string()).unwrap_or_else(|_| method.to_string())
}

/// Sort key of methods in every figure and legend ([`MethodName::figure_order`]: TriAdaptLoRA
/// first); unknown methods after, by name.
pub fn figure_rank(method: &str) -> (usize, String) {
    (method.parse::<MethodName>().map_or(MethodName::ALL.len(), MethodName::figure_order), method.to_string())
}

/// Sort key of methods in the GLUE table ([`MethodName::table_order`]: baselines first,
/// TriAdaptLoRA last); unknown methods after, by name.
pub fn method_rank(method: &str) -> (usize, String) {
    (method.parse::<MethodName>().map_or(MethodName::ALL.len(), MethodName::table_order), method.to_string())
}

/// The paper's name of a task (`sst2` -> `SST-2`); unknown names upper-cased.
pub fn task_label(task: &str) -> String {
    match task {
        "mnli" => "MNLI".into(),
        "sst2" => "SST-2".into(),
        "cola" => "CoLA".into(),
        "qqp" => "QQP".into(),
        "qnli" => "QNLI".into(),
        "rte" => "RTE".into(),
        "mrpc" => "MRPC".into(),
        "stsb" => "STS-B".into(),
        "squad2" => "SQuAD 2.0".into(),
        other => other.to_uppercase(),
    }
}

/// Words for a metric column. `best_score` is named by the run's main metric.
pub fn metric_words(metric: &str, task: &str, main_metric: Option<&str>) -> String {
    let base = |m: &str| -> String {
        match m {
            "accuracy" if task == "mnli" => "matched accuracy".into(),
            "accuracy" => "accuracy".into(),
            "f1" => "F1".into(),
            "matthews_correlation" => "Matthews corr.".into(),
            "pearson" => "Pearson corr.".into(),
            "spearmanr" => "Spearman corr.".into(),
            "combined_score" if task == "stsb" => "Pearson/Spearman mean".into(),
            "combined_score" => "mean of accuracy and F1".into(),
            "m_accuracy" => "matched accuracy".into(),
            "mm_accuracy" => "mismatched accuracy".into(),
            "exact" | "exact_match" => "exact match".into(),
            other => other.replace('_', " "),
        }
    };
    match metric {
        "best_score" => match main_metric {
            Some(m) => base(m),
            None => "main metric".into(),
        },
        m => base(m),
    }
}

/// The factor that turns a metric of `task` into the percent a figure draws: 100 for GLUE's
/// fractions, 1 for SQuAD 2.0 (its official scores are percent already) and for columns that
/// are not fractions.
pub fn percent_factor(metric: &str, task: &str) -> f64 {
    if task == "squad2" || !is_fraction_metric(metric) {
        1.0
    } else {
        100.0
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

/// Whether a metric column holds fractions (drawn and tabled as percentages).
pub fn is_fraction_metric(metric: &str) -> bool {
    let m = metric.trim_start_matches("m_").trim_start_matches("mm_");
    matches!(
        m,
        "best_score" | "accuracy" | "f1" | "matthews_correlation" | "pearson" | "spearmanr" | "combined_score" | "exact" | "exact_match"
    ) || metric.starts_with("m_")
        || metric.starts_with("mm_")
}

/// The axis label of a metric column, with its unit: `dev accuracy (%)`.
pub fn metric_axis_label(metric: &str, task: &str, main_metric: Option<&str>) -> String {
    match metric {
        "wall_seconds" => "wall-clock time (s)".into(),
        "trainable_params" => "trainable parameters".into(),
        "total_rank" => "total rank (sum over adapted matrices)".into(),
        "rank_budget" => "rank budget".into(),
        "best_step" => "best step".into(),
        m if is_fraction_metric(m) => format!("dev {} (%)", metric_words(m, task, main_metric)),
        m => m.replace('_', " "),
    }
}

/// The axis label of a swept key, with its symbol or unit where the paper names one.
pub fn knob_label(key: &str) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    match last {
        "warmup_steps" if key.starts_with("optim.") => "learning-rate warm-up (steps)".into(),
        "warmup_steps" | "init_warmup" => "warm-up steps t_w".into(),
        "interval" | "incre_interval" => "rank update interval Δt (steps)".into(),
        "ref_rank" => "reference rank r (average per matrix)".into(),
        "target_rank" => "target rank (average per matrix)".into(),
        "init_rank" => "initial rank r0".into(),
        "growth_step" | "incre_rank_num" => "ranks added per growth Δr".into(),
        "rank" => "LoRA rank r".into(),
        "top_k" | "top_h" => "matrices grown per step (top-k)".into(),
        "lr" => "learning rate".into(),
        "orth_reg_weight" => "orthogonal regularisation weight γ".into(),
        "lora_alpha" => "LoRA alpha".into(),
        "lora_dropout" => "LoRA dropout".into(),
        "threshold" => "threshold schedule".into(),
        "importance" => "importance score".into(),
        "epochs" => "epochs".into(),
        "batch_size" => "batch size".into(),
        _ => key.to_string(),
    }
}

/// A fixed colour per method, so that every figure and legend draws a method alike. Other
/// methods get one of the palette's remaining colours, chosen from the name (the same in every
/// figure).
pub fn method_color(method: &str) -> RGBColor {
    match method.parse::<MethodName>() {
        Ok(m) => {
            let (r, g, b) = m.colour();
            RGBColor(r, g, b)
        }
        Err(_) => palette(4 + method.bytes().map(|b| b as usize).sum::<usize>() % 6),
    }
}

/// The colour of a method's `variant`-th line where one method has several lines (a second
/// swept key): variant 0 is the method's colour, later ones darker and lighter shades of it.
pub fn variant_color(method: &str, variant: usize) -> RGBColor {
    let RGBColor(r, g, b) = method_color(method);
    let toward = |c: u8, target: f64, t: f64| (c as f64 + (target - c as f64) * t).round() as u8;
    let (target, t) = match variant {
        0 => return RGBColor(r, g, b),
        v if v % 2 == 1 => (0.0, (0.3 + 0.15 * (v / 2) as f64).min(0.75)),
        v => (255.0, (0.3 + 0.15 * (v / 2 - 1) as f64).min(0.75)),
    };
    RGBColor(toward(r, target, t), toward(g, target, t), toward(b, target, t))
}

/// A categorical palette (tab10 order).
pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// A name made safe for a file name: letters, digits, `-` and `_`.
pub fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Formats a value for a figure's text: integers without decimals, else up to 4 significant.
pub fn short_number(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else if v.abs() >= 0.01 && v.abs() < 1e5 {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing
// ---------------------------------------------------------------------------------------------

/// The font family every figure's text style names (registered from the bundled DejaVu Sans;
/// the canvases lay text out with the same font).
pub const FONT_FAMILY: &str = "sans-serif";

/// Registers the bundled font with plotters (once per process): plotters' text styles need a
/// registered family, although `canvas` draws and measures the text itself.
pub fn ensure_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            let ok = plotters::style::register_font(FONT_FAMILY, style, canvas::FONT_BYTES).is_ok();
            assert!(ok, "the bundled font assets/fonts/DejaVuSans.ttf is not a valid TrueType font");
        }
    });
}

/// Size and resolution of the figures a command writes (`--width`, `--height`, `--scale`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FigureSize {
    /// Width in logical pixels (the SVG's size; None: each figure's default).
    pub width: Option<u32>,
    /// Height in logical pixels (None: each figure's default).
    pub height: Option<u32>,
    /// PNG pixels per logical pixel (2: twice the resolution, same layout).
    pub scale: f64,
}

impl Default for FigureSize {
    fn default() -> Self {
        FigureSize { width: None, height: None, scale: 1.0 }
    }
}

/// The smallest figure the layouts fit.
pub const MIN_WIDTH: u32 = 240;
pub const MIN_HEIGHT: u32 = 180;

impl FigureSize {
    /// Checks the values: sizes at least `MIN_WIDTH` x `MIN_HEIGHT`, scale in (0, 10].
    pub fn check(&self) -> Result<()> {
        if let Some(w) = self.width {
            if w < MIN_WIDTH {
                bail!("--width {w}: at least {MIN_WIDTH} pixels");
            }
        }
        if let Some(h) = self.height {
            if h < MIN_HEIGHT {
                bail!("--height {h}: at least {MIN_HEIGHT} pixels");
            }
        }
        if !(self.scale.is_finite() && self.scale > 0.0 && self.scale <= 10.0) {
            bail!("--scale {}: a number in (0, 10]", self.scale);
        }
        Ok(())
    }

    /// The logical size of a figure whose default is `default`.
    pub fn or(&self, default: (u32, u32)) -> (u32, u32) {
        (self.width.unwrap_or(default.0), self.height.unwrap_or(default.1))
    }
}

/// A CSV file written beside a figure: `<stem><suffix>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    /// `.csv` (the plotted numbers) or `.runs.csv` (the runs drawn).
    pub suffix: &'static str,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Sidecar {
    pub fn new(suffix: &'static str, header: &[&str]) -> Sidecar {
        Sidecar { suffix, header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    fn write(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(path).with_context(|| format!("cannot create {}", path.display()))?;
        w.write_record(&self.header)?;
        for r in &self.rows {
            w.write_record(r)?;
        }
        w.flush().with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// A number as a CSV cell: Rust's shortest exact form (`0.1`, `24`, `1e-5`); NaN empty.
pub fn cell(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

/// An optional number as a CSV cell.
pub fn opt_cell(v: Option<f64>) -> String {
    v.map(cell).unwrap_or_default()
}

/// A figure that can be drawn on any plotters backend (PNG and SVG).
pub trait Figure {
    /// Width and height in logical pixels (the SVG's size; the PNG has `scale` times as many).
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
    /// The CSV files written beside the figure: the plotted numbers and the runs drawn.
    fn sidecars(&self) -> Vec<Sidecar>;
}

/// Turns a plotters error into an anyhow error.
pub(crate) trait PlotResult<T> {
    fn plot(self) -> Result<T>;
}

impl<T, E: std::fmt::Display> PlotResult<T> for std::result::Result<T, E> {
    fn plot(self) -> Result<T> {
        self.map_err(|e| anyhow!("drawing failed: {e}"))
    }
}

/// Draws `fig` into `<stem>.png` (at `scale` x its size) and `<stem>.svg`, writes its sidecars
/// (`<stem>.csv`, `<stem>.runs.csv`), creating the folder, and returns the paths written.
pub fn render(fig: &impl Figure, stem: &Path, scale: f64) -> Result<Vec<PathBuf>> {
    ensure_fonts();
    if let Some(parent) = stem.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", stem.display()));
    let (png, svg) = (with(".png"), with(".svg"));
    {
        let root = canvas::PngCanvas::new(&png, fig.size(), scale).into_drawing_area();
        root.fill(&WHITE).plot()?;
        fig.draw(&root)?;
        root.present().plot().with_context(|| format!("cannot write {}", png.display()))?;
    }
    {
        let root = canvas::SvgCanvas::new(&svg, fig.size()).into_drawing_area();
        root.fill(&WHITE).plot()?;
        fig.draw(&root)?;
        root.present().plot().with_context(|| format!("cannot write {}", svg.display()))?;
    }
    let mut files = vec![png, svg];
    for side in fig.sidecars() {
        let path = with(side.suffix);
        side.write(&path)?;
        files.push(path);
    }
    Ok(files)
}

/// A text style of the bundled font.
pub(crate) fn font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

/// The largest font size from `max` down to `min` (whole pixels) at which `text` is at most
/// `room` pixels wide; `min` when none is.
pub(crate) fn fitting_size(text: &str, max: f64, min: f64, room: f64) -> f64 {
    let mut size = max;
    while size > min && canvas::text_width(text, size) > room {
        size -= 1.0;
    }
    size.max(min)
}

/// Draws a title (and an optional smaller second line) centred in `area`, each shrunk to fit
/// the area's width.
pub(crate) fn draw_title<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, title: &str, subtitle: Option<&str>) -> Result<()> {
    let (w, h) = area.dim_in_pixel();
    let room = w as f64 - 16.0;
    let centre = |y: i32| (w as i32 / 2, y);
    let style = font(fitting_size(title, 22.0, 8.0, room)).pos(Pos::new(HPos::Center, VPos::Center));
    match subtitle {
        None => {
            area.draw(&Text::new(title.to_string(), centre(h as i32 / 2), style)).plot()?;
        }
        Some(sub) => {
            area.draw(&Text::new(title.to_string(), centre(h as i32 * 3 / 8), style)).plot()?;
            let small = font(fitting_size(sub, 15.0, 8.0, room)).color(&RGBColor(70, 70, 70)).pos(Pos::new(HPos::Center, VPos::Center));
            area.draw(&Text::new(sub.to_string(), centre(h as i32 * 4 / 5), small)).plot()?;
        }
    }
    Ok(())
}

/// Where figures of a results directory go: `<out>/<results dir name>/`.
pub fn figure_dir(out: &Path, runs: &Runs) -> PathBuf {
    out.join(&runs.name)
}

/// The file-name part and the words of a rank budget: `budget24`, `rank budget 24`.
pub fn budget_stem(budget: f64) -> String {
    format!("budget{}", file_safe(&short_number(budget)))
}
