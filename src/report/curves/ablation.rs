//! The ablation figure (the paper's Figures 3-5): a metric against a swept key, one line per
//! method (mean over seeds, band and bars from min to max).

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::*;

use super::chart::*;
use super::*;

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
pub(super) fn ablation_keys(runs: &Runs, opts: &PlotOptions) -> Result<Option<(Vec<String>, String)>> {
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
pub(super) fn default_knob(runs: &Runs) -> Result<Vec<String>> {
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
    let (mut agg, rows) = crate::report::group_rows(&df, &in_task, &group).context("aggregating the ablation with polars")?;
    let stats: Vec<crate::report::GroupStats> = rows.iter().map(|r| crate::report::group_stats(r.iter().map(|&i| y[i]))).collect();
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
    let g_method = crate::report::str_values(&agg, "method")?;
    let g_x = crate::report::str_values(&agg, "__x")?;
    let g_split: Vec<Vec<Option<String>>> = split.iter().map(|k| crate::report::str_values(&agg, k)).collect::<Result<_>>()?;

    let xs: Vec<String> = g_x.iter().map(|v| v.clone().unwrap_or_default()).collect();
    let numeric = xs.iter().all(|v| crate::report::parse_f64(v).is_some());
    // Numeric values: sorted, and evenly spaced (ticks at the values, as in the paper's ablation
    // figures) when there are at most MAX_EVEN of them; else a linear axis. Other values:
    // categories in order of first appearance in runs.csv.
    let mut values: Vec<f64> = xs.iter().filter_map(|v| crate::report::parse_f64(v)).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let categories = if numeric && values.len() > MAX_EVEN {
        None
    } else if numeric {
        Some(
            values
                .iter()
                .map(|v| xs.iter().find(|x| crate::report::parse_f64(x) == Some(*v)).cloned().unwrap_or_default())
                .collect::<Vec<_>>(),
        )
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
        let value = crate::report::parse_f64(&xs[i]);
        let pos = match (&categories, value) {
            (None, Some(v)) => v,
            (Some(_), Some(v)) if numeric => values.iter().position(|u| *u == v).unwrap_or(0) as f64,
            (Some(c), _) => c.iter().position(|v| v == &xs[i]).unwrap_or(0) as f64,
            (None, None) => unreachable!("a linear axis has numeric values only"),
        };
        let refs = rows[i].iter().map(|&r| RunRef::of(&records[r], y[r].map(|v| v * scale))).collect();
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
pub(super) fn columns_order(runs: &Runs, keys: &[String]) -> Result<Vec<String>> {
    let columns: Vec<Vec<Option<String>>> = keys.iter().map(|k| runs.strings(k)).collect::<Result<_>>()?;
    Ok((0..runs.df.height()).filter_map(|i| columns.iter().find_map(|c| c[i].clone())).collect())
}

pub(super) fn main_metric_of(runs: &Runs, task: &str) -> Result<Option<String>> {
    Ok(runs.records()?.into_iter().find(|r| r.task == task && r.main_metric.is_some()).and_then(|r| r.main_metric))
}

impl Ablation {
    fn legend(&self) -> Vec<LegendItem> {
        self.series
            .iter()
            .map(|s| LegendItem {
                label: s.label.clone(),
                color: variant_color(&s.method, s.variant),
                dash: line_dash(&s.method, s.variant),
                marker: Some(marker_shape(&s.method, s.variant)),
            })
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
        crate::report::draw_title(&top, &title, Some(&sub))?;
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
        // Each line a little beside the others (a fraction of a category's width, or of the
        // axis), so that lines with the same values all show their markers and bars.
        let k = self.series.len();
        let step = if self.categories.is_some() { 0.04 } else { 0.008 * (x1 - x0) };
        let shift = |i: usize| (i as f64 - (k as f64 - 1.0) / 2.0) * step;
        // Bands and bars in reverse order, then the lines in figure order (the first method's
        // solid line at the bottom, the others dashed over it), then the markers.
        for (i, s) in self.series.iter().enumerate().rev() {
            let color = variant_color(&s.method, s.variant);
            let dx = shift(i);
            let spread = s.points.iter().any(|p| p.n > 1);
            if spread && s.points.len() > 1 {
                let mut band: Vec<(f64, f64)> = s.points.iter().map(|p| (p.x + dx, p.max)).collect();
                band.extend(s.points.iter().rev().map(|p| (p.x + dx, p.min)));
                chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled()))).plot()?;
            }
            if spread {
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .filter(|p| p.n > 1)
                            .map(|p| ErrorBar::new_vertical(p.x + dx, p.min, p.mean, p.max, color.stroke_width(1), 10)),
                    )
                    .plot()?;
            }
        }
        let means = |i: usize, s: &AblationSeries| -> Vec<(f64, f64)> { s.points.iter().map(|p| (p.x + shift(i), p.mean)).collect() };
        for (i, s) in self.series.iter().enumerate() {
            draw_line(&mut chart, means(i, s), line_dash(&s.method, s.variant), variant_color(&s.method, s.variant).stroke_width(2))?;
        }
        for (i, s) in self.series.iter().enumerate().rev() {
            draw_markers(&mut chart, &means(i, s), marker_shape(&s.method, s.variant), variant_color(&s.method, s.variant), 4)?;
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
