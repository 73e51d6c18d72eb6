//! `triadapt plot`: ablation curves (the paper's Figures 3-5), rank growth and training curves.
//!
//! Per task in `runs.csv` (or only `--task`), into `<out>/<results name>/`:
//! - `ablation_<task>_<knob>`: the metric (default `best_score`, the run's main dev metric)
//!   against a swept key (default the first swept column), one line per method: the mean over
//!   the runs at each value (seeds), a shaded band and bars from min to max. Further swept keys
//!   that vary within a method split its line (legend `TriAdaptLoRA, interval=100`, shades of the
//!   method's colour). Several keys joined by commas are read as one knob, taking the first
//!   non-empty cell of a row (e.g. `method.triadapt.warmup_steps,method.increlora.init_warmup`).
//!   Numeric values are sorted and evenly spaced with a tick at each (as in the paper's ablation
//!   figures; more than 12 distinct values: a linear axis); other values are categories in file
//!   order.
//! - `rank_growth_<task>_budget<B>`: total rank against step from the runs' `curve.csv`, one line
//!   per method (full fine-tuning has no ranks and is left out), with the rank budget dashed and
//!   named in the legend.
//! - `training_<task>_budget<B>`: training loss (moving mean) and the dev main metric at the
//!   evaluation steps against step, one line per method, one legend for both panels. A final
//!   evaluation that follows the previous one by less than half an evaluation interval (the
//!   demo's 450 and 456) replaces it, so the end of a curve is drawn once.
//!
//! The rank-growth and training figures are drawn per rank budget (`super::run_budget`; full
//! fine-tuning, without a budget, is in each), so that no figure sets methods at different
//! budgets side by side. In each, a method's line is the mean over its runs of one setting (the
//! seeds), with a band from the runs' minimum to their maximum; where a method has several
//! settings at the budget (other swept keys), the setting with the highest mean `best_score` is
//! drawn and named in the legend.
//!
//! Every figure draws the methods in `super::figure_rank` order with `super::method_color`, and writes
//! `<stem>.csv` (the plotted numbers) and `<stem>.runs.csv` (the runs behind each line). Lines
//! with equal values must all stay visible: each method has its own marker shape
//! (`marker_shape`) and dash pattern (`line_dash`: the first method solid at the bottom, the
//! others dashed over it), and the ablation figure sets each line a little beside the others.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

mod ablation;
mod chart;
mod series;

pub use super::stats::{mean_over_runs, MeanPoint};
pub use ablation::{build_ablation, Ablation, AblationPoint, AblationSeries};
pub use chart::{line_dash, marker_shape, LegendItem, MARKER_SHAPES};
pub use series::{build_rank_growth, build_training, merge_final_evaluation, read_curve, CurveRow, MeanCurve, RankGrowth, Training};

use ablation::ablation_keys;

use super::{
    cell, figure_rank, font, knob_label, method_color, method_label, metric_axis_label, metric_words, opt_cell, percent_factor, render,
    run_budget, short_number, task_label, variant_color, Figure, FigureSize, PlotResult, RunRecord, Runs, Sidecar,
};

/// `triadapt plot` options.
#[derive(Debug, Clone, Default)]
pub struct PlotOptions {
    /// The swept key on the x axis (comma-separated keys are coalesced); default: the first
    /// swept column.
    pub x: Option<String>,
    /// The metric column on the y axis; default `best_score`.
    pub metric: Option<String>,
    /// Only this task (default: every task in runs.csv).
    pub task: Option<String>,
    /// Only this rank budget for the rank-growth and training figures (default: one per budget).
    pub budget: Option<f64>,
    pub size: FigureSize,
}

const WIDTH: u32 = 900;
const HEIGHT: u32 = 620;
const TRAINING_HEIGHT: u32 = 860;
const TITLE_H: u32 = 70;
/// Up to this many distinct numeric knob values are spaced evenly.
const MAX_EVEN: usize = 12;
/// At most this many points per line of the training loss.
const MAX_LOSS_POINTS: usize = 1500;

/// A run behind a plotted line or point (for the `.runs.csv` sidecar).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRef {
    pub run_id: String,
    pub seed: Option<i64>,
    /// The plotted value (ablation: the metric in the axis's unit) or the run's best_score.
    pub value: Option<f64>,
    pub rank_budget: Option<f64>,
    pub run_dir: Option<PathBuf>,
}

impl RunRef {
    fn of(r: &RunRecord, value: Option<f64>) -> RunRef {
        RunRef { run_id: r.run_id.clone(), seed: r.seed, value, rank_budget: r.rank_budget, run_dir: r.run_dir.clone() }
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.run_id.clone(),
            self.seed.map(|s| s.to_string()).unwrap_or_default(),
            opt_cell(self.value),
            opt_cell(self.rank_budget),
            self.run_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
        ]
    }
}

/// The file stem of a per-budget figure: `<kind>_<task>[_budget<B>]`.
pub(super) fn budget_file(kind: &str, task: &str, budget: Option<f64>) -> String {
    match budget {
        Some(b) => format!("{kind}_{}_{}", super::file_safe(task), super::budget_stem(b)),
        None => format!("{kind}_{}", super::file_safe(task)),
    }
}

/// `triadapt plot`: writes the ablation, rank-growth and training figures of every task (or
/// only `opts.task`) and returns the files written. Figures without data are skipped with a note
/// on stderr; having none at all is an error.
pub fn run(results: &Path, out: &Path, opts: &PlotOptions) -> Result<Vec<PathBuf>> {
    opts.size.check()?;
    let runs = Runs::load(results)?;
    let dir = super::figure_dir(out, &runs);
    let tasks = runs.tasks()?;
    let tasks: Vec<String> = match &opts.task {
        Some(t) if !tasks.contains(t) => bail!("{}: no finished run of task {t:?} (tasks: {})", runs.dir.display(), tasks.join(", ")),
        Some(t) => vec![t.clone()],
        None => tasks,
    };
    let keys = ablation_keys(&runs, opts)?;
    if keys.is_none() {
        eprintln!("note: runs.csv has no swept column (none between `seed` and `status`) and no --x was given: no ablation figure");
    }
    let scale = opts.size.scale;
    let mut files = Vec::new();
    for t in &tasks {
        let safe = super::file_safe(t);
        if let Some((keys, metric)) = &keys {
            match build_ablation(&runs, t, keys, metric, &opts.size)? {
                Some(a) => {
                    let knob = super::file_safe(keys[0].rsplit('.').next().unwrap_or(&keys[0]));
                    files.extend(render(&a, &dir.join(format!("ablation_{safe}_{knob}")), scale)?);
                }
                None => eprintln!("note: {t}: no finished run has both {} and {metric}: no ablation figure", keys.join(" or ")),
            }
        }
        let growth = build_rank_growth(&runs, t, opts.budget, &opts.size)?;
        if growth.is_empty() {
            eprintln!("note: {t}: no run folder with a curve.csv holding non-zero ranks: no rank-growth figure");
        }
        for g in growth {
            files.extend(render(&g, &dir.join(budget_file("rank_growth", t, g.budget)), scale)?);
        }
        let training = build_training(&runs, t, opts.budget, &opts.size)?;
        if training.is_empty() {
            eprintln!("note: {t}: no run folder with a curve.csv: no training-curve figure");
        }
        for tr in training {
            files.extend(render(&tr, &dir.join(budget_file("training", t, tr.budget)), scale)?);
        }
    }
    if files.is_empty() {
        bail!("{}: nothing to plot (no swept column and no run folder with a curve.csv)", runs.dir.display());
    }
    Ok(files)
}
