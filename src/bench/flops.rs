//! The FLOP model: the matmul work of one training step of a method ([`model_flops`]), so that
//! a step time becomes an achieved GFLOP/s, and the peak fp32 matmul rate it is compared with
//! ([`matmul_gflops`]).

use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::timed::sync;
use super::Variant;
use crate::model::DebertaConfig;

/// The number of relative-position buckets a sequence of `len` tokens reaches: 2m + 1 where m is
/// the bucketed position of distance len - 1, at most 2 * att_span.
pub fn relative_rows_used(c: &DebertaConfig, len: i64) -> i64 {
    let span = c.att_span();
    let rel = crate::model::deberta::relative_positions(len, c.position_buckets, c.max_relative_positions(), Device::Cpu);
    let m = rel.abs().max().int64_value(&[]).min(span);
    (2 * m + 1).min(2 * span)
}

/// Matmul FLOPs of one training step (2 per multiply-add), the "useful work" convention of MFU:
/// the six linears, attention (QK, PV, c2p, p2c over the 2L-1 relative buckets a length-L batch
/// reaches), the position projections of those buckets, the adapters (at `avg_rank`; for
/// TriAdaptLoRA also the product C A), the pooler. Forward counts once; backward twice for
/// everything that trains or carries a gradient to something that trains, once (input gradient
/// only) for frozen weights; so full fine-tuning is 3x the forward and adapter methods about 2x.
pub fn model_flops(c: &DebertaConfig, variant: Variant, batch: i64, seq: i64, avg_rank: f64) -> f64 {
    let (b, l, h, i, n) = (batch as f64, seq as f64, c.hidden_size as f64, c.intermediate_size as f64, c.num_hidden_layers as f64);
    let tokens = b * l;
    let p = relative_rows_used(c, seq) as f64;
    let weight_passes = if variant == Variant::Full { 3.0 } else { 2.0 };
    let linears = 2.0 * tokens * (4.0 * h * h + 2.0 * h * i);
    let pos_proj = 2.0 * 2.0 * p * h * h;
    let attention = 2.0 * 2.0 * b * l * l * h + 2.0 * 2.0 * b * l * p * h;
    let adapters = if variant == Variant::Full {
        0.0
    } else {
        let r = avg_rank;
        // TriAdaptLoRA folds its triangles into the down projection once per step: C A.
        let triangles = matches!(variant, Variant::Triadapt | Variant::TriadaptGrow);
        // (d_in, d_out) of the six matrices; query and key also project the relative rows.
        let shapes = [(h, h, tokens + p), (h, h, tokens + p), (h, h, tokens), (h, h, tokens), (h, i, tokens), (i, h, tokens)];
        shapes.iter().map(|&(din, dout, rows)| rows * 2.0 * r * (din + dout) + if triangles { 2.0 * r * r * din } else { 0.0 }).sum::<f64>()
    };
    let per_layer = weight_passes * (linears + pos_proj) + 3.0 * (attention + adapters);
    let pooler = 3.0 * 2.0 * b * h * h;
    n * per_layer + pooler
}

/// The fp32 matrix-product rate of this libtorch: GFLOP/s of the fastest of `reps` products of
/// two n x n matrices, after two untimed ones (the peak: on a shared machine the median moves with
/// the neighbours' load).
pub fn matmul_gflops(n: i64, reps: usize, device: Device) -> f64 {
    let a = Tensor::randn([n, n], (Kind::Float, device));
    let b = Tensor::randn([n, n], (Kind::Float, device));
    let mut times = Vec::new();
    for i in 0..reps + 2 {
        sync(device);
        let t0 = Instant::now();
        let _c = a.matmul(&b);
        sync(device);
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) / fastest / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Shape;

    #[test]
    fn a_batch_of_128_tokens_reaches_255_relative_rows() {
        let c = Shape::Base.config();
        assert_eq!(relative_rows_used(&c, 128), 255);
        // Past position_buckets / 2 the log buckets compress: never more than 2 * 256 rows.
        assert!(relative_rows_used(&c, 512) <= 512);
    }

    /// Training FLOPs against the 6 N T rule (N = the 12 layers' linear weights, 7.08 M each):
    /// full fine-tuning of the base shape at batch 8 x 128 is that plus attention and the
    /// relative-position projections (about 12 % more by hand); TriAdaptLoRA costs LoRA's plus
    /// the r x r x d_in product C A of each of the 72 adapters, three times (forward, backward).
    #[test]
    fn model_flops_agree_with_the_6nt_rule_and_the_triangle_product() {
        let c = Shape::Base.config();
        let n_weights = 12.0 * (4.0 * 768.0 * 768.0 + 2.0 * 768.0 * 3072.0);
        let tokens = 8.0 * 128.0;
        let full = model_flops(&c, Variant::Full, 8, 128, 0.0) / (6.0 * n_weights * tokens);
        assert!((1.05..1.2).contains(&full), "full fine-tuning / 6NT = {full}");
        let r = 8.0;
        let extra = model_flops(&c, Variant::Triadapt, 8, 128, r) - model_flops(&c, Variant::Lora, 8, 128, r);
        let by_hand = 12.0 * 3.0 * 2.0 * r * r * (5.0 * 768.0 + 3072.0);
        assert!((extra - by_hand).abs() < 1.0, "{extra} vs {by_hand}");
    }
}
