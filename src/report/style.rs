//! How every figure looks alike: each method's colour (from [`MethodName::colour`]) and its
//! shades, the palette for other lines, and the bundled font text is drawn with.

use std::sync::Once;

use plotters::prelude::*;

use super::canvas;
use crate::peft::method::MethodName;

/// A fixed colour per method, so that every figure and legend draws a method alike. Other
/// methods get one of the palette's remaining colours, chosen from the name (the same in every
/// figure).
pub fn method_color(method: &str) -> RGBColor {
    match method.parse::<MethodName>() {
        Ok(m) => {
            let (r, g, b) = m.colour();
            RGBColor(r, g, b)
        }
        Err(_) => palette(4 + method.bytes().map(|b| b as usize).sum::<usize>() % 6),
    }
}

/// The colour of a method's `variant`-th line where one method has several lines (a second
/// swept key): variant 0 is the method's colour, later ones darker and lighter shades of it.
pub fn variant_color(method: &str, variant: usize) -> RGBColor {
    let RGBColor(r, g, b) = method_color(method);
    let toward = |c: u8, target: f64, t: f64| (c as f64 + (target - c as f64) * t).round() as u8;
    let (target, t) = match variant {
        0 => return RGBColor(r, g, b),
        v if v % 2 == 1 => (0.0, (0.3 + 0.15 * (v / 2) as f64).min(0.75)),
        v => (255.0, (0.3 + 0.15 * (v / 2 - 1) as f64).min(0.75)),
    };
    RGBColor(toward(r, target, t), toward(g, target, t), toward(b, target, t))
}

/// A categorical palette (tab10 order).
pub fn palette(i: usize) -> RGBColor {
    const P: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    P[i % P.len()]
}

/// The font family every figure's text style names (registered from the bundled DejaVu Sans;
/// the canvases lay text out with the same font).
pub const FONT_FAMILY: &str = "sans-serif";

/// Registers the bundled font with plotters (once per process): plotters' text styles need a
/// registered family, although `canvas` draws and measures the text itself.
pub fn ensure_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            let ok = plotters::style::register_font(FONT_FAMILY, style, canvas::FONT_BYTES).is_ok();
            assert!(ok, "the bundled font assets/fonts/DejaVuSans.ttf is not a valid TrueType font");
        }
    });
}

/// A text style of the bundled font.
pub(crate) fn font(size: f64) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

/// The largest font size from `max` down to `min` (whole pixels) at which `text` is at most
/// `room` pixels wide; `min` when none is.
pub(crate) fn fitting_size(text: &str, max: f64, min: f64, room: f64) -> f64 {
    let mut size = max;
    while size > min && canvas::text_width(text, size) > room {
        size -= 1.0;
    }
    size.max(min)
}
