//! AdamW's update for a contiguous float32 CPU tensor in one pass over memory.
//!
//! The tensor-op path of [`super::AdamW::step`] reads and writes each parameter-sized buffer about
//! ten times (decay, lerp, two second-moment ops, sqrt, two scalings, divide, subtract). That is
//! what made full fine-tuning slower than torch's fused AdamW (README "Benchmarks"). This loop
//! does the same float32 arithmetic, in the same order, element by element, split across
//! LibTorch's intra-op thread count.

use tch::{Device, Kind, Tensor};

/// The scalars of one update, already in float32 as torch casts them.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// 1 - lr * weight_decay (decoupled decay).
    pub decay: f32,
    /// 1 - beta1, the lerp weight of the first moment.
    pub lerp: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    /// sqrt(1 - beta2^t).
    pub bc2_sqrt: f32,
    pub eps: f32,
    /// lr / (1 - beta1^t).
    pub step_size: f32,
}

/// Below this many entries one thread does the whole tensor (thread start-up would dominate).
const PER_THREAD_MIN: usize = 1 << 15;

/// Whether [`update`] can take these tensors: all float32, on the CPU, contiguous, same size,
/// and the three state buffers distinct.
pub fn applies(value: &Tensor, grad: &Tensor, exp_avg: &Tensor, exp_avg_sq: &Tensor) -> bool {
    let all = [value, grad, exp_avg, exp_avg_sq];
    let n = value.numel();
    all.iter().all(|t| t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous() && t.numel() == n)
        && distinct(&[value, exp_avg, exp_avg_sq, grad])
}

fn distinct(ts: &[&Tensor]) -> bool {
    let ptrs: Vec<usize> = ts.iter().map(|t| t.data_ptr() as usize).collect();
    ptrs.iter().enumerate().all(|(i, p)| !ptrs[..i].contains(p))
}

/// Updates `value`, `exp_avg` and `exp_avg_sq` in place. The caller checks [`applies`].
pub fn update(value: &Tensor, grad: &Tensor, exp_avg: &Tensor, exp_avg_sq: &Tensor, s: Step) {
    debug_assert!(applies(value, grad, exp_avg, exp_avg_sq));
    let n = value.numel();
    if n == 0 {
        return;
    }
    // SAFETY: `applies` checked that the four tensors are contiguous float32 CPU buffers of n
    // entries and that value, exp_avg, exp_avg_sq (written) and grad (read) do not share memory;
    // nothing else touches them during the optimizer step.
    let (p, g, m, v) = unsafe {
        (
            std::slice::from_raw_parts_mut(value.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts(grad.data_ptr() as *const f32, n),
            std::slice::from_raw_parts_mut(exp_avg.data_ptr() as *mut f32, n),
            std::slice::from_raw_parts_mut(exp_avg_sq.data_ptr() as *mut f32, n),
        )
    };
    let threads = (tch::get_num_threads().max(1) as usize).min(n / PER_THREAD_MIN).max(1);
    if threads == 1 {
        update_slices(p, g, m, v, s);
        return;
    }
    let chunk = n.div_ceil(threads);
    std::thread::scope(|scope| {
        for (((p, g), m), v) in p.chunks_mut(chunk).zip(g.chunks(chunk)).zip(m.chunks_mut(chunk)).zip(v.chunks_mut(chunk)) {
            scope.spawn(move || update_slices(p, g, m, v, s));
        }
    });
}

/// torch.optim.AdamW's single-tensor steps, per entry: `p *= decay`, `m.lerp_(g, 1 - beta1)`,
/// `v = v * beta2 + g * (g * (1 - beta2))`, `p -= step_size * m / (sqrt(v) / bc2_sqrt + eps)`.
fn update_slices(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: Step) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *p *= s.decay;
        *m += s.lerp * (g - *m);
        *v = *v * s.beta2 + g * (g * s.one_minus_beta2);
        let denom = v.sqrt() / s.bc2_sqrt + s.eps;
        *p -= (*m / denom) * s.step_size;
    }
}
