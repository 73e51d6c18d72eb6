//! Drawing pieces the plot figures share: the legend (rows that wrap to the figure's width),
//! markers, tick counts, padded axis ranges and the y-axis description.

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::*;

pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

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

pub(super) const LEGEND_ROW: u32 = 24;
pub(super) const LEGEND_FONT: f64 = 15.0;
pub(super) const SAMPLE_W: i32 = 28;
pub(super) const ITEM_GAP: f64 = 22.0;

pub(super) fn item_width(item: &LegendItem) -> f64 {
    SAMPLE_W as f64 + 6.0 + crate::report::canvas::text_width(&item.label, LEGEND_FONT)
}

/// The legend's rows for a figure `width` pixels wide: items in order, a new row when the
/// next would not fit.
pub(super) fn legend_rows(items: &[LegendItem], width: u32) -> Vec<Vec<&LegendItem>> {
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
pub(super) fn legend_height(items: &[LegendItem], width: u32) -> u32 {
    match legend_rows(items, width).len() {
        0 => 0,
        n => n as u32 * LEGEND_ROW + 6,
    }
}

/// The one legend of a figure, drawn as a strip of centred rows between the title and the
/// plot (never over the data): every curve figure uses it, in figure order.
pub(super) fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, items: &[LegendItem]) -> Result<()> {
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
            x = (text_x as f64 + crate::report::canvas::text_width(&item.label, LEGEND_FONT) + ITEM_GAP).round() as i32;
        }
    }
    Ok(())
}

/// A marker at a pixel position: circles for a method's first line, then triangles, crosses,
/// rings (the same shapes as `draw_markers`).
pub(super) fn draw_marker_at<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, p: (i32, i32), variant: usize, color: RGBColor, size: i32) -> Result<()> {
    match variant % 4 {
        0 => area.draw(&Circle::new(p, size, color.filled())).plot()?,
        1 => area.draw(&TriangleMarker::new(p, size + 1, color.filled())).plot()?,
        2 => area.draw(&Cross::new(p, size, color.stroke_width(2))).plot()?,
        _ => area.draw(&Circle::new(p, size, color.stroke_width(2))).plot()?,
    }
    Ok(())
}

/// Markers of a line: circles for a method's first line, then triangles, crosses, rings.
pub(super) fn draw_markers<'a, DB: DrawingBackend + 'a>(chart: &mut Chart<'a, DB>, points: &[(f64, f64)], variant: usize, color: RGBColor, size: i32) -> Result<()> {
    match variant % 4 {
        0 => chart.draw_series(points.iter().map(|&p| Circle::new(p, size, color.filled()))).plot()?,
        1 => chart.draw_series(points.iter().map(|&p| TriangleMarker::new(p, size + 1, color.filled()))).plot()?,
        2 => chart.draw_series(points.iter().map(|&p| Cross::new(p, size, color.stroke_width(2)))).plot()?,
        _ => chart.draw_series(points.iter().map(|&p| Circle::new(p, size, color.stroke_width(2)))).plot()?,
    };
    Ok(())
}

/// How many tick labels fit `pixels` at about `spacing` pixels apart (2 to 10).
pub(super) fn tick_count(pixels: u32, spacing: u32) -> usize {
    ((pixels / spacing.max(1)) as usize).clamp(2, 10)
}

/// A y axis's description that fits `room` pixels: the first of `options` that fits at 17
/// pixels, else at a smaller size (down to 11), else the last option at 11.
pub(super) fn y_description(options: &[&str], room: f64) -> (String, f64) {
    for size in [17.0, 15.0, 13.0, 11.0] {
        if let Some(t) = options.iter().find(|t| crate::report::canvas::text_width(t, size) <= room) {
            return (t.to_string(), size);
        }
    }
    (options[options.len() - 1].to_string(), 11.0)
}

/// Draws the y axis's description left of the chart's plot, centred on it: `desc`, or its
/// short form (`short_description`), in the largest size that fits the plot's height (plotters'
/// own would overflow a short panel and shrinks the x axis's description with it).
pub(super) fn draw_y_desc<'a, DB: DrawingBackend + 'a>(area: &DrawingArea<DB, Shift>, chart: &Chart<'a, DB>, desc: &str) -> Result<()> {
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
pub(super) fn short_description(d: &str) -> String {
    match d.find(" (") {
        Some(i) if !d[i..].starts_with(" (%)") => d[..i].to_string(),
        _ => d.to_string(),
    }
}

pub(super) fn padded(lo: f64, hi: f64, frac: f64) -> (f64, f64) {
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
