//! `triadapt heatmap`: the final rank of every adapted matrix (the paper's Figure 2).
//!
//! One panel per method, stacked: x = encoder layer (1 = `deberta.encoder.layer.0`), y = the six
//! adapted matrices (Wq, Wk, Wv: attention query/key/value projections; Wo: attention output;
//! Wf1, Wf2: the feed-forward `intermediate.dense` and `output.dense`), each cell coloured by the
//! run's final rank (one colour scale shared by all panels, Viridis, with a colour bar) and the
//! rank written in it. A matrix the run did not adapt is a grey cell marked "–".
//!
//! Runs used: finished rows of the task whose folder holds a non-empty `rank_pattern.json` (full
//! fine-tuning has none). Where a method has several such runs (seeds, swept values), its panel
//! shows the one with the highest `best_score`, ties broken by the lowest seed
//! (`super::representative`); the caption names the run. Panel order: TriAdaptLoRA, AdaLoRA,
//! IncreLoRA, LoRA, then other methods by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{font, method_label, metric_words, render, representative, task_label, Figure, PlotResult, RunRecord, Runs};

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
    /// `ranks[layer][matrix]`, None where the matrix is not adapted.
    pub ranks: Vec<Vec<Option<i64>>>,
}

impl Panel {
    pub fn total_rank(&self) -> i64 {
        self.ranks.iter().flatten().flatten().sum()
    }
}

/// One task's figure.
#[derive(Debug, Clone)]
pub struct Heatmap {
    pub task: String,
    pub main_metric: Option<String>,
    pub layers: usize,
    /// Matrix short names, the columns of `Panel::ranks`.
    pub matrices: Vec<String>,
    pub panels: Vec<Panel>,
    /// The shared colour scale.
    pub min: i64,
    pub max: i64,
}

const TITLE_H: u32 = 70;
const CAPTION_H: u32 = 34;
const XAXIS_H: u32 = 58;
const LEFT: u32 = 110;
const CELL_H: u32 = 36;
const MIN_CELL_W: u32 = 54;
const MIN_GRID_W: u32 = 640;
const BAR_GAP: u32 = 30;
const BAR_AREA: u32 = 130;
const BAR_W: u32 = 24;
const BOTTOM: u32 = 10;

/// The pixel size of a heatmap: width = 110 + layers * cell + 160 with cell = max(54, 640 /
/// layers) pixels (integer division); height = 70 + panels * (34 + 36 * matrices + 58) + 10. DeBERTaV3-base with
/// three methods: 918 x 1004.
pub fn figure_size(panels: usize, layers: usize, matrices: usize) -> (u32, u32) {
    let cell_w = cell_width(layers);
    let w = LEFT + layers as u32 * cell_w + BAR_GAP + BAR_AREA;
    let h = TITLE_H + panels as u32 * panel_height(matrices) + BOTTOM;
    (w, h)
}

fn cell_width(layers: usize) -> u32 {
    MIN_CELL_W.max(MIN_GRID_W / layers.max(1) as u32)
}

fn panel_height(matrices: usize) -> u32 {
    CAPTION_H + CELL_H * matrices as u32 + XAXIS_H
}

fn panel_order(method: &str) -> (usize, String) {
    let i = ["triadapt", "adalora", "increlora", "lora"].iter().position(|m| *m == method).unwrap_or(4);
    (i, method.to_string())
}

/// Builds one heatmap per task (only `task` when given) from the runs' rank patterns.
pub fn build(runs: &Runs, task: Option<&str>) -> Result<Vec<Heatmap>> {
    let records = runs.records()?;
    let tasks = runs.tasks()?;
    let tasks: Vec<String> = match task {
        Some(t) => {
            if !tasks.iter().any(|x| x == t) {
                bail!("{}: no finished run of task {t:?} (tasks: {})", runs.dir.display(), tasks.join(", "));
            }
            vec![t.to_string()]
        }
        None => tasks,
    };
    let mut out = Vec::new();
    for t in &tasks {
        // Runs of this task with a usable rank pattern, by method.
        let mut by_method: BTreeMap<String, Vec<(&RunRecord, Cells)>> = BTreeMap::new();
        for r in records.iter().filter(|r| &r.task == t) {
            let Some(dir) = &r.run_dir else { continue };
            let path = dir.join("rank_pattern.json");
            if !path.is_file() {
                continue;
            }
            let pattern = read_rank_pattern(&path)?;
            let cells: Cells =
                pattern.iter().filter_map(|(k, v)| parse_module(k).map(|(l, m)| ((l, m), *v))).collect();
            if cells.is_empty() {
                continue;
            }
            by_method.entry(r.method.clone()).or_default().push((r, cells));
        }
        if by_method.is_empty() {
            if task.is_some() {
                bail!("{}: no finished {t} run has a non-empty rank_pattern.json in its run_dir", runs.dir.display());
            }
            continue;
        }
        let mut methods: Vec<String> = by_method.keys().cloned().collect();
        methods.sort_by_key(|m| panel_order(m));
        let mut chosen = Vec::new();
        for m in &methods {
            let list = &by_method[m];
            let recs: Vec<&RunRecord> = list.iter().map(|(r, _)| *r).collect();
            let rep = representative(&recs).expect("non-empty");
            let cells = &list.iter().find(|(r, _)| std::ptr::eq(*r, rep)).expect("chosen run").1;
            chosen.push((rep, cells));
        }
        let layers = chosen.iter().flat_map(|(_, c)| c.keys().map(|(l, _)| l + 1)).max().unwrap_or(0);
        let mut suffixes: Vec<String> = MATRICES.iter().map(|(s, _)| s.to_string()).collect();
        for (_, cells) in &chosen {
            for (_, m) in cells.keys() {
                if !suffixes.contains(m) {
                    suffixes.push(m.clone());
                }
            }
        }
        let panels: Vec<Panel> = chosen
            .iter()
            .map(|(r, cells)| Panel {
                method: r.method.clone(),
                run_id: r.run_id.clone(),
                seed: r.seed,
                best_score: r.best_score,
                ranks: (0..layers).map(|l| suffixes.iter().map(|m| cells.get(&(l, m.clone())).copied()).collect()).collect(),
            })
            .collect();
        let values: Vec<i64> = panels.iter().flat_map(|p| p.ranks.iter().flatten().flatten().copied()).collect();
        let main_metric = chosen.iter().find_map(|(r, _)| r.main_metric.clone());
        out.push(Heatmap {
            task: t.clone(),
            main_metric,
            layers,
            matrices: suffixes.iter().map(|s| short_name(s)).collect(),
            min: values.iter().copied().min().unwrap_or(0),
            max: values.iter().copied().max().unwrap_or(0),
            panels,
        });
    }
    if out.is_empty() {
        bail!(
            "{}: no finished run has a non-empty rank_pattern.json in its run_dir (full fine-tuning has no ranks)",
            runs.dir.display()
        );
    }
    Ok(out)
}

/// `triadapt heatmap`: writes `<out>/<results name>/heatmap_<task>.{png,svg}` for every task
/// (or only `task`) and returns the files written.
pub fn run(results: &Path, out: &Path, task: Option<&str>) -> Result<Vec<PathBuf>> {
    let runs = Runs::load(results)?;
    let dir = super::figure_dir(out, &runs);
    let mut files = Vec::new();
    for h in build(&runs, task)? {
        files.extend(render(&h, &dir.join(format!("heatmap_{}", super::file_safe(&h.task))))?);
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
}

/// Colour-bar ticks: the ends and the multiples of a step giving at most about 10 ticks, leaving
/// out multiples closer than half a step to an end.
pub fn bar_ticks(min: i64, max: i64) -> Vec<i64> {
    if max <= min {
        return vec![min];
    }
    let span = max - min;
    let step = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000].into_iter().find(|s| span / s <= 10).unwrap_or(span.div_euclid(10).max(1));
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
        figure_size(self.panels.len(), self.layers, self.matrices.len())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (width, height) = self.size();
        let centre = Pos::new(HPos::Center, VPos::Center);
        let missing = self.panels.iter().any(|p| p.ranks.iter().flatten().any(Option::is_none));
        let title = format!("{}: final rank of each adapted matrix", task_label(&self.task));
        let mut sub = "one run per method (highest best dev score); one colour scale for all panels".to_string();
        if missing {
            sub.push_str("; grey: not adapted");
        }
        let (top, _) = root.split_vertically(TITLE_H);
        super::draw_title(&top, &title, Some(&sub))?;

        let cell_w = cell_width(self.layers) as i32;
        let cell_h = CELL_H as i32;
        let left = LEFT as i32;
        let m = self.matrices.len() as i32;
        let value_font = font(if cell_w >= 40 { 15.0 } else { 12.0 });
        for (p, panel) in self.panels.iter().enumerate() {
            let y0 = (TITLE_H + p as u32 * panel_height(self.matrices.len())) as i32;
            // Caption: task, method and the run shown.
            let mut caption = format!("{} · {}", task_label(&self.task), method_label(&panel.method));
            let mut details = vec![format!("run {}", panel.run_id)];
            if let Some(s) = panel.seed {
                details.push(format!("seed {s}"));
            }
            if let Some(b) = panel.best_score {
                details.push(format!("dev {} {:.2}%", metric_words("best_score", &self.task, self.main_metric.as_deref()), b * 100.0));
            }
            details.push(format!("total rank {}", panel.total_rank()));
            caption.push_str(&format!("  ({})", details.join(", ")));
            // The largest size (16 down to 10) at which the caption fits the figure's width.
            let room = width.saturating_sub(LEFT + 10);
            let mut size = 16.0;
            while size > 10.0 && root.estimate_text_size(&caption, &font(size)).map(|(w, _)| w > room).unwrap_or(false) {
                size -= 1.0;
            }
            root.draw(&Text::new(caption, (left, y0 + CAPTION_H as i32 / 2), font(size).pos(Pos::new(HPos::Left, VPos::Center))))
                .plot()?;
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
                    root.draw(&Text::new(label, (x + cell_w / 2, y + cell_h / 2), value_font.clone().color(&ink).pos(centre))).plot()?;
                }
            }
            root.draw(&Rectangle::new(
                [(left - 1, gy - 1), (left + self.layers as i32 * cell_w, gy + m * cell_h)],
                BLACK.stroke_width(1),
            ))
            .plot()?;
            // Axes: matrix names on the left, layer indices below.
            for (j, name) in self.matrices.iter().enumerate() {
                let y = gy + j as i32 * cell_h + cell_h / 2;
                root.draw(&Text::new(name.clone(), (left - 8, y), font(15.0).pos(Pos::new(HPos::Right, VPos::Center)))).plot()?;
            }
            root.draw(&Text::new(
                "weight matrix".to_string(),
                (24, gy + m * cell_h / 2),
                font(15.0).transform(FontTransform::Rotate270).pos(centre),
            ))
            .plot()?;
            let ay = gy + m * cell_h;
            for l in 0..self.layers {
                let x = left + l as i32 * cell_w + cell_w / 2;
                root.draw(&Text::new(format!("{}", l + 1), (x, ay + 14), font(14.0).pos(centre))).plot()?;
            }
            root.draw(&Text::new(
                "layer index (1 = first encoder layer)".to_string(),
                (left + self.layers as i32 * cell_w / 2, ay + 40),
                font(15.0).pos(centre),
            ))
            .plot()?;
        }

        // Colour bar spanning the panels' grids.
        let bx = left + self.layers as i32 * cell_w + BAR_GAP as i32;
        let by0 = (TITLE_H + CAPTION_H) as i32;
        let by1 = height as i32 - (BOTTOM + XAXIS_H) as i32;
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
