//! `triadapt heatmap`: the final rank of every adapted matrix (the paper's Figure 2).
//!
//! One figure per task and rank budget (`heatmap_<task>_budget<B>`), one panel per method,
//! stacked: x = encoder layer (1 = `deberta.encoder.layer.0`), y = the six adapted matrices (Wq,
//! Wk, Wv: attention query/key/value projections; Wo: attention output; Wf1, Wf2: the
//! feed-forward `intermediate.dense` and `output.dense`), each cell coloured by the run's final
//! rank (one colour scale shared by the figure's panels, Viridis, with a colour bar) and the rank
//! written in it. A matrix the run did not adapt is a grey cell marked "–".
//!
//! Runs used: finished rows of the task whose folder holds a non-empty `rank_pattern.json` (full
//! fine-tuning has none), grouped by rank budget (`super::run_budget`: the run's `rank_budget`,
//! else its total rank, LoRA's fixed budget), so a figure never sets methods at different
//! budgets side by side. Where a method has several runs at a budget (seeds, other swept values),
//! its panel shows the one with the highest `best_score`, ties broken by the lowest seed
//! (`super::representative`). Panel order: `super::figure_rank` (TriAdaptLoRA first). Captions
//! name the method, its dev score and total rank; the run shown (id, seed, folder) is in the
//! sidecar `heatmap_<task>_budget<B>.runs.csv`, the cells in `heatmap_<task>_budget<B>.csv`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{
    cell, figure_rank, font, method_label, metric_words, opt_cell, render, representative, task_label, Figure, PlotResult, RunRecord, Runs,
    Sidecar,
};

/// The six matrices of a DeBERTa layer that the paper adapts: module suffix and short name.
pub const MATRICES: [(&str, &str); 6] = [
    ("attention.self.query_proj", "Wq"),
    ("attention.self.key_proj", "Wk"),
    ("attention.self.value_proj", "Wv"),
    ("attention.output.dense", "Wo"),
    ("intermediate.dense", "Wf1"),
    ("output.dense", "Wf2"),
];

/// Splits a module name such as `deberta.encoder.layer.3.attention.self.query_proj` into the
/// layer index (3) and the matrix suffix (`attention.self.query_proj`). None without `layer.<i>.`.
pub fn parse_module(name: &str) -> Option<(usize, String)> {
    let parts: Vec<&str> = name.split('.').collect();
    for i in 0..parts.len().saturating_sub(2) {
        if parts[i] == "layer" {
            if let Ok(layer) = parts[i + 1].parse::<usize>() {
                return Some((layer, parts[i + 2..].join(".")));
            }
        }
    }
    None
}

/// The short name of a matrix suffix (`intermediate.dense` -> `Wf1`); others unchanged.
pub fn short_name(suffix: &str) -> String {
    MATRICES.iter().find(|(s, _)| *s == suffix).map(|(_, n)| n.to_string()).unwrap_or_else(|| suffix.to_string())
}

/// Reads a `rank_pattern.json` (module name -> rank).
pub fn read_rank_pattern(path: &Path) -> Result<BTreeMap<String, i64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let Some(map) = value.as_object() else {
        bail!("{}: expected an object of module name -> rank", path.display());
    };
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Some(r) = v.as_i64().or_else(|| v.as_f64().map(|f| f.round() as i64)) else {
            bail!("{}: the rank of {k:?} is not a number ({v})", path.display());
        };
        out.insert(k.clone(), r);
    }
    Ok(out)
}

/// Final ranks by (layer, matrix suffix).
type Cells = BTreeMap<(usize, String), i64>;

/// One method's panel.
#[derive(Debug, Clone)]
pub struct Panel {
    pub method: String,
    pub run_id: String,
    pub seed: Option<i64>,
    pub best_score: Option<f64>,
    /// The run's own `rank_budget` (None for LoRA).
    pub rank_budget: Option<f64>,
    pub run_dir: Option<PathBuf>,
    /// How many runs of the method were at this budget (the panel shows the best one).
    pub candidates: usize,
    /// `ranks[layer][matrix]`, None where the matrix is not adapted.
    pub ranks: Vec<Vec<Option<i64>>>,
}

impl Panel {
    pub fn total_rank(&self) -> i64 {
        self.ranks.iter().flatten().flatten().sum()
    }

    /// How many matrices the run adapted.
    pub fn adapted(&self) -> usize {
        self.ranks.iter().flatten().filter(|r| r.is_some()).count()
    }
}

/// One figure: a task at one rank budget.
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub task: String,
    /// The rank budget every panel's run was trained under.
    pub budget: f64,
    pub main_metric: Option<String>,
    pub layers: usize,
    /// Matrix suffixes (`attention.self.query_proj`, ...), the columns of `Panel::ranks`.
    pub modules: Vec<String>,
    /// Their short names (Wq, ...).
    pub matrices: Vec<String>,
    pub panels: Vec<Panel>,
    /// The shared colour scale.
    pub min: i64,
    pub max: i64,
    /// Cell width and height in pixels.
    pub cell: (u32, u32),
}

/// `triadapt heatmap` options.
#[derive(Debug, Clone, Default)]
pub struct HeatmapOptions {
    /// Only this task (default: every task with rank patterns).
    pub task: Option<String>,
    /// Only this rank budget (default: one figure per budget).
    pub budget: Option<f64>,
    pub size: super::FigureSize,
}

const TITLE_H: u32 = 70;
const CAPTION_H: u32 = 34;
/// Below each panel: the layer numbers.
const TICKS_H: u32 = 24;
/// Below the last panel: the layer axis's title (the panels share their x axis).
const AXIS_TITLE_H: u32 = 30;
const LEFT: u32 = 110;
const CELL_H: u32 = 36;
const MIN_CELL_W: u32 = 54;
const MIN_GRID_W: u32 = 640;
const BAR_GAP: u32 = 30;
const BAR_AREA: u32 = 130;
const BAR_W: u32 = 24;
const BOTTOM: u32 = 10;
/// The smallest cell that is still drawn.
const MIN_CELL: u32 = 6;

/// The default pixel size of a heatmap: width = 110 + layers * cell + 160 with cell = max(54,
/// 640 / layers) pixels (integer division); height = 70 + panels * (34 + 36 * matrices + 24) +
/// 30 + 10. DeBERTaV3-base with three methods: 918 x 932.
pub fn figure_size(panels: usize, layers: usize, matrices: usize) -> (u32, u32) {
    let w = LEFT + layers as u32 * default_cell_width(layers) + BAR_GAP + BAR_AREA;
    let h = TITLE_H + panels as u32 * (CAPTION_H + CELL_H * matrices as u32 + TICKS_H) + AXIS_TITLE_H + BOTTOM;
    (w, h)
}

fn default_cell_width(layers: usize) -> u32 {
    MIN_CELL_W.max(MIN_GRID_W / layers.max(1) as u32)
}

/// The cell size for a figure of `size` (`--width`/`--height`; None: the default cells), or an
/// error when the cells would be smaller than `MIN_CELL` pixels.
fn cell_size(size: &super::FigureSize, panels: usize, layers: usize, matrices: usize) -> Result<(u32, u32)> {
    let layers_n = layers.max(1) as u32;
    let rows = (panels * matrices).max(1) as u32;
    let w = match size.width {
        None => default_cell_width(layers),
        Some(w) => {
            let fixed = LEFT + BAR_GAP + BAR_AREA;
            let cell = w.saturating_sub(fixed) / layers_n;
            if cell < MIN_CELL {
                bail!("--width {w} leaves {cell} pixels per layer for {layers} layers: at least {}", fixed + MIN_CELL * layers_n);
            }
            cell
        }
    };
    let h = match size.height {
        None => CELL_H,
        Some(h) => {
            let fixed = TITLE_H + AXIS_TITLE_H + BOTTOM + panels as u32 * (CAPTION_H + TICKS_H);
            let cell = h.saturating_sub(fixed) / rows;
            if cell < MIN_CELL {
                bail!(
                    "--height {h} leaves {cell} pixels per matrix row for {panels} panels of {matrices} matrices: at least {}",
                    fixed + MIN_CELL * rows
                );
            }
            cell
        }
    };
    Ok((w, h))
}

/// Builds one heatmap per task (only `opts.task` when given) and rank budget (only
/// `opts.budget` when given) from the runs' rank patterns.
pub fn build(runs: &Runs, opts: &HeatmapOptions) -> Result<Vec<Heatmap>> {
    let records = runs.records()?;
    let tasks = runs.tasks()?;
    let tasks: Vec<String> = match &opts.task {
        Some(t) => {
            if !tasks.iter().any(|x| x == t) {
                bail!("{}: no finished run of task {t:?} (tasks: {})", runs.dir.display(), tasks.join(", "));
            }
            vec![t.clone()]
        }
        None => tasks,
    };
    let mut out = Vec::new();
    let mut seen: Vec<f64> = Vec::new();
    for t in &tasks {
        // Runs of this task with a usable rank pattern.
        let mut usable: Vec<(&RunRecord, Cells, f64)> = Vec::new();
        for r in records.iter().filter(|r| &r.task == t) {
            let Some(dir) = &r.run_dir else { continue };
            let path = dir.join("rank_pattern.json");
            if !path.is_file() {
                continue;
            }
            let pattern = read_rank_pattern(&path)?;
            let cells: Cells = pattern.iter().filter_map(|(k, v)| parse_module(k).map(|(l, m)| ((l, m), *v))).collect();
            if cells.is_empty() {
                continue;
            }
            // LoRA has no rank_budget: its budget is its (fixed) total rank.
            let budget = r.rank_budget.filter(|b| *b > 0.0).unwrap_or_else(|| cells.values().sum::<i64>() as f64);
            usable.push((r, cells, budget));
        }
        if usable.is_empty() {
            if opts.task.is_some() {
                bail!("{}: no finished {t} run has a non-empty rank_pattern.json in its run_dir", runs.dir.display());
            }
            continue;
        }
        let mut budgets: Vec<f64> = usable.iter().map(|u| u.2).collect();
        budgets.sort_by(f64::total_cmp);
        budgets.dedup_by(|a, b| super::same_budget(*a, *b));
        seen.extend(budgets.iter().copied());
        if let Some(b) = opts.budget {
            if !budgets.iter().any(|x| super::same_budget(*x, b)) {
                if opts.task.is_none() {
                    continue;
                }
                let have: Vec<String> = budgets.iter().map(|x| super::short_number(*x)).collect();
                bail!(
                    "--budget {}: no {t} run with a rank pattern has that rank budget (budgets: {})",
                    super::short_number(b),
                    have.join(", ")
                );
            }
            budgets = vec![b];
        }
        for budget in budgets {
            out.push(build_one(t, budget, usable.iter().filter(|u| super::same_budget(u.2, budget)), &opts.size)?);
        }
    }
    if out.is_empty() {
        match opts.budget {
            Some(b) => {
                seen.sort_by(f64::total_cmp);
                seen.dedup_by(|a, b| super::same_budget(*a, *b));
                let have: Vec<String> = seen.iter().map(|x| super::short_number(*x)).collect();
                bail!("--budget {}: no run with a rank pattern has that rank budget (budgets: {})", super::short_number(b), have.join(", "))
            }
            None => bail!(
                "{}: no finished run has a non-empty rank_pattern.json in its run_dir (full fine-tuning has no ranks)",
                runs.dir.display()
            ),
        }
    }
    Ok(out)
}

fn build_one<'a>(
    task: &str,
    budget: f64,
    runs: impl Iterator<Item = &'a (&'a RunRecord, Cells, f64)>,
    size: &super::FigureSize,
) -> Result<Heatmap> {
    let mut by_method: BTreeMap<String, Vec<&(&RunRecord, Cells, f64)>> = BTreeMap::new();
    for u in runs {
        by_method.entry(u.0.method.clone()).or_default().push(u);
    }
    let mut methods: Vec<String> = by_method.keys().cloned().collect();
    methods.sort_by_key(|m| figure_rank(m));
    let mut chosen = Vec::new();
    for m in &methods {
        let list = &by_method[m];
        let recs: Vec<&RunRecord> = list.iter().map(|u| u.0).collect();
        let rep = representative(&recs).expect("non-empty");
        let cells = &list.iter().find(|u| std::ptr::eq(u.0, rep)).expect("chosen run").1;
        chosen.push((rep, cells, list.len()));
    }
    let layers = chosen.iter().flat_map(|(_, c, _)| c.keys().map(|(l, _)| l + 1)).max().unwrap_or(0);
    let mut suffixes: Vec<String> = MATRICES.iter().map(|(s, _)| s.to_string()).collect();
    for (_, cells, _) in &chosen {
        for (_, m) in cells.keys() {
            if !suffixes.contains(m) {
                suffixes.push(m.clone());
            }
        }
    }
    let panels: Vec<Panel> = chosen
        .iter()
        .map(|(r, cells, n)| Panel {
            method: r.method.clone(),
            run_id: r.run_id.clone(),
            seed: r.seed,
            best_score: r.best_score,
            rank_budget: r.rank_budget,
            run_dir: r.run_dir.clone(),
            candidates: *n,
            ranks: (0..layers).map(|l| suffixes.iter().map(|m| cells.get(&(l, m.clone())).copied()).collect()).collect(),
        })
        .collect();
    let values: Vec<i64> = panels.iter().flat_map(|p| p.ranks.iter().flatten().flatten().copied()).collect();
    let main_metric = chosen.iter().find_map(|(r, _, _)| r.main_metric.clone());
    let cell = cell_size(size, panels.len(), layers, suffixes.len())?;
    Ok(Heatmap {
        task: task.to_string(),
        budget,
        main_metric,
        layers,
        matrices: suffixes.iter().map(|s| short_name(s)).collect(),
        modules: suffixes,
        min: values.iter().copied().min().unwrap_or(0),
        max: values.iter().copied().max().unwrap_or(0),
        panels,
        cell,
    })
}

/// The file stem of a heatmap: `heatmap_<task>_budget<B>`.
pub fn stem(h: &Heatmap) -> String {
    format!("heatmap_{}_{}", super::file_safe(&h.task), super::budget_stem(h.budget))
}

/// `triadapt heatmap`: writes `<out>/<results name>/heatmap_<task>_budget<B>.{png,svg,csv,runs.csv}`
/// for every task and budget (or only those asked for) and returns the files written.
pub fn run(results: &Path, out: &Path, opts: &HeatmapOptions) -> Result<Vec<PathBuf>> {
    opts.size.check()?;
    let runs = Runs::load(results)?;
    let dir = super::figure_dir(out, &runs);
    let mut files = Vec::new();
    for h in build(&runs, opts)? {
        files.extend(render(&h, &dir.join(stem(&h)), opts.size.scale)?);
    }
    Ok(files)
}

impl Heatmap {
    fn color(&self, v: i64) -> RGBColor {
        let (lo, hi) = (self.min as f32, self.max as f32);
        if hi <= lo {
            return ViridisRGB.get_color(0.5);
        }
        ViridisRGB.get_color_normalized(v as f32, lo, hi)
    }

    fn panel_height(&self) -> u32 {
        CAPTION_H + self.cell.1 * self.matrices.len() as u32 + TICKS_H
    }

    /// The average rank per adapted matrix the budget allows (budget / matrices adapted).
    pub fn per_matrix(&self) -> Option<f64> {
        let n = self.panels.iter().map(Panel::adapted).max().unwrap_or(0);
        (n > 0).then(|| self.budget / n as f64)
    }

    /// The figure's title: task and budget.
    pub fn title(&self) -> String {
        let per =
            self.per_matrix().map(|p| format!(" ({} per matrix)", super::short_number((p * 100.0).round() / 100.0))).unwrap_or_default();
        format!("{}, rank budget {}{per}: final rank of each adapted matrix", task_label(&self.task), super::short_number(self.budget))
    }

    /// A panel's caption: the method, its dev score and total rank (the run's id and seed are
    /// in the `.runs.csv` sidecar).
    pub fn caption(&self, panel: &Panel) -> String {
        let mut details = Vec::new();
        if let Some(b) = panel.best_score {
            let factor = super::percent_factor(self.main_metric.as_deref().unwrap_or("best_score"), &self.task);
            let unit = if factor == 100.0 || super::scores_in_percent(&self.task) { "%" } else { "" };
            details.push(format!("dev {} {:.2}{unit}", metric_words("best_score", &self.task, self.main_metric.as_deref()), b * factor));
        }
        details.push(format!("total rank {}", panel.total_rank()));
        format!("{} ({})", method_label(&panel.method), details.join(", "))
    }

    /// A shorter caption for narrow figures: `IncreLoRA: dev 99.50%, rank 48`.
    fn short_caption(&self, panel: &Panel) -> String {
        let mut s = format!("{}:", method_label(&panel.method));
        if let Some(b) = panel.best_score {
            let factor = super::percent_factor(self.main_metric.as_deref().unwrap_or("best_score"), &self.task);
            let unit = if factor == 100.0 || super::scores_in_percent(&self.task) { "%" } else { "" };
            s.push_str(&format!(" dev {:.2}{unit},", b * factor));
        }
        s.push_str(&format!(" rank {}", panel.total_rank()));
        s
    }
}
/// Colour-bar ticks: the ends and the multiples of a step giving at most about 10 ticks, leaving
/// out multiples closer than half a step to an end.
pub fn bar_ticks(min: i64, max: i64) -> Vec<i64> {
    if max <= min {
        return vec![min];
    }
    let span = max - min;
    let step =
        [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000].into_iter().find(|s| span / s <= 10).unwrap_or(span.div_euclid(10).max(1));
    let mut out = vec![min];
    let mut v = min.div_euclid(step) * step + step;
    while v < max {
        if 2 * (v - min) >= step && 2 * (max - v) >= step {
            out.push(v);
        }
        v += step;
    }
    out.push(max);
    out
}

fn text_color_on(c: &RGBColor) -> RGBColor {
    let luminance = 0.299 * c.0 as f64 + 0.587 * c.1 as f64 + 0.114 * c.2 as f64;
    if luminance > 140.0 {
        BLACK
    } else {
        WHITE
    }
}

impl Figure for Heatmap {
    fn size(&self) -> (u32, u32) {
        let w = LEFT + self.layers as u32 * self.cell.0 + BAR_GAP + BAR_AREA;
        let h = TITLE_H + self.panels.len() as u32 * self.panel_height() + AXIS_TITLE_H + BOTTOM;
        (w, h)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (width, height) = self.size();
        let centre = Pos::new(HPos::Center, VPos::Center);
        let missing = self.panels.iter().any(|p| p.ranks.iter().flatten().any(Option::is_none));
        let several = self.panels.iter().any(|p| p.candidates > 1);
        let mut sub = if several { "per method its run with the highest dev score" } else { "one run per method" }.to_string();
        sub.push_str("; one colour scale for all panels");
        if missing {
            sub.push_str("; grey: not adapted");
        }
        let (top, _) = root.split_vertically(TITLE_H);
        super::draw_title(&top, &self.title(), Some(&sub))?;

        let (cell_w, cell_h) = (self.cell.0 as i32, self.cell.1 as i32);
        let left = LEFT as i32;
        let m = self.matrices.len() as i32;
        // The rank in each cell: the largest size up to 15 at which "88" fits the cell; none
        // when the cells are too small for 7 pixels.
        let widest = if self.max >= 100 { "888" } else { "88" };
        let mut value_size = 15.0f64.min(cell_h as f64 * 0.7);
        while value_size >= 7.0 && super::canvas::text_width(widest, value_size) > (cell_w - 4) as f64 {
            value_size -= 1.0;
        }
        let value_font = (value_size >= 7.0).then(|| font(value_size));
        // Layer ticks: every k-th layer, k so that the numbers do not touch.
        let label_w = super::canvas::text_width(&self.layers.to_string(), 14.0) + 8.0;
        let every = ((label_w / cell_w as f64).ceil() as usize).max(1);
        let name_size = 15.0f64.min(cell_h as f64 * 0.8).max(8.0);
        let grid_w = self.layers as i32 * cell_w;
        // Captions end before the colour bar; the axis titles take the longest form that fits.
        let caption_room = (grid_w + BAR_GAP as i32 - 8) as f64;
        let first_fit = |options: &[&'static str], room: f64| -> &'static str {
            options.iter().copied().find(|t| super::canvas::text_width(t, 15.0) <= room).unwrap_or(options[options.len() - 1])
        };
        let matrix_title = first_fit(&["weight matrix", "matrix"], (m * cell_h + CAPTION_H as i32 / 2) as f64);
        let layer_title = first_fit(
            &["layer index (1 = first encoder layer)", "layer index (1 = first)", "layer"],
            (grid_w + 2 * (BAR_GAP as i32 - 6)) as f64,
        );
        for (p, panel) in self.panels.iter().enumerate() {
            let y0 = (TITLE_H + p as u32 * self.panel_height()) as i32;
            let mut caption = self.caption(panel);
            if super::canvas::text_width(&caption, 11.0) > caption_room {
                caption = self.short_caption(panel);
            }
            // Too long for the grid's width even short and small: start it at the figure's edge.
            let (x, room) = if super::canvas::text_width(&caption, 9.0) > caption_room {
                (12, caption_room + (LEFT - 12) as f64)
            } else {
                (left, caption_room)
            };
            let size = super::fitting_size(&caption, 16.0, 8.0, room);
            root.draw(&Text::new(caption, (x, y0 + CAPTION_H as i32 / 2), font(size).pos(Pos::new(HPos::Left, VPos::Center)))).plot()?;
            let gy = y0 + CAPTION_H as i32;
            // Cells: row 0 is the first matrix (Wq) at the top.
            for (l, row) in panel.ranks.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    let x = left + l as i32 * cell_w;
                    let y = gy + j as i32 * cell_h;
                    let (fill, label, ink) = match v {
                        Some(r) => {
                            let c = self.color(*r);
                            (c, r.to_string(), text_color_on(&c))
                        }
                        None => (RGBColor(236, 236, 236), "–".to_string(), RGBColor(120, 120, 120)),
                    };
                    root.draw(&Rectangle::new([(x, y), (x + cell_w - 1, y + cell_h - 1)], fill.filled())).plot()?;
                    if let Some(f) = &value_font {
                        root.draw(&Text::new(label, (x + cell_w / 2, y + cell_h / 2), f.clone().color(&ink).pos(centre))).plot()?;
                    }
                }
            }
            root.draw(&Rectangle::new([(left - 1, gy - 1), (left + self.layers as i32 * cell_w, gy + m * cell_h)], BLACK.stroke_width(1)))
                .plot()?;
            // Axes: matrix names on the left, layer indices below.
            for (j, name) in self.matrices.iter().enumerate() {
                let y = gy + j as i32 * cell_h + cell_h / 2;
                root.draw(&Text::new(name.clone(), (left - 8, y), font(name_size).pos(Pos::new(HPos::Right, VPos::Center)))).plot()?;
            }
            root.draw(&Text::new(
                matrix_title.to_string(),
                (24, gy + m * cell_h / 2),
                font(15.0).transform(FontTransform::Rotate270).pos(centre),
            ))
            .plot()?;
            let ay = gy + m * cell_h;
            for l in (0..self.layers).filter(|l| l % every == 0) {
                let x = left + l as i32 * cell_w + cell_w / 2;
                root.draw(&Text::new(format!("{}", l + 1), (x, ay + TICKS_H as i32 / 2), font(14.0).pos(centre))).plot()?;
            }
        }
        let ay = (TITLE_H + self.panels.len() as u32 * self.panel_height()) as i32;
        root.draw(&Text::new(layer_title.to_string(), (left + grid_w / 2, ay + AXIS_TITLE_H as i32 / 2), font(15.0).pos(centre))).plot()?;

        // Colour bar spanning the panels' grids.
        let bx = left + self.layers as i32 * cell_w + BAR_GAP as i32;
        let by0 = (TITLE_H + CAPTION_H) as i32;
        let by1 = height as i32 - (BOTTOM + AXIS_TITLE_H + TICKS_H) as i32;
        let steps = (by1 - by0).max(1);
        for i in 0..steps {
            let frac = 1.0 - (i as f64 + 0.5) / steps as f64;
            let v = self.min as f64 + frac * (self.max - self.min) as f64;
            let c = if self.max > self.min {
                ViridisRGB.get_color_normalized(v as f32, self.min as f32, self.max as f32)
            } else {
                ViridisRGB.get_color(0.5)
            };
            root.draw(&Rectangle::new([(bx, by0 + i), (bx + BAR_W as i32, by0 + i + 1)], c.filled())).plot()?;
        }
        root.draw(&Rectangle::new([(bx, by0), (bx + BAR_W as i32, by1)], BLACK.stroke_width(1))).plot()?;
        let span = (self.max - self.min).max(0);
        let y_of = |v: i64| -> i32 {
            if self.max > self.min {
                by1 - ((v - self.min) as f64 / span as f64 * (by1 - by0) as f64).round() as i32
            } else {
                (by0 + by1) / 2
            }
        };
        for v in bar_ticks(self.min, self.max) {
            let y = y_of(v);
            root.draw(&PathElement::new(vec![(bx + BAR_W as i32, y), (bx + BAR_W as i32 + 5, y)], BLACK.stroke_width(1))).plot()?;
            root.draw(&Text::new(v.to_string(), (bx + BAR_W as i32 + 9, y), font(14.0).pos(Pos::new(HPos::Left, VPos::Center)))).plot()?;
        }
        root.draw(&Text::new(
            "final rank".to_string(),
            ((width as i32 - 22).max(bx + BAR_W as i32 + 50), (by0 + by1) / 2),
            font(15.0).transform(FontTransform::Rotate270).pos(centre),
        ))
        .plot()?;
        Ok(())
    }

    /// `.csv`: one row per panel and cell (`rank` empty where the matrix is not adapted);
    /// `.runs.csv`: the run each panel shows.
    fn sidecars(&self) -> Vec<Sidecar> {
        let mut cells = Sidecar::new(".csv", &["task", "rank_budget", "method", "layer", "matrix", "module", "rank"]);
        let mut runs = Sidecar::new(
            ".runs.csv",
            &["task", "rank_budget", "method", "run_id", "seed", "best_score", "total_rank", "runs_at_budget", "run_dir"],
        );
        for p in &self.panels {
            for (l, row) in p.ranks.iter().enumerate() {
                for (j, r) in row.iter().enumerate() {
                    cells.rows.push(vec![
                        self.task.clone(),
                        cell(self.budget),
                        p.method.clone(),
                        (l + 1).to_string(),
                        self.matrices[j].clone(),
                        self.modules[j].clone(),
                        r.map(|r| r.to_string()).unwrap_or_default(),
                    ]);
                }
            }
            runs.rows.push(vec![
                self.task.clone(),
                cell(self.budget),
                p.method.clone(),
                p.run_id.clone(),
                p.seed.map(|s| s.to_string()).unwrap_or_default(),
                opt_cell(p.best_score),
                p.total_rank().to_string(),
                p.candidates.to_string(),
                p.run_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default(),
            ]);
        }
        vec![cells, runs]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_split_into_layer_and_matrix() {
        assert_eq!(parse_module("deberta.encoder.layer.3.attention.self.query_proj"), Some((3, "attention.self.query_proj".into())));
        assert_eq!(parse_module("deberta.encoder.layer.11.output.dense"), Some((11, "output.dense".into())));
        assert_eq!(parse_module("classifier"), None);
        assert_eq!(short_name("intermediate.dense"), "Wf1");
        assert_eq!(short_name("attention.output.dense"), "Wo");
        assert_eq!(short_name("something.else"), "something.else");
    }

    #[test]
    fn colour_bar_ticks() {
        assert_eq!(bar_ticks(0, 5), [0, 1, 2, 3, 4, 5]);
        assert_eq!(bar_ticks(0, 17), [0, 2, 4, 6, 8, 10, 12, 14, 16, 17]);
        assert_eq!(bar_ticks(1, 24), [1, 5, 10, 15, 20, 24]);
        assert_eq!(bar_ticks(3, 3), [3]);
    }
}
