//! `triadapt heatmap`, `triadapt plot` and `triadapt table`: figures and the GLUE table from a
//! results directory (see `crate::report`).

use std::path::PathBuf;

use anyhow::Result;

use crate::report;

/// Figure size options shared by `heatmap` and `plot`.
#[derive(Debug, Clone, clap::Args)]
pub struct SizeArgs {
    /// Figure width in pixels (logical: the SVG's width; the PNG's is width x --scale).
    /// Default: each figure's own.
    #[arg(long, value_name = "PX")]
    pub width: Option<u32>,
    /// Figure height in pixels (logical, as --width). Default: each figure's own.
    #[arg(long, value_name = "PX")]
    pub height: Option<u32>,
    /// PNG pixels per logical pixel: 2 draws the same figure at twice the resolution (e.g.
    /// --width 450 --height 400 --scale 2.2 for a one-column figure at about 300 dpi).
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub scale: f64,
}

impl SizeArgs {
    fn figure_size(&self) -> report::FigureSize {
        report::FigureSize { width: self.width, height: self.height, scale: self.scale }
    }
}

/// `triadapt heatmap`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct HeatmapArgs {
    /// A results directory holding runs.csv (e.g. results/glue).
    #[arg(value_name = "RESULTS_DIR")]
    pub results: PathBuf,
    /// Folder for the figures (a subfolder named after the results directory is made).
    #[arg(long, default_value = "plots")]
    pub out: PathBuf,
    /// Only this task (default: one figure per task with rank patterns).
    #[arg(long)]
    pub task: Option<String>,
    /// Only the runs of this rank budget (the sum of ranks a run may reach, e.g. 144 =
    /// rank 2 x 72 matrices; LoRA: its total rank). Default: one figure per budget.
    #[arg(long, value_name = "B")]
    pub budget: Option<f64>,
    #[command(flatten)]
    pub size: SizeArgs,
}

/// `triadapt plot`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// A results directory holding runs.csv (e.g. results/rte_warmup).
    #[arg(value_name = "RESULTS_DIR")]
    pub results: PathBuf,
    /// Swept key on the x axis, e.g. method.triadapt.warmup_steps; several keys joined by
    /// commas are one knob (first non-empty per run). Default: the first swept column, joined
    /// with later swept columns that are empty wherever it is set.
    #[arg(long, value_name = "KEY")]
    pub x: Option<String>,
    /// runs.csv column on the y axis (e.g. f1, mm_accuracy). Default: best_score, the run's
    /// main dev metric.
    #[arg(long, value_name = "NAME")]
    pub metric: Option<String>,
    /// Folder for the figures (a subfolder named after the results directory is made).
    #[arg(long, default_value = "plots")]
    pub out: PathBuf,
    /// Only this task (default: every task in runs.csv).
    #[arg(long)]
    pub task: Option<String>,
    /// Rank-growth and training figures: only the runs of this rank budget (the sum of ranks
    /// a run may reach, e.g. 144 = rank 2 x 72 matrices; LoRA: its total rank). Default: one
    /// figure per budget.
    #[arg(long, value_name = "B")]
    pub budget: Option<f64>,
    #[command(flatten)]
    pub size: SizeArgs,
}

/// `triadapt table`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TableArgs {
    /// A results directory holding runs.csv (e.g. results/glue).
    #[arg(value_name = "RESULTS_DIR")]
    pub results: PathBuf,
    /// Folder for table.md and table.csv (default: the results directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Published numbers to print beside ours with the difference: a CSV with the columns
    /// method, budget (the reference rank r), task (mnli_m, mnli_mm, sst2, cola, qqp_acc,
    /// qqp_f1, qnli, rte, mrpc, stsb, all_avg) and score (x100); README "triadapt table".
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,
}

fn print_files(files: &[std::path::PathBuf]) {
    for f in files {
        println!("{}", f.display());
    }
}

/// Writes the rank heatmaps (with their CSV sidecars) and prints the files written.
pub fn heatmap(args: &HeatmapArgs) -> Result<()> {
    let opts = report::heatmap::HeatmapOptions { task: args.task.clone(), budget: args.budget, size: args.size.figure_size() };
    print_files(&report::heatmap::run(&args.results, &args.out, &opts)?);
    Ok(())
}

/// Writes the ablation, rank-growth and training figures (with their CSV sidecars) and prints
/// the files written.
pub fn plot(args: &PlotArgs) -> Result<()> {
    let (x, metric, task, budget, size) = (args.x.clone(), args.metric.clone(), args.task.clone(), args.budget, args.size.figure_size());
    let opts = report::curves::PlotOptions { x, metric, task, budget, size };
    print_files(&report::curves::run(&args.results, &args.out, &opts)?);
    Ok(())
}

/// Writes table.md and table.csv (with the published numbers of `reference` beside ours),
/// prints the markdown table, then the files written (stderr).
pub fn table(args: &TableArgs) -> Result<()> {
    let (table, files) = report::table::run(&args.results, args.out.as_deref(), args.reference.as_deref())?;
    print!("{}", table.to_markdown());
    for f in &files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}
