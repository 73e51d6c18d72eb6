//! Bounds for float32 results compared with fixtures computed on another machine.
//!
//! Two correct float32 implementations of one network differ only in the order in which they add:
//! a GEMM kernel blocks its sums by its vector width (AVX2, AVX-512, MKL's or oneDNN's choice of
//! micro-kernel), so the same test gives different last bits on different CPUs. A fixed bound such
//! as 1e-6 then passes on one instruction set and fails on another. The bounds here are derived
//! from the rounding model instead:
//!
//! - a sum of `k` float32 terms computed in two orders differs by about `sqrt(k) * u * S`, where
//!   `u = 2^-24` is float32's unit roundoff and `S` the size of the result (rounding errors of the
//!   partial sums behave like a random walk; the worst case `k * u * S` is not reached in practice);
//! - such differences add up along the longest chain of reductions from the inputs to the output,
//!   and LayerNorm rescales the activations between layers, so they grow with the number of
//!   reductions on that chain rather than multiplying;
//! - a DeBERTa encoder layer has [`REDUCTIONS_PER_LAYER`] reductions on its longest chain, and the
//!   embeddings and the head add [`REDUCTIONS_OUTSIDE_LAYERS`].
//!
//! So a forward pass of `L` layers whose widest reduction has `k` terms gets the bound
//! `(15 L + 4) * sqrt(k) * u * max(1, max |reference|)`: at the 2-layer fixtures (k = 64 or the
//! padded length) about 2e-5 to 5e-5 for logits of size ~2, where the errors seen on AMD Zen 4
//! (AVX-512 and ATen's default kernels) and on an Intel AVX-512 machine are at most ~1e-6.
//! Gradients pass the chain twice (forward and backward).

use tch::Tensor;
use triadapt::model::ModelDir;

use super::{max_abs_diff, model_dir};

/// float32's unit roundoff, 2^-24.
pub const UNIT_ROUNDOFF: f64 = f32::EPSILON as f64 / 2.0;

/// Reductions on the longest chain through one encoder layer: the query/key/value projection, the
/// attention scores (content and position terms), the softmax's sum, the weighted sum of values,
/// the output projection, LayerNorm's mean and variance, the intermediate and output dense layers,
/// LayerNorm's mean and variance again (11); plus one for a low-rank adapter's second product on
/// each of the four linears on that chain (4), so adapted and merged models share the bound.
pub const REDUCTIONS_PER_LAYER: i64 = 15;

/// The embeddings' LayerNorm (mean and variance), the pooler and the classifier or span head.
pub const REDUCTIONS_OUTSIDE_LAYERS: i64 = 4;

/// The bound on `|ours - reference|` for `reductions` chained sums of at most `width` terms each,
/// for a result whose largest entry is `scale` (at least 1: below that, absolute rounding of the
/// intermediate activations, which LayerNorm keeps near 1, dominates).
pub fn reordering_bound(reductions: i64, width: i64, scale: f64) -> f64 {
    reductions as f64 * (width as f64).sqrt() * UNIT_ROUNDOFF * scale.max(1.0)
}

/// The bound for a float32 forward pass of the fixture model `model` over `seq_len` positions,
/// compared with `reference` (its largest entry sets the scale).
pub fn forward_bound(model: &str, seq_len: i64, reference: &Tensor) -> f64 {
    let (reductions, width) = chain(model, seq_len);
    reordering_bound(reductions, width, reference.abs().max().double_value(&[]))
}

/// The bound on a gradient's error relative to its largest entry: the chain forward and back.
pub fn gradient_bound(model: &str, seq_len: i64) -> f64 {
    let (reductions, width) = chain(model, seq_len);
    reordering_bound(2 * reductions, width, 1.0)
}

/// Asserts `ours` is within [`forward_bound`] of `reference` and prints how close it is, so a
/// margin shrinking on some machine shows in the test log before it fails.
pub fn assert_forward_close(what: &str, model: &str, seq_len: i64, ours: &Tensor, reference: &Tensor) {
    let bound = forward_bound(model, seq_len, reference);
    let d = max_abs_diff(ours, reference);
    eprintln!("{what}: max abs error {d:e} (bound {bound:e})");
    assert!(d <= bound, "{what}: max abs error {d:e} > {bound:e}, the float32 reordering bound for {model} over {seq_len} positions");
}

/// Reductions on the longest chain and the widest reduction of `model` over `seq_len` positions
/// (the softmax and the weighted sum of values reduce over the positions).
fn chain(model: &str, seq_len: i64) -> (i64, i64) {
    let c = ModelDir::open(&model_dir(model)).unwrap_or_else(|e| panic!("{model}: {e:#}")).config;
    let reductions = REDUCTIONS_PER_LAYER * c.num_hidden_layers + REDUCTIONS_OUTSIDE_LAYERS;
    (reductions, c.hidden_size.max(c.intermediate_size).max(seq_len))
}

#[test]
fn the_bound_follows_the_rounding_model() {
    // 2 layers, widest sum 64: (15 * 2 + 4) * 8 * 2^-24 = 272 * 2^-24, for results up to 1.
    assert_eq!(reordering_bound(34, 64, 0.5), 272.0 / 16_777_216.0);
    // Results of size 2 double it; the v3 fixture (hidden 32, intermediate 64) over 10 positions.
    assert_eq!(reordering_bound(34, 64, 2.0), 544.0 / 16_777_216.0);
    assert_eq!(chain("v3", 10), (34, 64));
    assert_eq!(chain("v3", 150), (34, 150));
}
