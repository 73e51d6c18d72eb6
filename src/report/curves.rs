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
//! `<stem>.csv` (the plotted numbers) and `<stem>.runs.csv` (the runs behind each line).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use polars::prelude::*;

use super::{
    cell, figure_rank, font, knob_label, method_color, method_label, metric_axis_label, metric_words, opt_cell, percent_factor,
    render, run_budget, short_number, task_label, variant_color, Figure, FigureSize, PlotResult, RunRecord, Runs, Sidecar,
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

// ---------------------------------------------------------------------------------------------
// Ablation
// ---------------------------------------------------------------------------------------------

/// One value of the knob for one line.
#[derive(Debug, Clone)]
pub struct AblationPoint {
    /// The knob's value as written in runs.csv.
    pub x_text: String,
    /// Its position on the axis: the tick index (values sorted, evenly spaced, or categories in
    /// file order), or the number itself on a linear axis (more than 12 distinct values).
    pub x: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// Sample standard deviation (NaN for one run).
    pub std: f64,
    /// Runs averaged.
    pub n: usize,
    /// The runs averaged, with their values.
    pub runs: Vec<RunRef>,
}

#[derive(Debug, Clone)]
pub struct AblationSeries {
    pub method: String,
    pub label: String,
    /// 0 for a method's first line, 1, 2, ... for further lines of the same method.
    pub variant: usize,
    pub points: Vec<AblationPoint>,
}

/// One task's ablation figure.
#[derive(Debug, Clone)]
pub struct Ablation {
    pub task: String,
    pub x_keys: Vec<String>,
    pub metric: String,
    pub x_label: String,
    pub y_label: String,
    pub metric_words: String,
    /// The tick labels when the axis is evenly spaced (None: linear axis).
    pub categories: Option<Vec<String>>,
    pub series: Vec<AblationSeries>,
    pub size: (u32, u32),
}

/// The knob (`--x`) and metric (`--metric`) of an ablation, checked against runs.csv. None when
/// no knob was asked for and nothing was swept.
fn ablation_keys(runs: &Runs, opts: &PlotOptions) -> Result<Option<(Vec<String>, String)>> {
    let keys: Vec<String> = match &opts.x {
        Some(x) => x.split(',').map(|k| k.trim().to_string()).filter(|k| !k.is_empty()).collect(),
        None => default_knob(runs)?,
    };
    if keys.is_empty() {
        return Ok(None);
    }
    for k in &keys {
        if !runs.has(k) {
            let swept = if runs.swept.is_empty() { "none".to_string() } else { runs.swept.join(", ") };
            bail!("--x {k:?}: runs.csv has no such column (swept keys: {swept})");
        }
    }
    let metric = opts.metric.clone().unwrap_or_else(|| "best_score".into());
    if !runs.has(&metric) {
        bail!("--metric {metric:?}: runs.csv has no such column (columns: {})", runs.column_list());
    }
    Ok(Some((keys, metric)))
}

/// The default knob: the first swept column, joined with each later swept column that is empty
/// wherever the knob so far is set and set somewhere else (the same knob under another method's
/// key: a sweep writes `method.triadapt.warmup_steps` for TriAdaptLoRA runs and
/// `method.increlora.init_warmup` for IncreLoRA runs, each empty in the other's rows).
fn default_knob(runs: &Runs) -> Result<Vec<String>> {
    let Some(first) = runs.swept.first() else {
        return Ok(Vec::new());
    };
    let mut keys = vec![first.clone()];
    let mut set: Vec<bool> = runs.strings(first)?.iter().map(Option::is_some).collect();
    for k in &runs.swept[1..] {
        let other: Vec<bool> = runs.strings(k)?.iter().map(Option::is_some).collect();
        let disjoint = set.iter().zip(&other).all(|(a, b)| !(*a && *b));
        if disjoint && other.iter().any(|b| *b) {
            keys.push(k.clone());
            set = set.iter().zip(&other).map(|(a, b)| *a || *b).collect();
        }
    }
    Ok(keys)
}

/// Builds the ablation of `task`: groups its runs by (method, knob value, other swept keys that
/// vary within a method) with polars and aggregates the metric (mean, min, max, std, count).
pub fn build_ablation(runs: &Runs, task: &str, keys: &[String], metric: &str, size: &FigureSize) -> Result<Option<Ablation>> {
    let n = runs.df.height();
    let columns: Vec<Vec<Option<String>>> = keys.iter().map(|k| runs.strings(k)).collect::<Result<_>>()?;
    let x: Vec<Option<String>> = (0..n).map(|i| columns.iter().find_map(|c| c[i].clone())).collect();
    let y = runs.floats(metric)?;
    let tasks = runs.strings("task")?;
    let methods = runs.strings("method")?;
    let in_task: Vec<bool> = (0..n).map(|i| tasks[i].as_deref() == Some(task) && x[i].is_some() && y[i].is_some()).collect();
    if !in_task.iter().any(|b| *b) {
        return Ok(None);
    }
    // Other swept keys that take more than one value at one knob value of a method (a second
    // grid axis) split its line; keys zipped with the knob do not.
    let mut split: Vec<String> = Vec::new();
    for k in runs.swept.iter().filter(|k| !keys.contains(k)) {
        let vals = runs.strings(k)?;
        let mut seen: BTreeMap<(String, String), std::collections::BTreeSet<Option<String>>> = BTreeMap::new();
        for i in (0..n).filter(|&i| in_task[i]) {
            let group = (methods[i].clone().unwrap_or_default(), x[i].clone().unwrap_or_default());
            seen.entry(group).or_default().insert(vals[i].clone());
        }
        if seen.values().any(|s| s.len() > 1) {
            split.push(k.clone());
        }
    }
    let mut df = runs.df.clone();
    df.with_column(Column::new("__x".into(), x))?;
    let mut group: Vec<String> = vec!["method".into(), "__x".into()];
    group.extend(split.iter().cloned());
    let (mut agg, rows) = super::group_rows(&df, &in_task, &group).context("aggregating the ablation with polars")?;
    let stats: Vec<super::GroupStats> = rows.iter().map(|r| super::group_stats(r.iter().map(|&i| y[i]))).collect();
    agg.with_column(Column::new("__mean".into(), stats.iter().map(|s| s.mean).collect::<Vec<_>>()))?;
    agg.with_column(Column::new("__min".into(), stats.iter().map(|s| s.min).collect::<Vec<_>>()))?;
    agg.with_column(Column::new("__max".into(), stats.iter().map(|s| s.max).collect::<Vec<_>>()))?;
    agg.with_column(Column::new("__std".into(), stats.iter().map(|s| s.std).collect::<Vec<_>>()))?;
    agg.with_column(Column::new("__n".into(), rows.iter().map(|r| r.len() as u32).collect::<Vec<_>>()))?;
    let scale = percent_factor(metric, task);
    let records = runs.records()?;
    let get_f = |name: &str| -> Result<Vec<f64>> {
        let c = agg.column(name)?.cast(&DataType::Float64)?;
        Ok(c.f64()?.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let (mean, min, max, std, count) = (get_f("__mean")?, get_f("__min")?, get_f("__max")?, get_f("__std")?, get_f("__n")?);
    let g_method = super::str_values(&agg, "method")?;
    let g_x = super::str_values(&agg, "__x")?;
    let g_split: Vec<Vec<Option<String>>> = split.iter().map(|k| super::str_values(&agg, k)).collect::<Result<_>>()?;

    let xs: Vec<String> = g_x.iter().map(|v| v.clone().unwrap_or_default()).collect();
    let numeric = xs.iter().all(|v| super::parse_f64(v).is_some());
    // Numeric values: sorted, and evenly spaced (ticks at the values, as in the paper's ablation
    // figures) when there are at most MAX_EVEN of them; else a linear axis. Other values:
    // categories in order of first appearance in runs.csv.
    let mut values: Vec<f64> = xs.iter().filter_map(|v| super::parse_f64(v)).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let categories = if numeric && values.len() > MAX_EVEN {
        None
    } else if numeric {
        Some(values.iter().map(|v| xs.iter().find(|x| super::parse_f64(x) == Some(*v)).cloned().unwrap_or_default()).collect::<Vec<_>>())
    } else {
        let mut cats: Vec<String> = Vec::new();
        for v in columns_order(runs, keys)? {
            if xs.contains(&v) && !cats.contains(&v) {
                cats.push(v);
            }
        }
        Some(cats)
    };
    let mut by_series: BTreeMap<(String, Vec<Option<String>>), Vec<AblationPoint>> = BTreeMap::new();
    for i in 0..agg.height() {
        let method = g_method[i].clone().unwrap_or_default();
        let extra: Vec<Option<String>> = g_split.iter().map(|c| c[i].clone()).collect();
        let value = super::parse_f64(&xs[i]);
        let pos = match (&categories, value) {
            (None, Some(v)) => v,
            (Some(_), Some(v)) if numeric => values.iter().position(|u| *u == v).unwrap_or(0) as f64,
            (Some(c), _) => c.iter().position(|v| v == &xs[i]).unwrap_or(0) as f64,
            (None, None) => unreachable!("a linear axis has numeric values only"),
        };
        let refs = rows[i]
            .iter()
            .map(|&r| RunRef::of(&records[r], y[r].map(|v| v * scale)))
            .collect();
        by_series.entry((method, extra)).or_default().push(AblationPoint {
            runs: refs,
            x_text: xs[i].clone(),
            x: pos,
            mean: mean[i] * scale,
            min: min[i] * scale,
            max: max[i] * scale,
            std: std[i] * scale,
            n: count[i] as usize,
        });
    }
    let mut series: Vec<AblationSeries> = by_series
        .into_iter()
        .map(|((method, extra), mut points)| {
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            let mut label = method_label(&method);
            for (k, v) in split.iter().zip(&extra) {
                if let Some(v) = v {
                    label.push_str(&format!(", {}={v}", k.rsplit('.').next().unwrap_or(k)));
                }
            }
            AblationSeries { method, label, variant: 0, points }
        })
        .collect();
    series.sort_by(|a, b| figure_rank(&a.method).cmp(&figure_rank(&b.method)).then(a.label.cmp(&b.label)));
    for i in 1..series.len() {
        if series[i].method == series[i - 1].method {
            series[i].variant = series[i - 1].variant + 1;
        }
    }
    let main = main_metric_of(runs, task)?;
    let words = metric_words(metric, task, main.as_deref());
    Ok(Some(Ablation {
        task: task.to_string(),
        x_keys: keys.to_vec(),
        metric: metric.to_string(),
        x_label: knob_label(&keys[0]),
        y_label: metric_axis_label(metric, task, main.as_deref()),
        metric_words: words,
        categories,
        series,
        size: size.or((WIDTH, HEIGHT)),
    }))
}

/// The coalesced knob values of every row in file order (for category order).
fn columns_order(runs: &Runs, keys: &[String]) -> Result<Vec<String>> {
    let columns: Vec<Vec<Option<String>>> = keys.iter().map(|k| runs.strings(k)).collect::<Result<_>>()?;
    Ok((0..runs.df.height()).filter_map(|i| columns.iter().find_map(|c| c[i].clone())).collect())
}

fn main_metric_of(runs: &Runs, task: &str) -> Result<Option<String>> {
    Ok(runs.records()?.into_iter().find(|r| r.task == task && r.main_metric.is_some()).and_then(|r| r.main_metric))
}

fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        let d = if lo.abs() > 1e-12 { lo.abs() * 0.05 } else { 1.0 };
        return (lo - d, hi + d);
    }
    let d = (hi - lo) * frac;
    (lo - d, hi + d)
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One legend entry: a line sample in the series' colour (dashed for a rank budget), with the
/// line's marker where it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct LegendItem {
    pub label: String,
    pub color: RGBColor,
    pub dashed: bool,
    /// The marker variant (see `draw_markers`), None for lines without markers.
    pub marker: Option<usize>,
}

const LEGEND_ROW: u32 = 24;
const LEGEND_FONT: f64 = 15.0;
const SAMPLE_W: i32 = 28;
const ITEM_GAP: f64 = 22.0;

fn item_width(item: &LegendItem) -> f64 {
    SAMPLE_W as f64 + 6.0 + super::canvas::text_width(&item.label, LEGEND_FONT)
}

/// The legend's rows for a figure `width` pixels wide: items in order, a new row when the
/// next would not fit.
fn legend_rows(items: &[LegendItem], width: u32) -> Vec<Vec<&LegendItem>> {
    let room = width as f64 - 40.0;
    let mut rows: Vec<Vec<&LegendItem>> = Vec::new();
    let mut used = 0.0;
    for item in items {
        let w = item_width(item);
        match rows.last_mut() {
            Some(row) if used + ITEM_GAP + w <= room => {
                row.push(item);
                used += ITEM_GAP + w;
            }
            _ => {
                rows.push(vec![item]);
                used = w;
            }
        }
    }
    rows
}

/// The height of the legend strip of a figure `width` pixels wide.
fn legend_height(items: &[LegendItem], width: u32) -> u32 {
    match legend_rows(items, width).len() {
        0 => 0,
        n => n as u32 * LEGEND_ROW + 6,
    }
}

/// The one legend of a figure, drawn as a strip of centred rows between the title and the
/// plot (never over the data): every curve figure uses it, in figure order.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, items: &[LegendItem]) -> Result<()> {
    let (w, _) = area.dim_in_pixel();
    for (r, row) in legend_rows(items, w).iter().enumerate() {
        let total: f64 = row.iter().map(|i| item_width(i)).sum::<f64>() + ITEM_GAP * (row.len().saturating_sub(1)) as f64;
        let mut x = ((w as f64 - total) / 2.0).round() as i32;
        let y = (r as u32 * LEGEND_ROW + LEGEND_ROW / 2) as i32;
        for item in row {
            let style = item.color.stroke_width(if item.dashed { 2 } else { 3 });
            if item.dashed {
                for (a, b) in [(0, 8), (13, 21), (26, SAMPLE_W)] {
                    area.draw(&PathElement::new(vec![(x + a, y), (x + b, y)], style)).plot()?;
                }
            } else {
                area.draw(&PathElement::new(vec![(x, y), (x + SAMPLE_W, y)], style)).plot()?;
            }
            if let Some(v) = item.marker {
                draw_marker_at(area, (x + SAMPLE_W / 2, y), v, item.color, 4)?;
            }
            let text_x = x + SAMPLE_W + 6;
            area.draw(&Text::new(item.label.clone(), (text_x, y), font(LEGEND_FONT).pos(Pos::new(HPos::Left, VPos::Center)))).plot()?;
            x = (text_x as f64 + super::canvas::text_width(&item.label, LEGEND_FONT) + ITEM_GAP).round() as i32;
        }
    }
    Ok(())
}

/// A marker at a pixel position: circles for a method's first line, then triangles, crosses,
/// rings (the same shapes as `draw_markers`).
fn draw_marker_at<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: (i32, i32), variant: usize, color: RGBColor, size: i32) -> Result<()> {
    match variant % 4 {
        0 => area.draw(&Circle::new(p, size, color.filled())).plot()?,
        1 => area.draw(&TriangleMarker::new(p, size + 1, color.filled())).plot()?,
        2 => area.draw(&Cross::new(p, size, color.stroke_width(2))).plot()?,
        _ => area.draw(&Circle::new(p, size, color.stroke_width(2))).plot()?,
    }
    Ok(())
}

/// Markers of a line: circles for a method's first line, then triangles, crosses, rings.
fn draw_markers<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, points: &[(f64, f64)], variant: usize, color: RGBColor, size: i32) -> Result<()> {
    match variant % 4 {
        0 => chart.draw_series(points.iter().map(|&p| Circle::new(p, size, color.filled()))).plot()?,
        1 => chart.draw_series(points.iter().map(|&p| TriangleMarker::new(p, size + 1, color.filled()))).plot()?,
        2 => chart.draw_series(points.iter().map(|&p| Cross::new(p, size, color.stroke_width(2)))).plot()?,
        _ => chart.draw_series(points.iter().map(|&p| Circle::new(p, size, color.stroke_width(2)))).plot()?,
    };
    Ok(())
}

/// How many tick labels fit `pixels` at about `spacing` pixels apart (2 to 10).
fn tick_count(pixels: u32, spacing: u32) -> usize {
    ((pixels / spacing.max(1)) as usize).clamp(2, 10)
}

/// A y axis's description that fits `room` pixels: the first of `options` that fits at 17
/// pixels, else at a smaller size (down to 11), else the last option at 11.
fn y_description(options: &[&str], room: f64) -> (String, f64) {
    for size in [17.0, 15.0, 13.0, 11.0] {
        if let Some(t) = options.iter().find(|t| super::canvas::text_width(t, size) <= room) {
            return (t.to_string(), size);
        }
    }
    (options[options.len() - 1].to_string(), 11.0)
}

/// Draws the y axis's description left of the chart's plot, centred on it: `desc`, or its
/// short form (`short_description`), in the largest size that fits the plot's height (plotters'
/// own would overflow a short panel and shrinks the x axis's description with it).
fn draw_y_desc<'a, DB: DrawingBackend + 'a>(area: &DrawingArea<DB, Shift>, chart: &Chart<'a, DB>, desc: &str) -> Result<()> {
    let (_, ys) = chart.plotting_area().get_pixel_range();
    let base = area.get_base_pixel();
    let short = short_description(desc);
    let (text, size) = y_description(&[desc, &short], (ys.end - ys.start + 30) as f64);
    let y = (ys.start + ys.end) / 2 - base.1;
    let style = font(size).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw(&Text::new(text, (28, y), style)).plot()?;
    Ok(())
}

/// The short form of an axis description: the words before a parenthesis, with the unit
/// (`dev accuracy (%)` stays, `total rank (sum over adapted matrices)` -> `total rank`).
fn short_description(d: &str) -> String {
    match d.find(" (") {
        Some(i) if !d[i..].starts_with(" (%)") => d[..i].to_string(),
        _ => d.to_string(),
    }
}

impl Ablation {
    fn legend(&self) -> Vec<LegendItem> {
        self.series
            .iter()
            .map(|s| LegendItem { label: s.label.clone(), color: variant_color(&s.method, s.variant), dashed: false, marker: Some(s.variant) })
            .collect()
    }
}

impl Figure for Ablation {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let counts: Vec<usize> = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.n)).collect();
        let (nmin, nmax) = (counts.iter().copied().min().unwrap_or(0), counts.iter().copied().max().unwrap_or(0));
        let title = format!("{}: dev {} vs {}", task_label(&self.task), self.metric_words, self.x_label);
        let sub = if nmax <= 1 {
            "one run per point".to_string()
        } else {
            let n = if nmin == nmax { format!("{nmax}") } else { format!("{nmin}–{nmax}") };
            format!("mean over seeds ({n} runs per point); band and bars: min–max")
        };
        let legend = self.legend();
        let (top, rest) = root.split_vertically(TITLE_H);
        super::draw_title(&top, &title, Some(&sub))?;
        let (legend_area, body) = rest.split_vertically(legend_height(&legend, self.size.0));
        draw_legend(&legend_area, &legend)?;

        let all: Vec<&AblationPoint> = self.series.iter().flat_map(|s| s.points.iter()).collect();
        let (x0, x1) = match &self.categories {
            Some(c) => (-0.5, c.len() as f64 - 0.5),
            None => padded(
                all.iter().map(|p| p.x).fold(f64::INFINITY, f64::min),
                all.iter().map(|p| p.x).fold(f64::NEG_INFINITY, f64::max),
                0.05,
            ),
        };
        let (y0, y1) = padded(
            all.iter().map(|p| p.min).fold(f64::INFINITY, f64::min),
            all.iter().map(|p| p.max).fold(f64::NEG_INFINITY, f64::max),
            0.12,
        );
        let (bw, bh) = body.dim_in_pixel();
        let mut chart = ChartBuilder::on(&body)
            .margin(20)
            .margin_top(5)
            .x_label_area_size(60)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)
            .plot()?;
        let categories = self.categories.clone();
        let x_fmt = move |v: &f64| -> String {
            match &categories {
                Some(c) => {
                    let i = v.round();
                    if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < c.len() {
                        c[i as usize].clone()
                    } else {
                        String::new()
                    }
                }
                None => short_number(*v),
            }
        };
        let x_labels = self.categories.as_ref().map_or(tick_count(bw.saturating_sub(120), 80), |c| c.len().max(1));
        chart
            .configure_mesh()
            .x_desc(self.x_label.clone())
            .axis_desc_style(font(17.0))
            .label_style(font(14.0))
            .x_labels(x_labels)
            .y_labels(tick_count(bh.saturating_sub(85), 25))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v: &f64| short_number((v * 100.0).round() / 100.0))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .plot()?;
        draw_y_desc(&body, &chart, &self.y_label)?;
        // Bands, then lines, in reverse order, so that the first method's line is on top.
        for s in self.series.iter().rev() {
            let color = variant_color(&s.method, s.variant);
            let spread = s.points.iter().any(|p| p.n > 1);
            if spread && s.points.len() > 1 {
                let mut band: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x, p.max)).collect();
                band.extend(s.points.iter().rev().map(|p| (p.x, p.min)));
                chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled()))).plot()?;
            }
            if spread {
                chart
                    .draw_series(s.points.iter().filter(|p| p.n > 1).map(|p| ErrorBar::new_vertical(p.x, p.min, p.mean, p.max, color.stroke_width(1), 10)))
                    .plot()?;
            }
        }
        for s in self.series.iter().rev() {
            let color = variant_color(&s.method, s.variant);
            let means: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x, p.mean)).collect();
            chart.draw_series(LineSeries::new(means.iter().copied(), color.stroke_width(2))).plot()?;
            draw_markers(&mut chart, &means, s.variant, color, 4)?;
        }
        Ok(())
    }

    /// `.csv`: one row per line and knob value (`mean`, `min`, `max`, `std` in the axis's unit);
    /// `.runs.csv`: one row per run averaged, with its value.
    fn sidecars(&self) -> Vec<Sidecar> {
        let mut data = Sidecar::new(".csv", &["task", "series", "method", "x", "n", "mean", "min", "max", "std"]);
        let mut runs = Sidecar::new(".runs.csv", &["task", "series", "method", "x", "run_id", "seed", "value", "rank_budget", "run_dir"]);
        for s in &self.series {
            for p in &s.points {
                data.rows.push(vec![
                    self.task.clone(),
                    s.label.clone(),
                    s.method.clone(),
                    p.x_text.clone(),
                    p.n.to_string(),
                    cell(p.mean),
                    cell(p.min),
                    cell(p.max),
                    cell(p.std),
                ]);
                for r in &p.runs {
                    let mut row = vec![self.task.clone(), s.label.clone(), s.method.clone(), p.x_text.clone()];
                    row.extend(r.cells());
                    runs.rows.push(row);
                }
            }
        }
        vec![data, runs]
    }
}

/// One row of a run's `curve.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveRow {
    pub step: f64,
    pub loss: Option<f64>,
    pub dev_metric: Option<f64>,
    pub total_rank: Option<f64>,
}

/// Reads a run's `curve.csv` (step, loss, lr, dev_metric, total_rank; columns found by name,
/// empty cells are None).
pub fn read_curve(path: &Path) -> Result<Vec<CurveRow>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("cannot open {}", path.display()))?;
    let headers = r.headers().with_context(|| format!("{}: no header", path.display()))?.clone();
    let idx = |name: &str| headers.iter().position(|h| h.trim() == name);
    let Some(step_i) = idx("step") else {
        bail!("{}: no `step` column", path.display());
    };
    let (loss_i, dev_i, rank_i) = (idx("loss"), idx("dev_metric"), idx("total_rank"));
    let mut out = Vec::new();
    for (line, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}:{}: unreadable row", path.display(), line + 2))?;
        let cell = |i: Option<usize>| i.and_then(|i| rec.get(i)).and_then(super::parse_f64);
        let Some(step) = cell(Some(step_i)) else {
            bail!("{}:{}: step is not a number", path.display(), line + 2);
        };
        out.push(CurveRow { step, loss: cell(loss_i), dev_metric: cell(dev_i), total_rank: cell(rank_i) });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Curves from the run folders
// ---------------------------------------------------------------------------------------------

/// A line's value at one step, over the runs averaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanPoint {
    pub step: f64,
    /// Runs with a value at this step.
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// One method's line in a step plot: the mean over its runs, with their min and max.
#[derive(Debug, Clone)]
pub struct MeanCurve {
    pub method: String,
    /// The legend entry (the method, and its setting where it has several at the budget).
    pub label: String,
    pub points: Vec<MeanPoint>,
    /// The runs' rank budget (None for LoRA, which has none, and full fine-tuning).
    pub budget: Option<f64>,
    /// The runs averaged (value: their best_score).
    pub runs: Vec<RunRef>,
}

impl MeanCurve {
    fn means(&self) -> Vec<(f64, f64)> {
        self.points.iter().map(|p| (p.step, p.mean)).collect()
    }
    fn spread(&self) -> bool {
        self.points.iter().any(|p| p.n > 1)
    }
}

/// Total rank against step for each method of `task` at one rank budget.
#[derive(Debug, Clone)]
pub struct RankGrowth {
    pub task: String,
    /// The figure's rank budget (None when no run has one).
    pub budget: Option<f64>,
    /// Corners of each line's mean, min and max: the first and last step and every step where
    /// one of them changes (each value holds until the next point).
    pub curves: Vec<MeanCurve>,
    /// Whether some method's line is one of several settings (the best one).
    pub chosen: bool,
    pub size: (u32, u32),
}

/// Training loss and dev metric against step for each method of `task` at one rank budget.
#[derive(Debug, Clone)]
pub struct Training {
    pub task: String,
    pub budget: Option<f64>,
    pub dev_label: String,
    pub dev_words: String,
    /// The moving-mean window of the loss (steps).
    pub window: usize,
    pub loss: Vec<MeanCurve>,
    pub dev: Vec<MeanCurve>,
    pub chosen: bool,
    pub size: (u32, u32),
}

/// The runs behind one method's line in a figure of one budget.
struct LineRuns {
    method: String,
    label: String,
    runs: Vec<(RunRecord, Vec<CurveRow>)>,
}

/// The runs of one rank budget of `task`, a line's worth per method.
struct CurveSet {
    budget: Option<f64>,
    lines: Vec<LineRuns>,
    /// Whether some method had several settings (the line shows the best).
    chosen: bool,
}

/// Groups the runs of `task` whose folder has a `curve.csv` by rank budget (only `budget` when
/// given; runs without a budget, full fine-tuning, join every group) and picks each method's
/// setting (swept values apart from the seed) with the highest mean best_score (ties: the first
/// in runs.csv), whose seeds make its line.
fn curve_sets(runs: &Runs, task: &str, budget: Option<f64>) -> Result<Vec<CurveSet>> {
    let records: Vec<RunRecord> = runs
        .records()?
        .into_iter()
        .filter(|r| r.task == task && r.run_dir.as_ref().is_some_and(|d| d.join("curve.csv").is_file()))
        .collect();
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let swept: Vec<Vec<Option<String>>> = runs.swept.iter().map(|k| runs.strings(k)).collect::<Result<_>>()?;
    let setting = |r: &RunRecord| -> Vec<Option<String>> { swept.iter().map(|c| c[r.row].clone()).collect() };
    let budgets = super::budgets_of(records.iter(), budget, &format!("{task} run with a curve.csv"))?;
    let groups: Vec<Option<f64>> = if budgets.is_empty() { vec![None] } else { budgets.into_iter().map(Some).collect() };
    let mut out = Vec::new();
    for b in groups {
        let members: Vec<&RunRecord> = records
            .iter()
            .filter(|r| match (run_budget(r), b) {
                (None, _) => true,
                (Some(x), Some(y)) => super::same_budget(x, y),
                (Some(_), None) => false,
            })
            .collect();
        let mut methods: Vec<String> = Vec::new();
        for r in &members {
            if !methods.contains(&r.method) {
                methods.push(r.method.clone());
            }
        }
        methods.sort_by_key(|m| figure_rank(m));
        let mut lines = Vec::new();
        let mut chosen_any = false;
        for m in methods {
            // The method's settings in file order, each with its runs.
            let mut settings: Vec<(Vec<Option<String>>, Vec<&RunRecord>)> = Vec::new();
            for r in members.iter().filter(|r| r.method == m) {
                let s = setting(r);
                match settings.iter_mut().find(|(k, _)| *k == s) {
                    Some((_, v)) => v.push(r),
                    None => settings.push((s, vec![r])),
                }
            }
            let mean_score = |rs: &[&RunRecord]| -> f64 {
                let v: Vec<f64> = rs.iter().filter_map(|r| r.best_score).collect();
                if v.is_empty() {
                    f64::NEG_INFINITY
                } else {
                    v.iter().sum::<f64>() / v.len() as f64
                }
            };
            let mut best = 0;
            for (i, (_, rs)) in settings.iter().enumerate() {
                if mean_score(rs) > mean_score(&settings[best].1) {
                    best = i;
                }
            }
            let mut label = method_label(&m);
            if settings.len() > 1 {
                chosen_any = true;
                for (k, key) in runs.swept.iter().enumerate() {
                    let varies = settings.iter().any(|(s, _)| s[k] != settings[0].0[k]);
                    if let (true, Some(v)) = (varies, &settings[best].0[k]) {
                        label.push_str(&format!(", {}={v}", key.rsplit('.').next().unwrap_or(key)));
                    }
                }
            }
            let mut line = Vec::new();
            for r in &settings[best].1 {
                let curve = read_curve(&r.run_dir.as_ref().expect("has run_dir").join("curve.csv"))?;
                line.push(((*r).clone(), curve));
            }
            lines.push(LineRuns { method: m, label, runs: line });
        }
        out.push(CurveSet { budget: b, lines, chosen: chosen_any });
    }
    Ok(out)
}

/// The mean, min and max over runs at each step (runs of one setting share their steps; a step
/// only some runs have is averaged over those). Steps in curve.csv are whole numbers.
pub fn mean_over_runs(runs: &[Vec<(f64, f64)>]) -> Vec<MeanPoint> {
    let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for &(step, v) in run {
            at.entry(step.round() as i64).or_default().push(v);
        }
    }
    at.into_iter()
        .map(|(step, v)| MeanPoint {
            step: step as f64,
            n: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
        .collect()
}

/// The corners of a step function: the first and last points and each point whose value
/// (mean, min, max or count) differs from the one before.
fn corner_points(points: &[MeanPoint]) -> Vec<MeanPoint> {
    let mut out: Vec<MeanPoint> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let same = out.last().is_some_and(|q| (q.n, q.mean, q.min, q.max) == (p.n, p.mean, p.min, p.max));
        if !same || i + 1 == points.len() {
            out.push(*p);
        }
    }
    out
}

/// A step function through `points` (each value held until the next point's step).
fn step_line(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(points.len() * 2);
    for &(x, y) in points {
        if let Some(&(_, py)) = out.last() {
            if py != y {
                out.push((x, py));
            }
        }
        out.push((x, y));
    }
    out
}

/// Moving mean over `window` points (fewer at the start).
fn moving_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let w = window.max(1);
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for i in 0..points.len() {
        sum += points[i].1;
        if i >= w {
            sum -= points[i - w].1;
        }
        let n = (i + 1).min(w);
        out.push((points[i].0, sum / n as f64));
    }
    out
}

/// Every k-th point, at most `max_points` of them plus the last.
fn thin<T: Clone + PartialEq>(points: Vec<T>, max_points: usize) -> Vec<T> {
    let stride = points.len().div_ceil(max_points.max(1)).max(1);
    let last = points.last().cloned();
    let mut out: Vec<T> = points.into_iter().step_by(stride).collect();
    if let Some(l) = last {
        if out.last() != Some(&l) {
            out.push(l);
        }
    }
    out
}

/// A run's evaluations with a final evaluation that follows the previous one by less than half
/// an evaluation interval (the interval before that one) taking that one's place: the training
/// loop evaluates every `eval_steps` and again at the last step.
pub fn merge_final_evaluation(evals: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let k = evals.len();
    if k < 2 {
        return evals.to_vec();
    }
    let last_gap = evals[k - 1].0 - evals[k - 2].0;
    let interval = evals[k - 2].0 - if k >= 3 { evals[k - 3].0 } else { 0.0 };
    if last_gap < interval / 2.0 {
        let mut out = evals[..k - 2].to_vec();
        out.push(evals[k - 1]);
        out
    } else {
        evals.to_vec()
    }
}

fn refs(line: &LineRuns) -> Vec<RunRef> {
    line.runs.iter().map(|(r, _)| RunRef::of(r, r.best_score)).collect()
}

/// The runs' (common) rank budget.
fn line_budget(line: &LineRuns) -> Option<f64> {
    line.runs.iter().find_map(|(r, _)| r.rank_budget.filter(|b| *b > 0.0))
}

/// The rank-growth figures of `task`, one per rank budget (only `budget` when given).
pub fn build_rank_growth(runs: &Runs, task: &str, budget: Option<f64>, size: &FigureSize) -> Result<Vec<RankGrowth>> {
    let mut out = Vec::new();
    for set in curve_sets(runs, task, budget)? {
        let mut curves = Vec::new();
        for line in &set.lines {
            let per_run: Vec<Vec<(f64, f64)>> =
                line.runs.iter().map(|(_, rows)| rows.iter().filter_map(|c| c.total_rank.map(|v| (c.step, v))).collect()).collect();
            let mean = mean_over_runs(&per_run);
            if mean.iter().all(|p| p.max == 0.0) {
                continue;
            }
            curves.push(MeanCurve { method: line.method.clone(), label: line.label.clone(), points: corner_points(&mean), budget: line_budget(line), runs: refs(line) });
        }
        if !curves.is_empty() {
            out.push(RankGrowth { task: task.to_string(), budget: set.budget, curves, chosen: set.chosen, size: size.or((WIDTH, HEIGHT)) });
        }
    }
    Ok(out)
}

/// The training figures of `task`, one per rank budget (only `budget` when given).
pub fn build_training(runs: &Runs, task: &str, budget: Option<f64>, size: &FigureSize) -> Result<Vec<Training>> {
    let mut out = Vec::new();
    for set in curve_sets(runs, task, budget)? {
        let longest = set.lines.iter().flat_map(|l| l.runs.iter().map(|(_, c)| c.len())).max().unwrap_or(0);
        let window = (longest / 50).max(if longest >= 50 { 5 } else { 1 });
        let main = set.lines.iter().flat_map(|l| l.runs.iter()).find_map(|(r, _)| r.main_metric.clone());
        let words = metric_words("best_score", task, main.as_deref());
        let factor = percent_factor(main.as_deref().unwrap_or("best_score"), task);
        let mut loss = Vec::new();
        let mut dev = Vec::new();
        for line in &set.lines {
            let losses: Vec<Vec<(f64, f64)>> = line
                .runs
                .iter()
                .map(|(_, rows)| moving_mean(&rows.iter().filter_map(|c| c.loss.map(|v| (c.step, v))).collect::<Vec<_>>(), window))
                .filter(|l| !l.is_empty())
                .collect();
            if !losses.is_empty() {
                let points = thin(mean_over_runs(&losses), MAX_LOSS_POINTS);
                loss.push(MeanCurve { method: line.method.clone(), label: line.label.clone(), points, budget: line_budget(line), runs: refs(line) });
            }
            let evals: Vec<Vec<(f64, f64)>> = line
                .runs
                .iter()
                .map(|(_, rows)| merge_final_evaluation(&rows.iter().filter_map(|c| c.dev_metric.map(|v| (c.step, v * factor))).collect::<Vec<_>>()))
                .filter(|e| !e.is_empty())
                .collect();
            if !evals.is_empty() {
                dev.push(MeanCurve { method: line.method.clone(), label: line.label.clone(), points: mean_over_runs(&evals), budget: line_budget(line), runs: refs(line) });
            }
        }
        if !loss.is_empty() || !dev.is_empty() {
            let unit = if factor == 100.0 || task == "squad2" { " (%)" } else { "" };
            out.push(Training {
                task: task.to_string(),
                budget: set.budget,
                dev_label: format!("dev {words}{unit}"),
                dev_words: words,
                window,
                loss,
                dev,
                chosen: set.chosen,
                size: size.or((WIDTH, TRAINING_HEIGHT)),
            });
        }
    }
    Ok(out)
}

/// The rank-budget lines of a panel: one per distinct budget, in the method's colour when one
/// method has it, grey when several share it; labelled `rank budget B` (with the methods' names
/// when the panel has several budgets).
fn budget_lines(curves: &[MeanCurve]) -> Vec<(f64, RGBColor, String)> {
    let mut budgets: Vec<f64> = curves.iter().filter_map(|c| c.budget).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup_by(|a, b| super::same_budget(*a, *b));
    budgets
        .iter()
        .map(|&b| {
            let owners: Vec<&MeanCurve> = curves.iter().filter(|c| c.budget.is_some_and(|x| super::same_budget(x, b))).collect();
            let color = if owners.len() == 1 { method_color(&owners[0].method) } else { RGBColor(40, 40, 40) };
            let label = if budgets.len() == 1 {
                format!("rank budget {}", short_number(b))
            } else {
                let names: Vec<String> = owners.iter().map(|c| method_label(&c.method)).collect();
                format!("{} budget {}", names.join(", "), short_number(b))
            };
            (b, color, label)
        })
        .collect()
}

/// The legend of step curves: the methods in figure order, then the budget lines.
fn curve_legend(curves: &[&MeanCurve], budgets: &[(f64, RGBColor, String)], markers: bool) -> Vec<LegendItem> {
    let mut items: Vec<LegendItem> = Vec::new();
    for c in curves {
        if !items.iter().any(|i| i.label == c.label) {
            items.push(LegendItem { label: c.label.clone(), color: method_color(&c.method), dashed: false, marker: markers.then_some(0) });
        }
    }
    items.extend(budgets.iter().map(|(_, color, label)| LegendItem { label: label.clone(), color: *color, dashed: true, marker: None }));
    items
}

/// How a panel of step curves is drawn.
struct StepPanel<'a> {
    curves: &'a [MeanCurve],
    /// The x axis's description (None: tick labels only, for a panel above another).
    x_desc: Option<&'a str>,
    y_desc: &'a str,
    /// Markers at the points (evaluations).
    markers: bool,
    /// Whole-number tick labels.
    integer_y: bool,
    /// Values held until the next point (rank), else straight segments.
    steps: bool,
    /// Dashed rank-budget lines (`budget_lines`).
    budgets: &'a [(f64, RGBColor, String)],
}

/// Draws one panel of mean curves into `area`: a band from min to max where a line averages
/// several runs, lines drawn in reverse figure order (the first method on top). The y axis does
/// not go below zero when no value does.
fn draw_step_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &StepPanel) -> Result<()> {
    let pts = || p.curves.iter().flat_map(|c| c.points.iter());
    let x_hi = pts().map(|q| q.step).fold(0.0f64, f64::max).max(1.0);
    let lo = pts().map(|q| q.min).chain(p.budgets.iter().map(|b| b.0)).fold(f64::INFINITY, f64::min);
    let hi = pts().map(|q| q.max).chain(p.budgets.iter().map(|b| b.0)).fold(f64::NEG_INFINITY, f64::max);
    let (mut y0, y1) = padded(lo, hi, 0.08);
    if lo >= 0.0 && y0 < 0.0 {
        y0 = 0.0;
    }
    let (w, h) = area.dim_in_pixel();
    let x_area = if p.x_desc.is_some() { 55 } else { 30 };
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .margin_top(5)
        .margin_bottom(if p.x_desc.is_some() { 20 } else { 8 })
        .x_label_area_size(x_area)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_hi * 1.02, y0..y1)
        .plot()?;
    let integer_y = p.integer_y;
    let plot_h = h.saturating_sub(x_area + if p.x_desc.is_some() { 25 } else { 13 });
    let x_fmt = |v: &f64| short_number(v.round());
    let y_fmt = |v: &f64| if integer_y { short_number(v.round()) } else { short_number((v * 1000.0).round() / 1000.0) };
    let mut mesh = chart.configure_mesh();
    mesh.axis_desc_style(font(17.0))
        .label_style(font(14.0))
        .x_labels(tick_count(w.saturating_sub(120), 55))
        .y_labels(tick_count(plot_h, 25))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215));
    if let Some(d) = p.x_desc {
        mesh.x_desc(d);
    }
    mesh.draw().plot()?;
    draw_y_desc(area, &chart, p.y_desc)?;
    let shape = |v: Vec<(f64, f64)>| if p.steps { step_line(&v) } else { v };
    for c in p.curves.iter().rev().filter(|c| c.spread()) {
        let color = method_color(&c.method);
        let mut band = shape(c.points.iter().map(|q| (q.step, q.max)).collect());
        band.extend(shape(c.points.iter().map(|q| (q.step, q.min)).collect()).iter().rev());
        chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.18).filled()))).plot()?;
    }
    for c in p.curves.iter().rev() {
        let color = method_color(&c.method);
        chart.draw_series(LineSeries::new(shape(c.means()), color.stroke_width(2))).plot()?;
        if p.markers {
            draw_markers(&mut chart, &c.means(), 0, color, 3)?;
        }
    }
    // Budget lines last and thin, so that lines that reach the budget stay visible under them.
    for (b, color, _) in p.budgets {
        chart.draw_series(DashedLineSeries::new(vec![(0.0, *b), (x_hi * 1.02, *b)], 8, 5, color.stroke_width(1))).plot()?;
    }
    Ok(())
}

/// The subtitle's account of the lines: runs per line and how the setting was chosen.
fn lines_note(curves: &[&MeanCurve], chosen: bool) -> String {
    let counts: Vec<usize> = curves.iter().map(|c| c.runs.len()).collect();
    let (lo, hi) = (counts.iter().copied().min().unwrap_or(0), counts.iter().copied().max().unwrap_or(0));
    let mut s = if hi <= 1 {
        "one run per method".to_string()
    } else {
        let n = if lo == hi { format!("{hi}") } else { format!("{lo}–{hi}") };
        format!("mean of {n} seeds per method, band: min–max")
    };
    if chosen {
        s.push_str("; setting with the best mean dev score");
    }
    s
}

fn budget_words(task: &str, budget: Option<f64>) -> String {
    match budget {
        Some(b) => format!("{}, rank budget {}", task_label(task), short_number(b)),
        None => task_label(task),
    }
}

/// The rows of a step figure's `.csv` (one per point) and `.runs.csv` (one per run).
fn curve_sidecars(task: &str, panels: &[(&str, &[MeanCurve])]) -> Vec<Sidecar> {
    let mut data = Sidecar::new(".csv", &["task", "panel", "series", "method", "rank_budget", "step", "n", "mean", "min", "max"]);
    let mut runs = Sidecar::new(".runs.csv", &["task", "series", "method", "run_id", "seed", "best_score", "rank_budget", "run_dir"]);
    let mut listed: Vec<&str> = Vec::new();
    for (panel, curves) in panels {
        for c in curves.iter() {
            for p in &c.points {
                data.rows.push(vec![
                    task.to_string(),
                    panel.to_string(),
                    c.label.clone(),
                    c.method.clone(),
                    opt_cell(c.budget),
                    cell(p.step),
                    p.n.to_string(),
                    cell(p.mean),
                    cell(p.min),
                    cell(p.max),
                ]);
            }
            if !listed.contains(&c.label.as_str()) {
                listed.push(&c.label);
                for r in &c.runs {
                    let mut row = vec![task.to_string(), c.label.clone(), c.method.clone()];
                    row.extend(r.cells());
                    runs.rows.push(row);
                }
            }
        }
    }
    vec![data, runs]
}

impl Figure for RankGrowth {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let budgets = budget_lines(&self.curves);
        let curves: Vec<&MeanCurve> = self.curves.iter().collect();
        let legend = curve_legend(&curves, &budgets, false);
        let (top, rest) = root.split_vertically(TITLE_H);
        let dashed = if budgets.is_empty() { "" } else { "; dashed: rank budget" };
        super::draw_title(
            &top,
            &format!("{}: total rank during training", budget_words(&self.task, self.budget)),
            Some(&format!("{}{dashed}", lines_note(&curves, self.chosen))),
        )?;
        let (legend_area, body) = rest.split_vertically(legend_height(&legend, self.size.0));
        draw_legend(&legend_area, &legend)?;
        draw_step_panel(
            &body,
            &StepPanel {
                curves: &self.curves,
                x_desc: Some("training step"),
                y_desc: "total rank (sum over adapted matrices)",
                markers: false,
                integer_y: true,
                steps: true,
                budgets: &budgets,
            },
        )
    }

    /// `.csv`: the corners of each line (panel `rank`; a value holds until the next step);
    /// `.runs.csv`: the runs averaged.
    fn sidecars(&self) -> Vec<Sidecar> {
        curve_sidecars(&self.task, &[("rank", &self.curves)])
    }
}

impl Figure for Training {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let curves: Vec<&MeanCurve> = self.loss.iter().chain(&self.dev).collect();
        // One legend for both panels (a method has the same colour in each).
        let mut legend = curve_legend(&curves, &[], false);
        if self.loss.is_empty() {
            legend.iter_mut().for_each(|i| i.marker = Some(0));
        }
        let (top, rest) = root.split_vertically(TITLE_H);
        let smooth = if self.window > 1 { format!("; loss: moving mean over {} steps", self.window) } else { String::new() };
        super::draw_title(
            &top,
            &format!("{}: training loss and dev {}", budget_words(&self.task, self.budget), self.dev_words),
            Some(&format!("{}{smooth}", lines_note(&curves, self.chosen))),
        )?;
        let (legend_area, body) = rest.split_vertically(legend_height(&legend, self.size.0));
        draw_legend(&legend_area, &legend)?;
        let panel = |curves, x_desc, y_desc, markers| StepPanel { curves, x_desc, y_desc, markers, integer_y: false, steps: false, budgets: &[] };
        match (self.loss.is_empty(), self.dev.is_empty()) {
            (false, false) => {
                // The upper panel shares the lower one's x axis: tick labels only.
                let (_, h) = body.dim_in_pixel();
                let (upper, lower) = body.split_vertically(h.saturating_sub(25) / 2);
                draw_step_panel(&upper, &panel(&self.loss, None, "training loss", false))?;
                draw_step_panel(&lower, &panel(&self.dev, Some("training step"), &self.dev_label, true))?;
            }
            (false, true) => draw_step_panel(&body, &panel(&self.loss, Some("training step"), "training loss", false))?,
            (true, false) => draw_step_panel(&body, &panel(&self.dev, Some("training step"), &self.dev_label, true))?,
            (true, true) => {}
        }
        Ok(())
    }

    /// `.csv`: panel `loss` (the moving mean, at most 1500 points per line) and panel `dev` (the
    /// evaluations, in the axis's unit); `.runs.csv`: the runs averaged.
    fn sidecars(&self) -> Vec<Sidecar> {
        curve_sidecars(&self.task, &[("loss", &self.loss), ("dev", &self.dev)])
    }
}

/// The file stem of a per-budget figure: `<kind>_<task>[_budget<B>]`.
fn budget_file(kind: &str, task: &str, budget: Option<f64>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_functions_keep_their_corners() {
        let p: Vec<MeanPoint> = [(1.0, 72.0), (2.0, 72.0), (3.0, 78.0), (4.0, 78.0), (5.0, 78.0)]
            .iter()
            .map(|&(step, v)| MeanPoint { step, n: 1, mean: v, min: v, max: v })
            .collect();
        let c: Vec<(f64, f64)> = corner_points(&p).iter().map(|q| (q.step, q.mean)).collect();
        assert_eq!(c, [(1.0, 72.0), (3.0, 78.0), (5.0, 78.0)]);
        assert_eq!(step_line(&c), [(1.0, 72.0), (3.0, 72.0), (3.0, 78.0), (5.0, 78.0)]);
    }

    #[test]
    fn moving_mean_and_thinning() {
        let p: Vec<(f64, f64)> = (1..=6).map(|i| (i as f64, i as f64)).collect();
        let smooth = |p: &[(f64, f64)], w, n| thin(moving_mean(p, w), n);
        assert_eq!(smooth(&p, 2, 100), [(1.0, 1.0), (2.0, 1.5), (3.0, 2.5), (4.0, 3.5), (5.0, 4.5), (6.0, 5.5)]);
        // At most 3 points (every second one), the last always kept.
        assert_eq!(smooth(&p, 1, 3), [(1.0, 1.0), (3.0, 3.0), (5.0, 5.0), (6.0, 6.0)]);
    }

    #[test]
    fn means_over_runs_per_step() {
        let m = mean_over_runs(&[vec![(1.0, 1.0), (2.0, 4.0)], vec![(1.0, 3.0), (2.0, 8.0)], vec![(1.0, 2.0)]]);
        assert_eq!(m, [MeanPoint { step: 1.0, n: 3, mean: 2.0, min: 1.0, max: 3.0 }, MeanPoint { step: 2.0, n: 2, mean: 6.0, min: 4.0, max: 8.0 }]);
    }

    #[test]
    fn a_final_evaluation_just_after_the_last_one_replaces_it() {
        let e = [(50.0, 0.5), (100.0, 0.8), (150.0, 0.9), (156.0, 0.91)];
        assert_eq!(merge_final_evaluation(&e), [(50.0, 0.5), (100.0, 0.8), (156.0, 0.91)]);
        // On the interval (eval_steps divides the step count) or well after: kept.
        let e = [(50.0, 0.5), (100.0, 0.8), (140.0, 0.9)];
        assert_eq!(merge_final_evaluation(&e), e);
        assert_eq!(merge_final_evaluation(&[(50.0, 0.5), (60.0, 0.6)]), [(60.0, 0.6)]);
        assert_eq!(merge_final_evaluation(&[(50.0, 0.5)]), [(50.0, 0.5)]);
    }
}
