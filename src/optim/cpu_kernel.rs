//! AdamW's update of contiguous float32 CPU buffers in one pass over memory.
//!
//! The tensor-op path (`update::apply_with_tensor_ops`) reads and writes each buffer about
//! fifteen times; that is what made full fine-tuning slower than torch's fused AdamW (README
//! "Benchmarks"). This loop does the same float32 operations, in the same order, element by
//! element, split across LibTorch's intra-op thread count: correctly rounded operations only, so
//! its results equal the tensor ops' on CUDA bit for bit (on the CPU, LibTorch's vectorised
//! square root may differ by an ulp).

use tch::{Device, Kind, Tensor};

use super::update::{Buffers, ClassScalars, Shared};
use super::AdamWVariant;

/// Below this many entries one thread does the whole buffer (thread start-up would dominate).
const PER_THREAD_MIN: usize = 1 << 15;

/// Whether [`update`] can take these buffers: all float32 (the class index int32), on the CPU,
/// contiguous, same size, and the written buffers distinct from each other and the gradient.
pub fn applies(b: &Buffers) -> bool {
    let all = [b.value, b.grad, b.exp_avg, b.exp_avg_sq];
    let n = b.value.numel();
    let plain = |t: &Tensor, kind: Kind| t.device() == Device::Cpu && t.kind() == kind && t.is_contiguous() && t.numel() == n;
    all.iter().all(|t| plain(t, Kind::Float))
        && b.class.is_none_or(|c| plain(c, Kind::Int))
        && distinct(&[b.value, b.exp_avg, b.exp_avg_sq, b.grad])
}

fn distinct(ts: &[&Tensor]) -> bool {
    let ptrs: Vec<usize> = ts.iter().map(|t| t.data_ptr() as usize).collect();
    ptrs.iter().enumerate().all(|(i, p)| !ptrs[..i].contains(p))
}

/// Updates value, exp_avg and exp_avg_sq in place. The caller checks [`applies`].
pub fn update(variant: AdamWVariant, b: &Buffers, table: &[ClassScalars], s: Shared) {
    debug_assert!(applies(b));
    let n = b.value.numel();
    if n == 0 {
        return;
    }
    // SAFETY: `applies` checked that the buffers are contiguous CPU buffers of n entries of the
    // right type and that value, exp_avg, exp_avg_sq (written) and grad (read) do not share
    // memory; nothing else touches them during the optimizer step.
    let (p, g, m, v, class) = unsafe {
        (
            std::slice::from_raw_parts_mut(b.value.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts(b.grad.data_ptr() as *const f32, n),
            std::slice::from_raw_parts_mut(b.exp_avg.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts_mut(b.exp_avg_sq.data_ptr() as *mut f32, n),
            b.class.map(|c| std::slice::from_raw_parts(c.data_ptr() as *const i32, n)),
        )
    };
    let uniform = b.uniform;
    let run = move |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], class: Option<&[i32]>| match variant {
        AdamWVariant::Torch => each_entry(p, g, m, v, class, uniform, table, |p, g, m, v, k| torch_entry(p, g, m, v, k, s)),
        AdamWVariant::LegacyHf => each_entry(p, g, m, v, class, uniform, table, |p, g, m, v, k| legacy_hf_entry(p, g, m, v, k, s)),
    };
    let threads = (tch::get_num_threads().max(1) as usize).min(n / PER_THREAD_MIN).max(1);
    if threads == 1 {
        run(p, g, m, v, class);
        return;
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut class_chunks = class.map(|c| c.chunks(chunk));
        for (((p, g), m), v) in p.chunks_mut(chunk).zip(g.chunks(chunk)).zip(m.chunks_mut(chunk)).zip(v.chunks_mut(chunk)) {
            let class = class_chunks.as_mut().and_then(|c| c.next());
            scope.spawn(move || run(p, g, m, v, class));
        }
    });
}

/// Runs `update(p, g, m, v, scalars)` for every entry, with the scalars of its class.
#[allow(clippy::too_many_arguments)]
fn each_entry(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    class: Option<&[i32]>,
    uniform: usize,
    table: &[ClassScalars],
    update: impl Fn(&mut f32, f32, &mut f32, &mut f32, ClassScalars),
) {
    for (i, (((p, &g), m), v)) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()).enumerate() {
        update(p, g, m, v, table[class.map_or(uniform, |c| c[i] as usize)]);
    }
}

/// torch.optim.AdamW per entry: `p *= decay`, `m += (1 - b1) (g - m)`,
/// `v = v b2 + g (g (1 - b2))`, `p -= (m / (sqrt(v) / bc2_sqrt + eps)) step_size`.
fn torch_entry(p: &mut f32, g: f32, m: &mut f32, v: &mut f32, [decay, bc2_sqrt, step_size]: ClassScalars, s: Shared) {
    *p *= decay;
    *m += (g - *m) * s.one_minus_beta1;
    *v = *v * s.beta2 + (g * s.one_minus_beta2) * g;
    let denom = v.sqrt() / bc2_sqrt + s.eps;
    *p -= (*m / denom) * step_size;
}

/// Old HF transformers' AdamW per entry: `m = m b1 + g (1 - b1)`, `v` as torch's,
/// `p -= (m / (sqrt(v) + eps)) step_size`, then `p -= p (lr wd)`.
fn legacy_hf_entry(p: &mut f32, g: f32, m: &mut f32, v: &mut f32, [step_size, lr_wd, _]: ClassScalars, s: Shared) {
    *m = *m * s.beta1 + g * s.one_minus_beta1;
    *v = *v * s.beta2 + (g * s.one_minus_beta2) * g;
    let denom = v.sqrt() + s.eps;
    *p -= (*m / denom) * step_size;
    *p -= *p * lr_wd;
}
