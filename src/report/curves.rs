//! `triadapt plot`: ablation curves (the paper's Figures 3-5), rank growth and training curves.
//!
//! Per task in `runs.csv` (or only `--task`), into `<out>/<results name>/`:
//! - `ablation_<task>_<knob>.{png,svg}`: the metric (default `best_score`, the run's main dev
//!   metric) against a swept key (default the first swept column), one line per method: the
//!   mean over the runs at each value (seeds), a shaded band and bars from min to max. Further
//!   swept keys that vary within a method split its line (legend `TriAdaptLoRA, interval=100`).
//!   Several keys joined by commas are read as one knob, taking the first non-empty cell of a row
//!   (e.g. `method.triadapt.warmup_steps,method.increlora.init_warmup`). Numeric values are
//!   sorted and evenly spaced with a tick at each (as in the paper's ablation figures; more than
//!   12 distinct values: a linear axis); other values are categories in file order.
//! - `rank_growth_<task>.{png,svg}`: total rank against step from each run's `curve.csv`, one
//!   line per method (full fine-tuning has no ranks and is left out), with the rank budget dashed.
//! - `training_<task>.{png,svg}`: training loss (moving mean) and the dev main metric at the
//!   evaluation steps against step, one line per method.
//!
//! The rank-growth and training figures draw one run per method: the highest `best_score`,
//! ties broken by the lowest seed (`super::representative`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use super::{
    font, is_fraction_metric, knob_label, method_color, method_label, method_rank, metric_axis_label, metric_words, palette,
    render, representative, short_number, task_label, Figure, PlotResult, RunRecord, Runs,
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
}

const WIDTH: u32 = 900;
const HEIGHT: u32 = 620;
const TRAINING_HEIGHT: u32 = 860;
const TITLE_H: u32 = 70;
/// Up to this many distinct numeric knob values are spaced evenly.
const MAX_EVEN: usize = 12;

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
}

#[derive(Debug, Clone)]
pub struct AblationSeries {
    pub method: String,
    pub label: String,
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
pub fn build_ablation(runs: &Runs, task: &str, keys: &[String], metric: &str) -> Result<Option<Ablation>> {
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
    let scale = if is_fraction_metric(metric) { 100.0 } else { 1.0 };
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
        by_series.entry((method, extra)).or_default().push(AblationPoint {
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
            AblationSeries { method, label, points }
        })
        .collect();
    series.sort_by(|a, b| method_rank(&a.method).cmp(&method_rank(&b.method)).then(a.label.cmp(&b.label)));
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

/// The corner of the plot whose legend box covers the fewest points of `lines` (each segment
/// sampled at 24 points), given the axis ranges; `entries` legend lines set the box height.
/// Preference on ties: lower right, upper right, upper left, lower left.
fn legend_corner(lines: &[Vec<(f64, f64)>], x: (f64, f64), y: (f64, f64), entries: usize) -> SeriesLabelPosition {
    let h = (0.08 * entries as f64 + 0.06).min(0.6);
    let boxes = [
        (SeriesLabelPosition::LowerRight, (0.62, 1.0), (0.0, h)),
        (SeriesLabelPosition::UpperRight, (0.62, 1.0), (1.0 - h, 1.0)),
        (SeriesLabelPosition::UpperLeft, (0.0, 0.38), (1.0 - h, 1.0)),
        (SeriesLabelPosition::LowerLeft, (0.0, 0.38), (0.0, h)),
    ];
    let norm = |p: (f64, f64)| ((p.0 - x.0) / (x.1 - x.0).max(1e-12), (p.1 - y.0) / (y.1 - y.0).max(1e-12));
    let mut counts = [0usize; 4];
    for line in lines {
        let mut samples: Vec<(f64, f64)> = Vec::new();
        for w in line.windows(2) {
            for k in 0..24 {
                let t = k as f64 / 24.0;
                samples.push((w[0].0 + t * (w[1].0 - w[0].0), w[0].1 + t * (w[1].1 - w[0].1)));
            }
        }
        samples.extend(line.last().copied());
        for p in samples {
            let (u, v) = norm(p);
            for (i, (_, bx, by)) in boxes.iter().enumerate() {
                if u >= bx.0 && u <= bx.1 && v >= by.0 && v <= by.1 {
                    counts[i] += 1;
                }
            }
        }
    }
    let best = (0..4).min_by_key(|&i| (counts[i], i)).unwrap_or(0);
    boxes[best].0.clone()
}

fn series_colors(methods: &[&str]) -> Vec<RGBColor> {
    let mut distinct: Vec<&str> = methods.to_vec();
    distinct.dedup();
    let one_per_method = distinct.len() == methods.len();
    methods
        .iter()
        .enumerate()
        .map(|(i, m)| if one_per_method { method_color(m, i) } else { palette(i) })
        .collect()
}

impl Figure for Ablation {
    fn size(&self) -> (u32, u32) {
        (WIDTH, HEIGHT)
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
        let (top, body) = root.split_vertically(TITLE_H);
        super::draw_title(&top, &title, Some(&sub))?;

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
        let x_labels = self.categories.as_ref().map_or(10, |c| c.len().max(1));
        chart
            .configure_mesh()
            .x_desc(self.x_label.clone())
            .y_desc(self.y_label.clone())
            .axis_desc_style(font(17.0))
            .label_style(font(14.0))
            .x_labels(x_labels)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|v: &f64| short_number((v * 100.0).round() / 100.0))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .plot()?;
        let methods: Vec<&str> = self.series.iter().map(|s| s.method.as_str()).collect();
        let colors = series_colors(&methods);
        for (s, color) in self.series.iter().zip(colors) {
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
            chart
                .draw_series(LineSeries::new(s.points.iter().map(|p| (p.x, p.mean)), color.stroke_width(2)))
                .plot()?
                .label(s.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
            chart.draw_series(s.points.iter().map(|p| Circle::new((p.x, p.mean), 4, color.filled()))).plot()?;
        }
        let lines: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .flat_map(|s| {
                let band: Vec<(f64, f64)> = s.points.iter().flat_map(|p| [(p.x, p.min), (p.x, p.max)]).collect();
                [s.points.iter().map(|p| (p.x, p.mean)).collect(), band]
            })
            .collect();
        chart
            .configure_series_labels()
            .position(legend_corner(&lines, (x0, x1), (y0, y1), self.series.len()))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .label_font(font(15.0))
            .draw()
            .plot()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Curves from the run folders
// ---------------------------------------------------------------------------------------------

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

/// One method's line in a step plot.
#[derive(Debug, Clone)]
pub struct StepCurve {
    pub method: String,
    pub run_id: String,
    pub points: Vec<(f64, f64)>,
    /// A horizontal reference (the rank budget).
    pub budget: Option<f64>,
}

/// Total rank against step for each method of `task`.
#[derive(Debug, Clone)]
pub struct RankGrowth {
    pub task: String,
    pub curves: Vec<StepCurve>,
}

/// Training loss and dev metric against step for each method of `task`.
#[derive(Debug, Clone)]
pub struct Training {
    pub task: String,
    pub dev_label: String,
    pub dev_words: String,
    pub window: usize,
    pub loss: Vec<StepCurve>,
    pub dev: Vec<StepCurve>,
}

/// The representative run of each method of `task` whose folder has a `curve.csv`, with the
/// curve, in method order.
fn method_curves(runs: &Runs, task: &str) -> Result<Vec<(RunRecord, Vec<CurveRow>)>> {
    let records = runs.records()?;
    let mut by_method: BTreeMap<String, Vec<&RunRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.task == task) {
        if r.run_dir.as_ref().is_some_and(|d| d.join("curve.csv").is_file()) {
            by_method.entry(r.method.clone()).or_default().push(r);
        }
    }
    let mut methods: Vec<String> = by_method.keys().cloned().collect();
    methods.sort_by_key(|m| method_rank(m));
    let mut out = Vec::new();
    for m in methods {
        let rep = representative(&by_method[&m]).expect("non-empty").clone();
        let curve = read_curve(&rep.run_dir.as_ref().expect("has run_dir").join("curve.csv"))?;
        out.push((rep, curve));
    }
    Ok(out)
}

/// Keeps a step function's corners only: the first and last points and each change.
fn step_corners(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for (i, &(x, y)) in points.iter().enumerate() {
        match out.last() {
            Some(&(_, py)) if py == y && i + 1 != points.len() => {}
            Some(&(_, py)) if py != y => {
                out.push((x, py));
                out.push((x, y));
            }
            _ => out.push((x, y)),
        }
    }
    out
}

/// Moving mean over `window` points, then at most `max_points` evenly spaced points.
fn smooth(points: &[(f64, f64)], window: usize, max_points: usize) -> Vec<(f64, f64)> {
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
    let stride = out.len().div_ceil(max_points.max(1)).max(1);
    let last = out.last().copied();
    let mut thin: Vec<(f64, f64)> = out.into_iter().step_by(stride).collect();
    if let Some(l) = last {
        if thin.last() != Some(&l) {
            thin.push(l);
        }
    }
    thin
}

pub fn build_rank_growth(runs: &Runs, task: &str) -> Result<Option<RankGrowth>> {
    let mut curves = Vec::new();
    for (r, rows) in method_curves(runs, task)? {
        let points: Vec<(f64, f64)> = rows.iter().filter_map(|c| c.total_rank.map(|v| (c.step, v))).collect();
        if points.iter().all(|p| p.1 == 0.0) {
            continue;
        }
        curves.push(StepCurve { method: r.method.clone(), run_id: r.run_id.clone(), points: step_corners(&points), budget: r.rank_budget.filter(|b| *b > 0.0) });
    }
    Ok((!curves.is_empty()).then(|| RankGrowth { task: task.to_string(), curves }))
}

pub fn build_training(runs: &Runs, task: &str) -> Result<Option<Training>> {
    let curves = method_curves(runs, task)?;
    if curves.is_empty() {
        return Ok(None);
    }
    let longest = curves.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let window = (longest / 50).max(if longest >= 50 { 5 } else { 1 });
    let main = curves.iter().find_map(|(r, _)| r.main_metric.clone());
    let words = metric_words("best_score", task, main.as_deref());
    let mut loss = Vec::new();
    let mut dev = Vec::new();
    for (r, rows) in &curves {
        let l: Vec<(f64, f64)> = rows.iter().filter_map(|c| c.loss.map(|v| (c.step, v))).collect();
        if !l.is_empty() {
            loss.push(StepCurve { method: r.method.clone(), run_id: r.run_id.clone(), points: smooth(&l, window, 1500), budget: None });
        }
        let d: Vec<(f64, f64)> = rows.iter().filter_map(|c| c.dev_metric.map(|v| (c.step, v * 100.0))).collect();
        if !d.is_empty() {
            dev.push(StepCurve { method: r.method.clone(), run_id: r.run_id.clone(), points: d, budget: None });
        }
    }
    Ok(Some(Training { task: task.to_string(), dev_label: format!("dev {words} (%)"), dev_words: words, window, loss, dev }))
}

/// Draws step curves (one line per method) into `area`.
fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[StepCurve],
    x_desc: &str,
    y_desc: &str,
    markers: bool,
    integer_y: bool,
) -> Result<()> {
    let pts = || curves.iter().flat_map(|c| c.points.iter());
    let x_hi = pts().map(|p| p.0).fold(0.0f64, f64::max).max(1.0);
    let mut ys: Vec<f64> = pts().map(|p| p.1).collect();
    ys.extend(curves.iter().filter_map(|c| c.budget));
    let (mut y0, y1) = padded(ys.iter().copied().fold(f64::INFINITY, f64::min), ys.iter().copied().fold(f64::NEG_INFINITY, f64::max), 0.08);
    if integer_y && y0 < 0.0 && ys.iter().all(|v| *v >= 0.0) {
        y0 = 0.0;
    }
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .margin_top(5)
        .x_label_area_size(55)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_hi * 1.02, y0..y1)
        .plot()?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .axis_desc_style(font(17.0))
        .label_style(font(14.0))
        .x_label_formatter(&|v: &f64| short_number(v.round()))
        .y_label_formatter(&|v: &f64| if integer_y { short_number(v.round()) } else { short_number((v * 1000.0).round() / 1000.0) })
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .plot()?;
    let methods: Vec<&str> = curves.iter().map(|c| c.method.as_str()).collect();
    for (c, color) in curves.iter().zip(series_colors(&methods)) {
        chart
            .draw_series(LineSeries::new(c.points.iter().copied(), color.stroke_width(2)))
            .plot()?
            .label(method_label(&c.method))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3)));
        if markers {
            chart.draw_series(c.points.iter().map(|&p| Circle::new(p, 3, color.filled()))).plot()?;
        }
        if let Some(b) = c.budget {
            chart.draw_series(DashedLineSeries::new(vec![(0.0, b), (x_hi, b)], 8, 5, color.mix(0.7).stroke_width(1))).plot()?;
        }
    }
    let mut lines: Vec<Vec<(f64, f64)>> = curves.iter().map(|c| c.points.clone()).collect();
    lines.extend(curves.iter().filter_map(|c| c.budget.map(|b| vec![(0.0, b), (x_hi, b)])));
    chart
        .configure_series_labels()
        .position(legend_corner(&lines, (0.0, x_hi * 1.02), (y0, y1), curves.len()))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font(font(15.0))
        .draw()
        .plot()?;
    Ok(())
}

impl Figure for RankGrowth {
    fn size(&self) -> (u32, u32) {
        (WIDTH, HEIGHT)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (top, body) = root.split_vertically(TITLE_H);
        let budget = if self.curves.iter().any(|c| c.budget.is_some()) { "; dashed: rank budget" } else { "" };
        super::draw_title(
            &top,
            &format!("{}: total rank during training", task_label(&self.task)),
            Some(&format!("one run per method (highest best dev score){budget}")),
        )?;
        draw_lines(&body, &self.curves, "training step", "total rank (sum over adapted matrices)", false, true)
    }
}

impl Figure for Training {
    fn size(&self) -> (u32, u32) {
        (WIDTH, TRAINING_HEIGHT)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (top, body) = root.split_vertically(TITLE_H);
        let smooth = if self.window > 1 { format!("; loss: moving mean over {} steps", self.window) } else { String::new() };
        super::draw_title(
            &top,
            &format!("{}: training loss and dev {}", task_label(&self.task), self.dev_words),
            Some(&format!("one run per method (highest best dev score){smooth}")),
        )?;
        let (upper, lower) = body.split_vertically((TRAINING_HEIGHT - TITLE_H) / 2);
        if !self.loss.is_empty() {
            draw_lines(&upper, &self.loss, "training step", "training loss", false, false)?;
        }
        if !self.dev.is_empty() {
            draw_lines(&lower, &self.dev, "training step", &self.dev_label, true, false)?;
        }
        Ok(())
    }
}

/// `triadapt plot`: writes the ablation, rank-growth and training figures of every task (or
/// only `opts.task`) and returns the files written. Figures without data are skipped with a note
/// on stderr; having none at all is an error.
pub fn run(results: &Path, out: &Path, opts: &PlotOptions) -> Result<Vec<PathBuf>> {
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
    let mut files = Vec::new();
    for t in &tasks {
        let safe = super::file_safe(t);
        if let Some((keys, metric)) = &keys {
            match build_ablation(&runs, t, keys, metric)? {
                Some(a) => {
                    let knob = super::file_safe(keys[0].rsplit('.').next().unwrap_or(&keys[0]));
                    files.extend(render(&a, &dir.join(format!("ablation_{safe}_{knob}")))?);
                }
                None => eprintln!("note: {t}: no finished run has both {} and {metric}: no ablation figure", keys.join(" or ")),
            }
        }
        match build_rank_growth(&runs, t)? {
            Some(g) => files.extend(render(&g, &dir.join(format!("rank_growth_{safe}")))?),
            None => eprintln!("note: {t}: no run folder with a curve.csv holding non-zero ranks: no rank-growth figure"),
        }
        match build_training(&runs, t)? {
            Some(tr) => files.extend(render(&tr, &dir.join(format!("training_{safe}")))?),
            None => eprintln!("note: {t}: no run folder with a curve.csv: no training-curve figure"),
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
        let p = [(1.0, 72.0), (2.0, 72.0), (3.0, 78.0), (4.0, 78.0), (5.0, 78.0)];
        assert_eq!(step_corners(&p), [(1.0, 72.0), (3.0, 72.0), (3.0, 78.0), (5.0, 78.0)]);
    }

    #[test]
    fn moving_mean_and_thinning() {
        let p: Vec<(f64, f64)> = (1..=6).map(|i| (i as f64, i as f64)).collect();
        assert_eq!(smooth(&p, 2, 100), [(1.0, 1.0), (2.0, 1.5), (3.0, 2.5), (4.0, 3.5), (5.0, 4.5), (6.0, 5.5)]);
        // At most 3 points (every second one), the last always kept.
        assert_eq!(smooth(&p, 1, 3), [(1.0, 1.0), (3.0, 3.0), (5.0, 5.0), (6.0, 6.0)]);
    }
}
