//! Writing a figure: the [`Figure`] trait every figure implements, the size options, the PNG
//! and SVG files with the CSV sidecars beside them, and the title every figure draws.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::canvas;
use super::runs::Runs;
use super::style::{ensure_fonts, fitting_size, font};

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
