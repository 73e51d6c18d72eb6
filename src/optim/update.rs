//! The AdamW arithmetic of one step over a set of buffers (a parameter, or a flat buffer of
//! many), shared by the flat and the per-tensor paths so that both give the same bits.
//!
//! Entries differ only by their *class*: the birth step they were created at and their weight
//! decay. Each step turns every class into three float32 scalars on the host, in float64 as
//! torch.optim.AdamW and HF's old AdamW compute their bias corrections in Python, then cast as
//! torch casts a Python float for a float32 tensor. Every tensor operation below is a correctly
//! rounded IEEE operation (multiply, divide, add, subtract; no fused multiply-add, no `lerp`, no
//! `pow`) except the square root, which CUDA rounds correctly and LibTorch's CPU kernels (MKL's
//! vector math on x86) to within an ulp: an entry's result does not depend on where it sits in a
//! buffer, and the one-pass CPU kernel (`cpu_kernel`) equals the tensor ops on CUDA and agrees
//! with them to an ulp on the CPU.

use tch::Tensor;

use super::{AdamWConfig, AdamWVariant};

/// Entries that share a birth step and a weight decay update with the same scalars.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct EntryClass {
    pub birth: i64,
    pub weight_decay: f64,
}

/// The scalars every entry shares, float32.
#[derive(Debug, Clone, Copy)]
pub struct Shared {
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
}

impl Shared {
    pub(super) fn new(c: &AdamWConfig) -> Self {
        Shared {
            beta1: c.beta1 as f32,
            one_minus_beta1: (1.0 - c.beta1) as f32,
            beta2: c.beta2 as f32,
            one_minus_beta2: (1.0 - c.beta2) as f32,
            eps: c.eps as f32,
        }
    }
}

/// One class's scalars at one step. `torch`: [1 - lr wd, sqrt(1 - b2^t), lr / (1 - b1^t)];
/// `legacy_hf`: [lr sqrt(1 - b2^t) / (1 - b1^t), lr wd, unused].
pub type ClassScalars = [f32; 3];

/// Every class's scalars at global step `step` (0-based); `t` counts an entry's updates from its
/// birth, this one included.
pub(super) fn class_table(c: &AdamWConfig, classes: &[EntryClass], step: i64, lr_mult: &dyn Fn(i64) -> f64) -> Vec<ClassScalars> {
    classes
        .iter()
        .map(|k| {
            let count = (step + 1 - k.birth).max(1) as i32;
            let lr = c.lr * lr_mult(k.birth);
            let bc1 = 1.0 - c.beta1.powi(count);
            let bc2 = 1.0 - c.beta2.powi(count);
            match c.variant {
                AdamWVariant::Torch => [(1.0 - lr * k.weight_decay) as f32, bc2.sqrt() as f32, (lr / bc1) as f32],
                AdamWVariant::LegacyHf => [(lr * bc2.sqrt() / bc1) as f32, (lr * k.weight_decay) as f32, 0.0],
            }
        })
        .collect()
}

/// The buffers one update reads and writes: same shape, same dtype; `class` holds each entry's
/// class index (int32), or is None when every entry is of class `uniform`.
pub(super) struct Buffers<'a> {
    pub value: &'a Tensor,
    pub grad: &'a Tensor,
    pub exp_avg: &'a Tensor,
    pub exp_avg_sq: &'a Tensor,
    pub class: Option<&'a Tensor>,
    pub uniform: usize,
}

/// The per-entry scalar columns: a gather of the class table (one upload, one gather), or
/// 0-dim tensors when one class covers the buffers.
fn columns(b: &Buffers, table: &[ClassScalars]) -> [Tensor; 3] {
    let dev = b.value.device();
    let flat: Vec<f32> = table.iter().flatten().copied().collect();
    let rows = Tensor::from_slice(&flat).view([table.len() as i64, 3]).to_device(dev);
    let per_entry = match b.class {
        Some(class) => {
            let shape: Vec<i64> = b.value.size().into_iter().chain([3]).collect();
            rows.index_select(0, &class.reshape([-1])).view(shape.as_slice())
        }
        None => rows.select(0, b.uniform as i64),
    };
    let col = |j: i64| per_entry.select(-1, j).to_kind(b.value.kind());
    [col(0), col(1), col(2)]
}

/// The update as tensor ops, in the order `cpu_kernel` runs per entry.
pub(super) fn apply_with_tensor_ops(variant: AdamWVariant, b: &Buffers, table: &[ClassScalars], s: Shared) {
    let [c0, c1, c2] = columns(b, table);
    let (mut p, g, mut m, mut v) = (b.value.shallow_clone(), b.grad, b.exp_avg.shallow_clone(), b.exp_avg_sq.shallow_clone());
    match variant {
        AdamWVariant::Torch => {
            // p *= 1 - lr wd; m += (1 - b1)(g - m); v = v b2 + g (g (1 - b2));
            // p -= (m / (sqrt(v) / sqrt(bc2) + eps)) (lr / bc1).
            let _ = p.g_mul_(&c0);
            let mut d = g - &m;
            let _ = d.g_mul_scalar_(s.one_minus_beta1 as f64);
            let _ = m.g_add_(&d);
            second_moment(&mut v, g, s);
            let mut denom = v.sqrt();
            let _ = denom.g_div_(&c1);
            let _ = denom.g_add_scalar_(s.eps as f64);
            let mut u = m.div_out(&denom, &denom);
            let _ = u.g_mul_(&c2);
            let _ = p.g_sub_(&u);
        }
        AdamWVariant::LegacyHf => {
            // m = m b1 + g (1 - b1); v as above; p -= (m / (sqrt(v) + eps)) step; p -= p lr wd.
            let _ = m.g_mul_scalar_(s.beta1 as f64);
            let t = g * (s.one_minus_beta1 as f64);
            let _ = m.g_add_(&t);
            second_moment(&mut v, g, s);
            let mut denom = v.sqrt();
            let _ = denom.g_add_scalar_(s.eps as f64);
            let mut u = m.div_out(&denom, &denom);
            let _ = u.g_mul_(&c0);
            let _ = p.g_sub_(&u);
            let decay = &p * &c1;
            let _ = p.g_sub_(&decay);
        }
    }
}

/// v = v b2 + g (g (1 - b2)).
fn second_moment(v: &mut Tensor, g: &Tensor, s: Shared) {
    let _ = v.g_mul_scalar_(s.beta2 as f64);
    let mut t = g * (s.one_minus_beta2 as f64);
    let _ = t.g_mul_(g);
    let _ = v.g_add_(&t);
}
