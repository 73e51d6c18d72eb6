//! Figures and tables from a sweep's results directory (`triadapt heatmap`, `plot`, `table`).
//!
//! Input: `<results dir>/runs.csv`, one row per run with the columns `run_id, name, task, method,
//! seed, <one column per swept key>, status, error, main_metric, best_score, best_step, <metric
//! columns>, trainable_params, total_rank, rank_budget, wall_seconds, run_dir` (metrics are
//! fractions), and each run's folder (`run_dir`, relative to the results directory or absolute)
//! with `rank_pattern.json`, `curve.csv` and `metrics.json`. Only rows whose `status` is
//! `finished` are used; the swept keys are the columns between `seed` and `status`.
//!
//! - `runs.rs`: loading `runs.csv` (finished rows, swept keys, the fields of a row).
//! - `heatmap.rs`: the final rank of every adapted matrix (paper Figure 2).
//! - `curves.rs`: ablation curves (Figures 3-5), rank growth and training curves.
//! - `table.rs`: the GLUE table (the paper's Table 1): one block per reference rank r (`budget.rs`),
//!   mean ± std over seeds per cell (`stats.rs`), published numbers beside ours (`reference.rs`).
//! - `budget.rs`: a run's rank budget (the figures' total, the table's reference rank r).
//! - `stats.rs`: the statistics every figure and the table print (pure functions).
//! - `labels.rs`: the names of methods, tasks, metrics and swept keys, and numbers as text.
//! - `style.rs`: each method's colour, the palette, the bundled font.
//! - `render.rs`: the `Figure` trait, figure sizes, writing PNG, SVG and CSV sidecars.
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
pub mod labels;
pub mod reference;
pub mod render;
pub mod runs;
pub mod stats;
pub mod style;
pub mod table;

// The figures and the table name these as `crate::report::*`.
pub use budget::{budgets_of, run_budget, same_budget};
pub use labels::{
    budget_stem, figure_rank, file_safe, is_fraction_metric, knob_label, method_label, method_rank, metric_axis_label, metric_words,
    percent_factor, scores_in_percent, short_number, task_label,
};
pub use render::{cell, figure_dir, opt_cell, render, Figure, FigureSize, Sidecar, MIN_HEIGHT, MIN_WIDTH};
pub(crate) use render::{draw_title, PlotResult};
pub(crate) use runs::{group_rows, str_values};
pub use runs::{parse_f64, representative, RunRecord, Runs};
pub(crate) use stats::{group_stats, GroupStats};
pub use style::{ensure_fonts, method_color, palette, variant_color, FONT_FAMILY};
pub(crate) use style::{fitting_size, font};
