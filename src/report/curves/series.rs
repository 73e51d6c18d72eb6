//! The rank-growth and training figures, from the run folders' `curve.csv`: per method the mean
//! over its runs with a band from their minimum to their maximum, per rank budget.

use std::path::Path;

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::chart::*;
use super::*;
use crate::report::stats::{mean, mean_over_runs, moving_mean, MeanPoint};

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
        let cell = |i: Option<usize>| i.and_then(|i| rec.get(i)).and_then(crate::report::parse_f64);
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
pub(super) struct LineRuns {
    method: String,
    label: String,
    runs: Vec<(RunRecord, Vec<CurveRow>)>,
}

/// The runs of one rank budget of `task`, a line's worth per method.
pub(super) struct CurveSet {
    budget: Option<f64>,
    lines: Vec<LineRuns>,
    /// Whether some method had several settings (the line shows the best).
    chosen: bool,
}

/// Groups the runs of `task` whose folder has a `curve.csv` by rank budget (only `budget` when
/// given; runs without a budget, full fine-tuning, join every group) and picks each method's
/// setting (swept values apart from the seed) with the highest mean best_score (ties: the first
/// in runs.csv), whose seeds make its line.
pub(super) fn curve_sets(runs: &Runs, task: &str, budget: Option<f64>) -> Result<Vec<CurveSet>> {
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
    let budgets = crate::report::budgets_of(records.iter(), budget, &format!("{task} run with a curve.csv"))?;
    let groups: Vec<Option<f64>> = if budgets.is_empty() { vec![None] } else { budgets.into_iter().map(Some).collect() };
    let mut out = Vec::new();
    for b in groups {
        let members: Vec<&RunRecord> = records
            .iter()
            .filter(|r| match (run_budget(r), b) {
                (None, _) => true,
                (Some(x), Some(y)) => crate::report::same_budget(x, y),
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
                mean(&v).unwrap_or(f64::NEG_INFINITY)
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

/// The corners of a step function: the first and last points and each point whose value
/// (mean, min, max or count) differs from the one before.
pub(super) fn corner_points(points: &[MeanPoint]) -> Vec<MeanPoint> {
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
pub(super) fn step_line(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
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

/// Every k-th point, at most `max_points` of them plus the last.
pub(super) fn thin<T: Clone + PartialEq>(points: Vec<T>, max_points: usize) -> Vec<T> {
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

pub(super) fn refs(line: &LineRuns) -> Vec<RunRef> {
    line.runs.iter().map(|(r, _)| RunRef::of(r, r.best_score)).collect()
}

/// The runs' (common) rank budget.
pub(super) fn line_budget(line: &LineRuns) -> Option<f64> {
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
            curves.push(MeanCurve {
                method: line.method.clone(),
                label: line.label.clone(),
                points: corner_points(&mean),
                budget: line_budget(line),
                runs: refs(line),
            });
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
                loss.push(MeanCurve {
                    method: line.method.clone(),
                    label: line.label.clone(),
                    points,
                    budget: line_budget(line),
                    runs: refs(line),
                });
            }
            let evals: Vec<Vec<(f64, f64)>> = line
                .runs
                .iter()
                .map(|(_, rows)| {
                    merge_final_evaluation(&rows.iter().filter_map(|c| c.dev_metric.map(|v| (c.step, v * factor))).collect::<Vec<_>>())
                })
                .filter(|e| !e.is_empty())
                .collect();
            if !evals.is_empty() {
                dev.push(MeanCurve {
                    method: line.method.clone(),
                    label: line.label.clone(),
                    points: mean_over_runs(&evals),
                    budget: line_budget(line),
                    runs: refs(line),
                });
            }
        }
        if !loss.is_empty() || !dev.is_empty() {
            let unit = if factor == 100.0 || crate::report::scores_in_percent(task) { " (%)" } else { "" };
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
pub(super) fn budget_lines(curves: &[MeanCurve]) -> Vec<(f64, RGBColor, String)> {
    let mut budgets: Vec<f64> = curves.iter().filter_map(|c| c.budget).collect();
    budgets.sort_by(f64::total_cmp);
    budgets.dedup_by(|a, b| crate::report::same_budget(*a, *b));
    budgets
        .iter()
        .map(|&b| {
            let owners: Vec<&MeanCurve> = curves.iter().filter(|c| c.budget.is_some_and(|x| crate::report::same_budget(x, b))).collect();
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
pub(super) fn curve_legend(curves: &[&MeanCurve], budgets: &[(f64, RGBColor, String)], markers: bool) -> Vec<LegendItem> {
    let mut items: Vec<LegendItem> = Vec::new();
    for c in curves {
        if !items.iter().any(|i| i.label == c.label) {
            items.push(LegendItem {
                label: c.label.clone(),
                color: method_color(&c.method),
                dash: line_dash(&c.method, 0),
                marker: markers.then(|| marker_shape(&c.method, 0)),
            });
        }
    }
    items.extend(budgets.iter().map(|(_, color, label)| LegendItem {
        label: label.clone(),
        color: *color,
        dash: Some(BUDGET_DASH),
        marker: None,
    }));
    items
}

/// How a panel of step curves is drawn.
pub(super) struct StepPanel<'a> {
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
pub(super) fn draw_step_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: &StepPanel) -> Result<()> {
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
    // Lines in figure order: the first method's solid line at the bottom, the others dashed
    // over it (`line_dash`), so that identical lines all show; then the markers.
    for c in p.curves.iter() {
        draw_line(&mut chart, shape(c.means()), line_dash(&c.method, 0), method_color(&c.method).stroke_width(2))?;
    }
    if p.markers {
        for c in p.curves.iter().rev() {
            draw_markers(&mut chart, &c.means(), marker_shape(&c.method, 0), method_color(&c.method), 3)?;
        }
    }
    // Budget lines last and thin, so that lines that reach the budget stay visible under them.
    for (b, color, _) in p.budgets {
        draw_line(&mut chart, vec![(0.0, *b), (x_hi * 1.02, *b)], Some(BUDGET_DASH), color.stroke_width(1))?;
    }
    Ok(())
}

/// The subtitle's account of the lines: runs per line and how the setting was chosen.
pub(super) fn lines_note(curves: &[&MeanCurve], chosen: bool) -> String {
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

pub(super) fn budget_words(task: &str, budget: Option<f64>) -> String {
    match budget {
        Some(b) => format!("{}, rank budget {}", task_label(task), short_number(b)),
        None => task_label(task),
    }
}

/// The rows of a step figure's `.csv` (one per point) and `.runs.csv` (one per run).
pub(super) fn curve_sidecars(task: &str, panels: &[(&str, &[MeanCurve])]) -> Vec<Sidecar> {
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
        let dashed = if budgets.is_empty() { "" } else { "; thin dashed: rank budget" };
        crate::report::draw_title(
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
        // The dev panel marks its evaluations: so does the legend.
        let legend = curve_legend(&curves, &[], !self.dev.is_empty());
        let (top, rest) = root.split_vertically(TITLE_H);
        let smooth = if self.window > 1 { format!("; loss: moving mean over {} steps", self.window) } else { String::new() };
        crate::report::draw_title(
            &top,
            &format!("{}: training loss and dev {}", budget_words(&self.task, self.budget), self.dev_words),
            Some(&format!("{}{smooth}", lines_note(&curves, self.chosen))),
        )?;
        let (legend_area, body) = rest.split_vertically(legend_height(&legend, self.size.0));
        draw_legend(&legend_area, &legend)?;
        let panel =
            |curves, x_desc, y_desc, markers| StepPanel { curves, x_desc, y_desc, markers, integer_y: false, steps: false, budgets: &[] };
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
