//! The two drawing backends every figure is rendered on: PNG and SVG, with text laid out alike.
//!
//! plotters 0.3.7 draws bitmap text through its `ab_glyph` backend, which places each glyph's
//! bitmap at the pen position without the glyph's left side bearing (`px_bounds().min.x` is
//! dropped) and truncates each glyph's vertical offset toward zero, so PNG letter spacing was
//! uneven ("matri x", "o ne run", "T riAdaptLoRA") while SVGs, laid out by the viewer, were not.
//! `PngCanvas` lays the text out itself from the bundled DejaVu Sans: pen positions from the
//! advance widths and kerning pairs, each glyph outlined and rasterised by `ab_glyph` at its own
//! sub-pixel position (side bearings included), and the baseline placed by the same rules the SVG
//! text uses (`dy` of 0.76 em for top-anchored text, 0.5 ex for centred, -0.5 ex for
//! bottom-anchored), so that a PNG and its SVG read the same. `SvgCanvas` writes the text with a
//! `font-size` equal to the em size the PNG draws (plotters' SVG backend wrote 6.5 % smaller
//! text than its own bitmap text) and `font-family="DejaVu Sans, sans-serif"`. Both measure text
//! with the same function (`text_width`), so chart layouts are the same in both files.
//!
//! `PngCanvas` also scales: a figure is laid out in logical pixels (its `--width` x `--height`)
//! and drawn at `--scale` times that resolution (coordinates, line widths, circle radii and font
//! sizes scaled), so a PNG can be printed sharp without changing its layout.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};
use plotters::prelude::{BitMapBackend, SVGBackend};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind, FontFamily, FontStyle, FontTransform,
};

/// The bundled font (DejaVu Sans; licence in `assets/fonts/`).
pub(crate) static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family the SVG files name: the bundled font first, the viewer's sans-serif otherwise.
pub const SVG_FONT_FAMILY: &str = "DejaVu Sans, sans-serif";

fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(FONT_BYTES).expect("the bundled font assets/fonts/DejaVuSans.ttf is a valid TrueType font"))
}

/// The font's metrics the layout needs, in font units.
struct Metrics {
    units_per_em: f32,
    /// Ascent - descent: plotters' font size is this height in pixels (ab_glyph's `PxScale`).
    height: f32,
    x_height: f32,
}

fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(|| {
        let f = font();
        let units_per_em = f.units_per_em().unwrap_or(2048.0);
        // The outline's top of "x" (ab_glyph's outline bounds keep y_max in `min.y`).
        let x_height = f.outline(f.glyph_id('x')).map(|o| o.bounds.min.y).unwrap_or(0.5 * units_per_em);
        Metrics { units_per_em, height: f.height_unscaled(), x_height }
    })
}

/// The em size in pixels of plotters' font size `size` (which is ascent - descent in pixels).
pub fn em_pixels(size: f64) -> f64 {
    let m = metrics();
    size * (m.units_per_em / m.height) as f64
}

/// One line of text laid out at plotters' font size `size`: each glyph with its pen position
/// (advance widths plus kerning pairs), and the advance width of the whole line, in pixels.
struct Line {
    glyphs: Vec<(GlyphId, f32)>,
    width: f32,
}

fn layout(text: &str, size: f32) -> Line {
    let f = font();
    let scaled = f.as_scaled(PxScale::from(size));
    let mut glyphs = Vec::with_capacity(text.len());
    let mut pen = 0f32;
    let mut prev: Option<GlyphId> = None;
    for c in text.chars() {
        let id = f.glyph_id(c);
        if let Some(p) = prev {
            pen += scaled.kern(p, id);
        }
        glyphs.push((id, pen));
        pen += scaled.h_advance(id);
        prev = Some(id);
    }
    Line { glyphs, width: pen }
}

/// The advance width in pixels of `text` at plotters' font size `size` (the width both
/// canvases report to plotters, and the width the PNG draws).
pub fn text_width(text: &str, size: f64) -> f64 {
    layout(text, size as f32).width as f64
}

/// What both canvases tell plotters a text's size is: its advance width (rounded) and
/// plotters' own line height (`size / 1.24`, as its font backends report).
fn estimate(text: &str, size: f64) -> (u32, u32) {
    (text_width(text, size).round().max(0.0) as u32, (size / 1.24) as u32)
}

/// The baseline's offset from the anchor point, as the SVG text places it (`dy` attributes of
/// plotters' SVG backend: 0.76 em for `Top`, 0.5 ex for `Center`, -0.5 ex for `Bottom`).
fn baseline_offset(v: VPos, size: f32) -> f32 {
    let m = metrics();
    let em = size * m.units_per_em / m.height;
    let ex = em * m.x_height / m.units_per_em;
    match v {
        VPos::Top => 0.76 * em,
        VPos::Center => 0.5 * ex,
        VPos::Bottom => -0.5 * ex,
    }
}

/// A line style with its stroke width scaled.
struct Scaled<'s, S>(&'s S, f64);

impl<S: BackendStyle> BackendStyle for Scaled<'_, S> {
    fn color(&self) -> BackendColor {
        self.0.color()
    }
    fn stroke_width(&self) -> u32 {
        ((self.0.stroke_width() as f64 * self.1).round() as u32).max(1)
    }
}

/// The PNG backend: a `BitMapBackend` of `scale` x the logical size, with its own text layout.
pub struct PngCanvas<'a> {
    inner: BitMapBackend<'a>,
    scale: f64,
    logical: (u32, u32),
}

impl<'a> PngCanvas<'a> {
    /// A canvas of `logical` size drawn into `path` at `scale` x that many pixels.
    pub fn new(path: &'a std::path::Path, logical: (u32, u32), scale: f64) -> Self {
        let physical = pixel_size(logical, scale);
        PngCanvas { inner: BitMapBackend::new(path, physical), scale, logical }
    }

    /// A canvas drawing into an RGB buffer of `pixel_size(logical, scale)` pixels.
    pub fn with_buffer(buffer: &'a mut [u8], logical: (u32, u32), scale: f64) -> Self {
        let physical = pixel_size(logical, scale);
        PngCanvas { inner: BitMapBackend::with_buffer(buffer, physical), scale, logical }
    }

    /// A logical point: the centre of the block of device pixels it covers.
    fn pt(&self, p: BackendCoord) -> BackendCoord {
        if self.scale == 1.0 {
            return p;
        }
        let f = |v: i32| ((v as f64 + 0.5) * self.scale - 0.5).round() as i32;
        (f(p.0), f(p.1))
    }

    /// A logical pixel edge (rectangle corners: plotters fills `[upper_left, bottom_right)`).
    fn edge(&self, p: BackendCoord) -> BackendCoord {
        ((p.0 as f64 * self.scale).round() as i32, (p.1 as f64 * self.scale).round() as i32)
    }
}

/// The PNG's size in pixels for a figure of `logical` size at `scale`.
pub fn pixel_size(logical: (u32, u32), scale: f64) -> (u32, u32) {
    (((logical.0 as f64) * scale).round().max(1.0) as u32, ((logical.1 as f64) * scale).round().max(1.0) as u32)
}

type BitmapError<'a> = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

impl<'a> DrawingBackend for PngCanvas<'a> {
    type ErrorType = BitmapError<'a>;

    fn get_size(&self) -> (u32, u32) {
        self.logical
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, p: BackendCoord, color: BackendColor) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        if self.scale == 1.0 {
            return self.inner.draw_pixel(p, color);
        }
        let (a, b) = (self.edge(p), self.edge((p.0 + 1, p.1 + 1)));
        self.inner.draw_rect(a, b, &color, true)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let (a, b) = (self.pt(from), self.pt(to));
        self.inner.draw_line(a, b, &Scaled(style, self.scale))
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        if fill {
            let (a, b) = (self.edge(upper_left), self.edge(bottom_right));
            self.inner.draw_rect(a, b, style, true)
        } else {
            let (a, b) = (self.pt(upper_left), self.pt(bottom_right));
            self.inner.draw_rect(a, b, &Scaled(style, self.scale), false)
        }
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let points: Vec<BackendCoord> = path.into_iter().map(|p| self.pt(p)).collect();
        self.inner.draw_path(points, &Scaled(style, self.scale))
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let c = self.pt(center);
        let r = (radius as f64 * self.scale).round() as u32;
        self.inner.draw_circle(c, r, &Scaled(style, self.scale), fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let points: Vec<BackendCoord> = vert.into_iter().map(|p| self.pt(p)).collect();
        self.inner.fill_polygon(points, style)
    }

    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let size = (style.size() * self.scale) as f32;
        let line = layout(text, size);
        let anchor = style.anchor();
        let x0 = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -line.width / 2.0,
            HPos::Right => -line.width,
        };
        let base = baseline_offset(anchor.v_pos, size);
        let trans: FontTransform = style.transform();
        let origin = self.pt(pos);
        let (w, h) = self.inner.get_size();
        let f = font();
        for (id, pen) in line.glyphs {
            let glyph = id.with_scale_and_position(PxScale::from(size), point(x0 + pen, base));
            let Some(outlined) = f.outline_glyph(glyph) else { continue };
            let bounds = outlined.px_bounds();
            let (bx, by) = (bounds.min.x as i32, bounds.min.y as i32);
            let mut result = Ok(());
            let inner = &mut self.inner;
            outlined.draw(|gx, gy, coverage| {
                if coverage <= 0.0 || result.is_err() {
                    return;
                }
                let (tx, ty) = trans.transform(bx + gx as i32, by + gy as i32);
                let (x, y) = (origin.0 + tx, origin.1 + ty);
                if x >= 0 && y >= 0 && x < w as i32 && y < h as i32 {
                    result = inner.draw_pixel((x, y), color.mix(coverage.min(1.0) as f64));
                }
            });
            result?;
        }
        Ok(())
    }

    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        Ok(estimate(text, style.size()))
    }
}

/// A text style as the SVG writes it: plotters' SVG backend writes `font-size` as size / 1.24;
/// this makes it the em size the PNG draws, and names the bundled font's family first.
struct SvgText<'s, S>(&'s S);

impl<S: BackendTextStyle> BackendTextStyle for SvgText<'_, S> {
    type FontError = S::FontError;

    fn color(&self) -> BackendColor {
        self.0.color()
    }
    fn size(&self) -> f64 {
        em_pixels(self.0.size()) * 1.24
    }
    fn transform(&self) -> FontTransform {
        self.0.transform()
    }
    fn style(&self) -> FontStyle {
        self.0.style()
    }
    fn anchor(&self) -> plotters_backend::text_anchor::Pos {
        self.0.anchor()
    }
    fn family(&self) -> FontFamily<'_> {
        FontFamily::Name(SVG_FONT_FAMILY)
    }
    fn layout_box(&self, text: &str) -> Result<((i32, i32), (i32, i32)), Self::FontError> {
        self.0.layout_box(text)
    }
    fn draw<E, DrawFunc: FnMut(i32, i32, BackendColor) -> Result<(), E>>(
        &self,
        text: &str,
        pos: BackendCoord,
        draw: DrawFunc,
    ) -> Result<Result<(), E>, Self::FontError> {
        self.0.draw(text, pos, draw)
    }
}

/// The SVG backend: plotters' `SVGBackend`, with text sized and measured as in `PngCanvas`.
pub struct SvgCanvas<'a> {
    inner: SVGBackend<'a>,
}

impl<'a> SvgCanvas<'a> {
    pub fn new(path: &'a std::path::Path, size: (u32, u32)) -> Self {
        SvgCanvas { inner: SVGBackend::new(path, size) }
    }
}

type SvgError<'a> = <SVGBackend<'a> as DrawingBackend>::ErrorType;

impl<'a> DrawingBackend for SvgCanvas<'a> {
    type ErrorType = SvgError<'a>;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }
    fn draw_pixel(&mut self, p: BackendCoord, color: BackendColor) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(p, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        ul: BackendCoord,
        br: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(ul, br, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        c: BackendCoord,
        r: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(c, r, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }
    fn draw_text<TStyle: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_text(text, &SvgText(style), pos)
    }
    fn estimate_text_size<TStyle: BackendTextStyle>(
        &self,
        text: &str,
        style: &TStyle,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        Ok(estimate(text, style.size()))
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::style::IntoFont;

    #[test]
    fn pen_positions_are_advances_plus_kerning() {
        let f = font();
        let size = 15.0f32;
        let scaled = f.as_scaled(PxScale::from(size));
        let line = layout("To x", size);
        let ids: Vec<GlyphId> = "To x".chars().map(|c| f.glyph_id(c)).collect();
        // "T" then "o": DejaVu Sans kerns this pair (negative), so "o" starts before T's advance.
        let kern = scaled.kern(ids[0], ids[1]);
        assert!(kern < 0.0, "DejaVu Sans kerns T-o: {kern}");
        assert!((line.glyphs[1].1 - (scaled.h_advance(ids[0]) + kern)).abs() < 1e-4);
        let total: f32 =
            ids.iter().map(|&i| scaled.h_advance(i)).sum::<f32>() + ids.windows(2).map(|w| scaled.kern(w[0], w[1])).sum::<f32>();
        assert!((line.width - total).abs() < 1e-3);
    }

    /// The columns of a white RGB image (width `w`) that hold ink.
    fn ink_columns(buf: &[u8], w: usize) -> Vec<bool> {
        let h = buf.len() / (3 * w);
        (0..w).map(|x| (0..h).any(|y| buf[3 * (y * w + x)] < 128)).collect()
    }

    /// Draws `text` at size 100 anchored left at x = 20 and returns the ink columns.
    fn draw_big(text: &str) -> Vec<bool> {
        let (w, h) = (400u32, 160u32);
        let mut buf = vec![255u8; (w * h * 3) as usize];
        {
            let mut c = PngCanvas::with_buffer(&mut buf, (w, h), 1.0);
            let style = plotters::style::TextStyle::from(("sans-serif", 100.0).into_font())
                .pos(plotters::style::text_anchor::Pos::new(HPos::Left, VPos::Center));
            c.draw_text(text, &style, (20, 80)).unwrap_or_else(|e| panic!("drawn: {e:?}"));
            c.present().unwrap_or_else(|e| panic!("presented: {e:?}"));
        }
        ink_columns(&buf, w as usize)
    }

    /// (first, last) ink column of each run of ink.
    fn runs(cols: &[bool]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = None;
        for (x, &ink) in cols.iter().enumerate() {
            match (ink, start) {
                (true, None) => start = Some(x),
                (false, Some(s)) => {
                    out.push((s, x - 1));
                    start = None;
                }
                _ => {}
            }
        }
        out
    }

    #[test]
    fn glyphs_keep_their_side_bearings() {
        crate::report::ensure_fonts();
        let f = font();
        let s = f.as_scaled(PxScale::from(100.0));
        let (o, n) = (f.glyph_id('o'), f.glyph_id('n'));
        // Side bearings from the font's metrics (hmtx), in pixels at size 100.
        let lsb = |g: GlyphId| s.h_side_bearing(g);
        let ink_w = |g: GlyphId| {
            let b = f.outline(g).expect("outlined").bounds;
            (b.max.x - b.min.x) * s.h_scale_factor()
        };
        let rsb = |g: GlyphId| s.h_advance(g) - lsb(g) - ink_w(g);
        // "on": o's ink starts at its left side bearing; the gap between o and n is o's right
        // plus n's left side bearing (plotters 0.3.7 dropped each glyph's left bearing: its
        // gap was o's two bearings, "o n" where n's bearing is larger).
        let r = runs(&draw_big("on"));
        assert_eq!(r.len(), 2, "o and n: {r:?}");
        let first = 20.0 + lsb(o);
        assert!((r[0].0 as f32 - first).abs() <= 1.0, "o starts at {} (expected {first})", r[0].0);
        let gap = (r[1].0 - r[0].1 - 1) as f32;
        let expected = rsb(o) + s.kern(o, n) + lsb(n);
        assert!((gap - expected).abs() <= 1.5, "o-n gap {gap} px, expected {expected}");
        assert!((lsb(n) - lsb(o)).abs() > 3.0, "the test needs bearings that differ: {} {}", lsb(o), lsb(n));
    }

    #[test]
    fn svg_font_size_is_the_em_the_png_draws() {
        // DejaVu Sans: 2048 units per em, ascent 1901, descent -483: em = size * 2048 / 2384.
        assert!((em_pixels(15.0) - 15.0 * 2048.0 / 2384.0).abs() < 1e-4);
        assert!((metrics().x_height - 1120.0).abs() < 1.0, "x-height {}", metrics().x_height);
    }
}
