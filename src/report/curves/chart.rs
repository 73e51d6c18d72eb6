//! Drawing pieces the plot figures share: the legend (rows that wrap to the figure's width),
//! markers, tick counts, padded axis ranges and the y-axis description.

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::*;

pub(super) type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// One legend entry: a line sample in the series' colour and dash pattern, with the line's
/// marker where it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct LegendItem {
    pub label: String,
    pub color: RGBColor,
    /// The line's dashes (dash, gap in pixels); None: solid.
    pub dash: Option<(i32, i32)>,
    /// The marker shape (see `marker_shape`), None for lines without markers.
    pub marker: Option<usize>,
}

/// Dash patterns (dash, gap in pixels) of method lines: the first method's line solid, the
/// others dashed alike in every figure, so that a line drawn over an identical one leaves it
/// visible in its gaps.
const LINE_DASHES: [Option<(i32, i32)>; 5] = [None, Some((10, 5)), Some((4, 4)), Some((16, 6)), Some((2, 3))];

/// The dash pattern of the rank-budget lines.
pub(super) const BUDGET_DASH: (i32, i32) = (8, 5);

/// How many marker shapes there are: filled circle, square, triangle, diamond, inverted
/// triangle, and a cross.
pub const MARKER_SHAPES: usize = 6;

/// The line style index of a method's `variant`-th line: its figure order plus the variant, so
/// that methods differ, and so do the lines of one method.
fn style_index(method: &str, variant: usize) -> usize {
    crate::report::figure_rank(method).0 + variant
}

/// The marker shape of a method's line (TriAdaptLoRA circles, AdaLoRA squares, IncreLoRA
/// triangles, LoRA diamonds, full fine-tuning inverted triangles, others crosses).
pub fn marker_shape(method: &str, variant: usize) -> usize {
    style_index(method, variant) % MARKER_SHAPES
}

/// The dash pattern of a method's line (`LINE_DASHES`).
pub fn line_dash(method: &str, variant: usize) -> Option<(i32, i32)> {
    LINE_DASHES[style_index(method, variant) % LINE_DASHES.len()]
}

/// Draws a line through `points`, solid or with `dash`.
pub(super) fn draw_line<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    points: Vec<(f64, f64)>,
    dash: Option<(i32, i32)>,
    style: ShapeStyle,
) -> Result<()> {
    match dash {
        None => chart.draw_series(LineSeries::new(points, style)).plot()?,
        Some((d, g)) => chart.draw_series(DashedLineSeries::new(points, d, g, style)).plot()?,
    };
    Ok(())
}

/// The corners of a polygon marker around (0, 0), `size` pixels from the centre; None for the
/// circle (0) and the cross (5).
fn marker_polygon(shape: usize, size: i32) -> Option<Vec<(i32, i32)>> {
    let (s, t) = (size, size + 1);
    match shape % MARKER_SHAPES {
        1 => Some(vec![(-s, -s), (s, -s), (s, s), (-s, s)]),
        2 => Some(vec![(0, -t), (t, s), (-t, s)]),
        3 => Some(vec![(0, -t), (t, 0), (0, t), (-t, 0)]),
        4 => Some(vec![(0, t), (t, -s), (-t, -s)]),
        _ => None,
    }
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
            match item.dash {
                Some((d, g)) => {
                    let style = item.color.stroke_width(2);
                    let mut a = 0;
                    while a < SAMPLE_W {
                        area.draw(&PathElement::new(vec![(x + a, y), (x + (a + d).min(SAMPLE_W), y)], style)).plot()?;
                        a += d + g;
                    }
                }
                None => area.draw(&PathElement::new(vec![(x, y), (x + SAMPLE_W, y)], item.color.stroke_width(3))).plot()?,
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

/// A marker of `shape` (`marker_shape`) at a pixel position.
pub(super) fn draw_marker_at<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: (i32, i32),
    shape: usize,
    color: RGBColor,
    size: i32,
) -> Result<()> {
    match (shape % MARKER_SHAPES, marker_polygon(shape, size)) {
        (_, Some(corners)) => area.draw(&(EmptyElement::at(p) + Polygon::new(corners, color.filled()))).plot()?,
        (0, None) => area.draw(&Circle::new(p, size, color.filled())).plot()?,
        _ => area.draw(&Cross::new(p, size, color.stroke_width(2))).plot()?,
    }
    Ok(())
}

/// Markers of `shape` (`marker_shape`) at the points of a line.
pub(super) fn draw_markers<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    points: &[(f64, f64)],
    shape: usize,
    color: RGBColor,
    size: i32,
) -> Result<()> {
    match (shape % MARKER_SHAPES, marker_polygon(shape, size)) {
        (_, Some(corners)) => {
            chart.draw_series(points.iter().map(|&p| EmptyElement::at(p) + Polygon::new(corners.clone(), color.filled()))).plot()?
        }
        (0, None) => chart.draw_series(points.iter().map(|&p| Circle::new(p, size, color.filled()))).plot()?,
        _ => chart.draw_series(points.iter().map(|&p| Cross::new(p, size, color.stroke_width(2)))).plot()?,
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
