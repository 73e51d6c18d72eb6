//! AdamW for parameters that grow during training, and the learning-rate schedules.
//!
//! Each parameter keeps, beside its moments, a `birth` tensor of the same shape holding the step
//! at which each entry was created. Bias correction counts from an entry's birth, and the
//! "restart" learning-rate policy warms each entry up from its birth, so a tensor that grows by
//! reallocation behaves exactly like an old parameter plus a new parameter group with fresh
//! AdamW state, while the forward pass keeps one contiguous tensor per role.

use std::collections::HashMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

mod cpu_kernel;

/// How grown entries follow the learning-rate schedule (docs/method.md, "Learning-rate policies").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LrPolicy {
    /// Own linear warm-up over `warmup_steps` from the birth step, then linear decay to 0 at T.
    #[default]
    Restart,
    /// The global schedule's multiplier at the current step.
    Follow,
    /// Entries born after step 0 keep the constant base learning rate: torch's LambdaLR leaves
    /// parameter groups added after its construction at their own lr (the reference harnesses
    /// with `multi_lr` off). Entries born at step 0 follow the global schedule.
    Constant,
}

impl LrPolicy {
    /// The learning-rate multiplier at `step` of entries born at `birth` under a linear schedule
    /// with `warmup` steps that reaches zero at `total` (docs/method.md, "Learning-rate policies").
    pub fn multiplier(self, step: i64, birth: i64, warmup: i64, total: i64) -> f64 {
        match self {
            LrPolicy::Restart => linear_schedule(step, birth, warmup, total),
            LrPolicy::Follow => linear_schedule(step, 0, warmup, total),
            LrPolicy::Constant if birth > 0 => 1.0,
            LrPolicy::Constant => linear_schedule(step, 0, warmup, total),
        }
    }
}

/// Which AdamW arithmetic the optimizer uses (docs/method.md, "Optimizer").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AdamWVariant {
    /// torch.optim.AdamW: decay p *= 1 - lr wd first, then p -= lr m_hat / (sqrt(v_hat) + eps).
    #[default]
    Torch,
    /// The `AdamW` of old HF transformers (`optimization.py`) that the IncreLoRA and AdaLoRA
    /// harnesses import: denom = sqrt(v) + eps before bias correction, step size
    /// lr sqrt(1 - b2^t) / (1 - b1^t), and weight decay after the update, p -= lr wd p.
    LegacyHf,
}

/// Optimisation settings of a run (docs/method.md, "Optimizer"; the shipped values: experiments/).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    pub lr: f64,
    pub weight_decay: f64,
    /// Linear warm-up steps of the learning rate.
    pub warmup_steps: i64,
    pub max_grad_norm: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    /// The AdamW arithmetic: `torch` (torch.optim.AdamW) or `legacy_hf` (the old HF transformers
    /// AdamW of the reference harnesses; docs/method.md, "Optimizer").
    pub adamw: AdamWVariant,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-3,
            weight_decay: 0.01,
            warmup_steps: 100,
            max_grad_norm: 1.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_eps: 1e-8,
            adamw: AdamWVariant::Torch,
        }
    }
}

/// Linear warm-up over `warmup` steps from `birth`, then linear decay to zero at `total`
/// (HF's `get_linear_schedule_with_warmup`, shifted to start at `birth`).
pub fn linear_schedule(step: i64, birth: i64, warmup: i64, total: i64) -> f64 {
    let s = (step - birth) as f64;
    if s < warmup as f64 {
        return s / (warmup.max(1) as f64);
    }
    let remaining = (total - step) as f64;
    let span = (total - birth - warmup).max(1) as f64;
    (remaining / span).max(0.0)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    #[serde(default)]
    pub variant: AdamWVariant,
}

impl Default for AdamWConfig {
    /// torch.optim.AdamW's defaults except the learning rate, which runs set.
    fn default() -> Self {
        AdamWConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, variant: AdamWVariant::Torch }
    }
}

#[derive(Debug)]
struct ParamState {
    value: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    /// Step at which each entry was born (float, same shape as `value`).
    birth: Tensor,
    /// Entries born together share one birth; this is the set of distinct births.
    births: Vec<i64>,
    /// Weight decay of the entries of the first birth (the tensor as registered).
    weight_decay: f64,
    /// Weight decay of entries born by later growth (TriAdaptLoRA's grown ranks have their own).
    grown_weight_decay: f64,
}

impl ParamState {
    /// The birth of the entries the tensor was registered with.
    fn first_birth(&self) -> i64 {
        self.births.iter().copied().min().unwrap_or(0)
    }
}

/// Decoupled-weight-decay Adam (torch.optim.AdamW numerics) over named, growable parameters.
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// Update float32 CPU tensors with tensor ops too, as on CUDA, instead of the one-pass CPU
    /// kernel (the same arithmetic): `bench --ops` counts the ops a GPU would run.
    pub tensor_ops_only: bool,
    params: Vec<(String, ParamState)>,
    index: HashMap<String, usize>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW { config, tensor_ops_only: false, params: Vec::new(), index: HashMap::new() }
    }

    /// Registers a leaf tensor (requires_grad) born at `step`.
    pub fn add(&mut self, name: &str, value: &Tensor, step: i64, weight_decay: f64) -> Result<()> {
        if self.index.contains_key(name) {
            bail!("parameter {name} registered twice with the optimizer");
        }
        // Two separate buffers: a shallow clone (or a no-op `to_kind`) would share storage.
        let zeros = || value.detach().zeros_like();
        let state = ParamState {
            value: value.shallow_clone(),
            exp_avg: zeros(),
            exp_avg_sq: zeros(),
            birth: uniform_birth(value, step),
            births: vec![step],
            weight_decay,
            grown_weight_decay: weight_decay,
        };
        self.index.insert(name.to_string(), self.params.len());
        self.params.push((name.to_string(), state));
        Ok(())
    }

    /// Sets the weight decay of the entries that later growth adds to `name` (by default the
    /// tensor's own).
    pub fn set_grown_weight_decay(&mut self, name: &str, weight_decay: f64) -> Result<()> {
        let Some(&i) = self.index.get(name) else { bail!("unknown parameter {name}") };
        self.params[i].1.grown_weight_decay = weight_decay;
        Ok(())
    }

    /// Replaces a parameter by a larger one whose old entries sit at the top-left corner (the
    /// same index in every dimension). Moments are carried over; new entries get zero moments
    /// and birth `step`.
    pub fn grow(&mut self, name: &str, new_value: &Tensor, step: i64) -> Result<()> {
        let Some(&i) = self.index.get(name) else { bail!("cannot grow unknown parameter {name}") };
        let st = &mut self.params[i].1;
        let old = st.value.size();
        let new = new_value.size();
        if old.len() != new.len() || old.iter().zip(&new).any(|(o, n)| n < o) {
            bail!("parameter {name}: cannot grow from {old:?} to {new:?}");
        }
        let embed = |t: &Tensor, fill: f64| {
            let out = Tensor::full(new.as_slice(), fill, (t.kind(), t.device()));
            let mut view = out.shallow_clone();
            for (d, &n) in old.iter().enumerate() {
                view = view.narrow(d as i64, 0, n);
            }
            view.copy_(t);
            out
        };
        tch::no_grad(|| {
            st.exp_avg = embed(&st.exp_avg, 0.0);
            st.exp_avg_sq = embed(&st.exp_avg_sq, 0.0);
            st.birth = embed(&st.birth, step as f64);
        });
        // Only a tensor that gained entries has a new birth (a same-shape "growth" has none, as
        // the births read back from the saved birth tensor by `set_state`).
        if old != new && !st.births.contains(&step) {
            st.births.push(step);
        }
        st.value = new_value.shallow_clone();
        Ok(())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }

    pub fn value(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.params[i].1.value)
    }

    /// The optimizer state of one parameter: (exp_avg, exp_avg_sq, birth), for checkpoints.
    pub fn state(&self, name: &str) -> Option<[&Tensor; 3]> {
        self.index.get(name).map(|&i| {
            let s = &self.params[i].1;
            [&s.exp_avg, &s.exp_avg_sq, &s.birth]
        })
    }

    /// Restores a parameter's state saved by [`AdamW::state`] (resuming a run).
    pub fn set_state(&mut self, name: &str, exp_avg: &Tensor, exp_avg_sq: &Tensor, birth: &Tensor) -> Result<()> {
        let Some(&i) = self.index.get(name) else { bail!("optimizer state for unknown parameter {name}") };
        let s = &mut self.params[i].1;
        if exp_avg.size() != s.value.size() || exp_avg_sq.size() != s.value.size() || birth.size() != s.value.size() {
            bail!("optimizer state for {name} has the wrong shape");
        }
        let dev = s.value.device();
        s.exp_avg = exp_avg.to_device(dev).to_kind(s.value.kind());
        s.exp_avg_sq = exp_avg_sq.to_device(dev).to_kind(s.value.kind());
        let birth = birth.to_device(dev).to_kind(Kind::Float);
        let mut births: Vec<i64> = Vec::<f32>::try_from(birth.flatten(0, -1).unique_dim(0, true, false, false).0)
            .unwrap_or_default()
            .into_iter()
            .map(|b| b as i64)
            .collect();
        births.sort_unstable();
        s.birth = match births.as_slice() {
            [only] => uniform_birth(&s.value, *only),
            _ => birth,
        };
        s.births = births;
        Ok(())
    }

    /// Drops every parameter's gradient (torch's `zero_grad(set_to_none=True)`): the next
    /// backward pass writes fresh gradients instead of adding to zeroed ones (no memset, no
    /// accumulation pass), and their memory is free until then. A parameter that gets no
    /// gradient in a step is then skipped by [`AdamW::step`], as torch skips it.
    pub fn zero_grad(&mut self) {
        // tch cannot unset `.grad`; libtorch's C++ `Optimizer::zero_grad()` (set_to_none = true
        // since torch 2.0) can: a throwaway optimizer over the same tensors does it.
        let dropped = tch::COptimizer::sgd(0.0, 0.0, 0.0, 0.0, false).and_then(|mut none| {
            for (_, s) in &self.params {
                none.add_parameters(&s.value, 0)?;
            }
            none.zero_grad()
        });
        if dropped.is_err() {
            for (_, s) in &mut self.params {
                let mut g = s.value.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        }
    }

    /// One AdamW update at global step `step` (0-based). `lr_mult(birth)` is the learning-rate
    /// multiplier for entries born at `birth`; entries born later than `step` do not exist.
    ///
    /// A tensor whose entries share one birth (every tensor that never grew) is updated with
    /// scalar bias corrections as torch.optim.AdamW does: in one pass over memory for a float32
    /// CPU tensor (`cpu_kernel`), else with tensor ops. A grown tensor (several births) computes
    /// each entry's update count and learning rate from its birth.
    pub fn step(&mut self, step: i64, lr_mult: &dyn Fn(i64) -> f64) {
        let c = self.config;
        let one_pass = !self.tensor_ops_only;
        tch::no_grad(|| {
            for (_, s) in &mut self.params {
                let grad = s.value.grad();
                if !grad.defined() {
                    continue;
                }
                if let ([birth], AdamWVariant::Torch) = (&s.births[..], c.variant) {
                    let count = (step + 1 - birth).max(1) as i32;
                    let lr = c.lr * lr_mult(*birth);
                    let update = UniformUpdate::new(&c, lr, s.weight_decay, count);
                    if one_pass && cpu_kernel::applies(&s.value, &grad, &s.exp_avg, &s.exp_avg_sq) {
                        cpu_kernel::update(&s.value, &grad, &s.exp_avg, &s.exp_avg_sq, update.kernel_step());
                    } else {
                        update.apply_with_tensor_ops(s, &grad);
                    }
                    continue;
                }
                let per_entry = PerEntry::new(s, &c, step, lr_mult);
                match c.variant {
                    AdamWVariant::Torch => per_entry.apply_torch(s, &grad, &c),
                    AdamWVariant::LegacyHf => per_entry.apply_legacy_hf(s, &grad, &c),
                }
            }
        });
    }
}

/// Learning rate, weight decay and update count of every entry of a tensor (broadcast scalars
/// where the entries share one birth).
struct PerEntry {
    lr: Tensor,
    weight_decay: Tensor,
    /// Updates each entry has had, including this one.
    count: Tensor,
}

impl PerEntry {
    fn new(s: &ParamState, c: &AdamWConfig, step: i64, lr_mult: &dyn Fn(i64) -> f64) -> Self {
        let dev = s.value.device();
        let scalar = |v: f64| crate::device::scalar_on(v, dev);
        if let [birth] = s.births[..] {
            return PerEntry {
                lr: scalar(c.lr * lr_mult(birth)),
                weight_decay: scalar(s.weight_decay),
                count: scalar((step + 1 - birth).max(1) as f64),
            };
        }
        let count = (-&s.birth + (step + 1) as f64).clamp_min(1.0);
        let mut lr = s.birth.zeros_like();
        for &b in &s.births {
            let here = s.birth.eq(b as f64);
            lr = lr.where_self(&here.logical_not(), &scalar(c.lr * lr_mult(b)));
        }
        let first = s.birth.eq(s.first_birth() as f64);
        let weight_decay = scalar(s.grown_weight_decay).where_self(&first.logical_not(), &scalar(s.weight_decay));
        PerEntry { lr, weight_decay, count }
    }

    /// torch.optim.AdamW per entry: decay, moments, bias-corrected update.
    fn apply_torch(&self, s: &mut ParamState, grad: &Tensor, c: &AdamWConfig) {
        let decay = 1.0 - &self.lr * &self.weight_decay;
        let _ = s.value.g_mul_(&decay);
        let _ = s.exp_avg.g_mul_scalar_(c.beta1);
        let _ = s.exp_avg.g_add_(&(grad * (1.0 - c.beta1)));
        let _ = s.exp_avg_sq.g_mul_scalar_(c.beta2);
        let _ = s.exp_avg_sq.addcmul_(grad, &(grad * (1.0 - c.beta2)));
        let bc1: Tensor = 1.0 - Tensor::pow_scalar(c.beta1, &self.count);
        let bc2: Tensor = 1.0 - Tensor::pow_scalar(c.beta2, &self.count);
        let denom = (&s.exp_avg_sq.sqrt() / bc2.sqrt()) + c.eps;
        let update = &s.exp_avg / denom * (&self.lr / bc1);
        let _ = s.value.g_sub_(&update);
    }

    /// Old HF transformers' `AdamW.step` per entry: moments, denom = sqrt(v) + eps, step size
    /// lr sqrt(1 - b2^t) / (1 - b1^t), then decay of the updated value, p -= lr wd p.
    fn apply_legacy_hf(&self, s: &mut ParamState, grad: &Tensor, c: &AdamWConfig) {
        let _ = s.exp_avg.g_mul_scalar_(c.beta1);
        let _ = s.exp_avg.g_add_(&(grad * (1.0 - c.beta1)));
        let _ = s.exp_avg_sq.g_mul_scalar_(c.beta2);
        let _ = s.exp_avg_sq.addcmul_(grad, &(grad * (1.0 - c.beta2)));
        let denom = s.exp_avg_sq.sqrt() + c.eps;
        let bc1: Tensor = 1.0 - Tensor::pow_scalar(c.beta1, &self.count);
        let bc2: Tensor = 1.0 - Tensor::pow_scalar(c.beta2, &self.count);
        let step_size = &self.lr * bc2.sqrt() / bc1;
        let _ = s.value.g_sub_(&(&s.exp_avg / denom * step_size));
        let decay = &s.value * (&self.lr * &self.weight_decay);
        let _ = s.value.g_sub_(&decay);
    }
}

/// One AdamW update of a tensor whose entries share one birth: scalar learning rate and bias
/// corrections.
struct UniformUpdate {
    lr: f64,
    decay: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    bc1: f64,
    bc2_sqrt: f64,
}

impl UniformUpdate {
    fn new(c: &AdamWConfig, lr: f64, weight_decay: f64, count: i32) -> Self {
        UniformUpdate {
            lr,
            decay: 1.0 - lr * weight_decay,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            bc1: 1.0 - c.beta1.powi(count),
            bc2_sqrt: (1.0 - c.beta2.powi(count)).sqrt(),
        }
    }

    /// The scalars as float32, as torch casts a Python float for a float32 tensor.
    fn kernel_step(&self) -> cpu_kernel::Step {
        cpu_kernel::Step {
            decay: self.decay as f32,
            lerp: (1.0 - self.beta1) as f32,
            beta2: self.beta2 as f32,
            one_minus_beta2: (1.0 - self.beta2) as f32,
            bc2_sqrt: self.bc2_sqrt as f32,
            eps: self.eps as f32,
            step_size: (self.lr / self.bc1) as f32,
        }
    }

    /// Operation for operation as torch.optim.AdamW's single-tensor implementation (any device
    /// and dtype): decay, `lerp_` of the first moment, the second moment, then
    /// `p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`.
    fn apply_with_tensor_ops(&self, s: &mut ParamState, grad: &Tensor) {
        if self.decay != 1.0 {
            let _ = s.value.g_mul_scalar_(self.decay);
        }
        let _ = s.exp_avg.lerp_(grad, 1.0 - self.beta1);
        let _ = s.exp_avg_sq.g_mul_scalar_(self.beta2);
        let _ = s.exp_avg_sq.addcmul_(grad, &(grad * (1.0 - self.beta2)));
        let mut denom = s.exp_avg_sq.sqrt();
        let _ = denom.g_div_scalar_(self.bc2_sqrt);
        let _ = denom.g_add_scalar_(self.eps);
        // m / denom into denom's own storage: one parameter-sized temporary, not two.
        let mut update = s.exp_avg.div_out(&denom, &denom);
        let _ = update.g_mul_scalar_(self.lr / self.bc1);
        let _ = s.value.g_sub_(&update);
    }
}

/// The birth tensor of entries all born at `step`: one float broadcast to the parameter's shape
/// (a stride-0 view, no memory per entry). Growing materialises it (see [`AdamW::grow`]).
fn uniform_birth(value: &Tensor, step: i64) -> Tensor {
    Tensor::from(step as f32).to_device(value.device()).expand(value.size(), true)
}

/// Clips the global L2 norm of the gradients to `max_norm` (torch.nn.utils.clip_grad_norm_):
/// every gradient is multiplied by min(1, max_norm / (norm + 1e-6)), a float32 computed on the
/// device as torch does (a factor of exactly 1 leaves a gradient unchanged). Nothing is read
/// back: the multiplication is queued without waiting for the norm. Returns the norm before
/// clipping, a 0-dim tensor on the device (None without gradients).
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Option<Tensor> {
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return None;
    }
    let total = Tensor::stack(&grads.iter().map(|g| g.norm()).collect::<Vec<_>>(), 0).norm();
    tch::no_grad(|| {
        let coef = (max_norm / (&total + 1e-6)).clamp_max(1.0);
        for g in &grads {
            let _ = g.shallow_clone().g_mul_(&coef);
        }
    });
    Some(total.detach())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_matches_hf_at_its_corners() {
        // HF get_linear_schedule_with_warmup(warmup=10, total=110): 0 at 0, 0.5 at 5, 1 at 10,
        // 0.5 at 60, 0 at 110.
        assert_eq!(linear_schedule(0, 0, 10, 110), 0.0);
        assert_eq!(linear_schedule(5, 0, 10, 110), 0.5);
        assert_eq!(linear_schedule(10, 0, 10, 110), 1.0);
        assert_eq!(linear_schedule(60, 0, 10, 110), 0.5);
        assert_eq!(linear_schedule(110, 0, 10, 110), 0.0);
        // A group born at 50 restarts its own warm-up.
        assert_eq!(linear_schedule(55, 50, 10, 110), 0.5);
        assert_eq!(linear_schedule(60, 50, 10, 110), 1.0);
    }

    /// Two AdamW steps on f(p) = sum(p^2), against torch.optim.AdamW worked by hand:
    /// step 1 moves every entry by exactly lr (m_hat / sqrt(v_hat) = sign(g)) after decay.
    #[test]
    fn adamw_first_step_is_lr_times_the_sign_after_decay() {
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(AdamWConfig { lr: 0.1, weight_decay: 0.01, ..Default::default() });
        opt.add("p", &p, 0, 0.01).unwrap();
        opt.zero_grad();
        (&p * &p).sum(Kind::Float).backward();
        opt.step(0, &|_| 1.0);
        let v = Vec::<f32>::try_from(&p).unwrap();
        let expect = [1.0 * (1.0 - 0.001) - 0.1, -2.0 * (1.0 - 0.001) + 0.1];
        for (a, b) in v.iter().zip(expect) {
            assert!((*a as f64 - b).abs() < 1e-6, "{v:?} vs {expect:?}");
        }
    }

    /// The one-pass CPU kernel and the tensor-op path (torch's single-tensor AdamW, op for op)
    /// agree to float32 rounding over several steps, on a tensor large enough to be split
    /// across threads and on a small one.
    #[test]
    fn cpu_kernel_matches_the_tensor_op_update() {
        tch::manual_seed(3);
        for n in [7i64, 3 * (1 << 15) + 5] {
            let c = AdamWConfig { lr: 0.01, weight_decay: 0.1, ..Default::default() };
            let fresh = |t: &Tensor| t.copy();
            let (p0, m0, v0) = (
                Tensor::randn([n], (Kind::Float, tch::Device::Cpu)),
                Tensor::zeros([n], (Kind::Float, tch::Device::Cpu)),
                Tensor::zeros([n], (Kind::Float, tch::Device::Cpu)),
            );
            let mut ops = ParamState {
                value: fresh(&p0),
                exp_avg: fresh(&m0),
                exp_avg_sq: fresh(&v0),
                birth: uniform_birth(&p0, 0),
                births: vec![0],
                weight_decay: 0.1,
                grown_weight_decay: 0.1,
            };
            let (kp, km, kv) = (fresh(&p0), fresh(&m0), fresh(&v0));
            for count in 1..=4 {
                let g = Tensor::randn([n], (Kind::Float, tch::Device::Cpu));
                let u = UniformUpdate::new(&c, c.lr * 0.5, 0.1, count);
                tch::no_grad(|| u.apply_with_tensor_ops(&mut ops, &g));
                assert!(cpu_kernel::applies(&kp, &g, &km, &kv));
                cpu_kernel::update(&kp, &g, &km, &kv, u.kernel_step());
            }
            for (a, b, what) in [(&ops.value, &kp, "p"), (&ops.exp_avg, &km, "m"), (&ops.exp_avg_sq, &kv, "v")] {
                let diff = (a - b).abs().max().double_value(&[]);
                let scale = a.abs().max().double_value(&[]);
                assert!(diff <= 4e-7 * scale, "{what} (n = {n}): kernel differs by {diff} (scale {scale})");
            }
            // Every thread's chunk was updated (an entry may by chance come back to its start).
            let unchanged = (&kp - &p0).eq(0.0).sum(Kind::Int64).int64_value(&[]);
            assert!(unchanged * 100 <= n, "{unchanged} of {n} entries never moved");
        }
    }

    /// zero_grad drops the gradients (set_to_none) and the next backward writes fresh ones; a
    /// parameter whose birth tensor is a broadcast scalar saves and restores like any other.
    #[test]
    fn zero_grad_sets_gradients_to_none_and_uniform_births_round_trip() {
        let p = Tensor::from_slice(&[1.0f32, -2.0, 3.0]).set_requires_grad(true);
        let mut opt = AdamW::new(AdamWConfig { lr: 0.1, weight_decay: 0.0, ..Default::default() });
        opt.add("p", &p, 4, 0.0).unwrap();
        (&p * &p).sum(Kind::Float).backward();
        assert!(p.grad().defined());
        opt.zero_grad();
        assert!(!p.grad().defined(), "zero_grad left a gradient");
        (&p * 2.0).sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(p.grad()).unwrap(), vec![2.0, 2.0, 2.0]);
        let [m, v, birth] = opt.state("p").unwrap();
        assert_eq!(Vec::<f32>::try_from(birth).unwrap(), vec![4.0, 4.0, 4.0]);
        let (m, v, birth) = (m.copy(), v.copy(), birth.contiguous());
        opt.set_state("p", &m, &v, &birth).unwrap();
        let [_, _, back] = opt.state("p").unwrap();
        assert_eq!(Vec::<f32>::try_from(back).unwrap(), vec![4.0, 4.0, 4.0]);
    }

    /// A grown parameter's new entries start their bias correction at their birth: their first
    /// update is again exactly lr in size, while old entries keep their moments.
    #[test]
    fn grown_entries_are_corrected_from_their_birth() {
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(AdamWConfig { lr: 0.1, weight_decay: 0.0, ..Default::default() });
        opt.add("p", &p, 0, 0.0).unwrap();
        for step in 0..3 {
            opt.zero_grad();
            (&p * &p).sum(Kind::Float).backward();
            opt.step(step, &|_| 1.0);
        }
        let old = f64::try_from(&p).unwrap();
        let grown = Tensor::cat(&[p.detach(), Tensor::from_slice(&[5.0f32])], 0).set_requires_grad(true);
        opt.grow("p", &grown, 3).unwrap();
        let [m, _, birth] = opt.state("p").unwrap();
        assert_eq!(Vec::<f32>::try_from(birth).unwrap(), vec![0.0, 3.0]);
        assert_eq!(f64::try_from(m.get(1)).unwrap(), 0.0);
        opt.zero_grad();
        (&grown * &grown).sum(Kind::Float).backward();
        opt.step(3, &|_| 1.0);
        let v = Vec::<f32>::try_from(&grown).unwrap();
        assert!((v[1] as f64 - 4.9).abs() < 1e-6, "new entry moved by lr: {v:?}");
        assert!((v[0] as f64 - old).abs() < 0.1, "old entry keeps its moments: {v:?}");
    }

    fn one_step(variant: AdamWVariant, p0: f32, g: f32, lr: f64, wd: f64, eps: f64) -> f64 {
        let p = Tensor::from_slice(&[p0]).set_requires_grad(true);
        let mut opt = AdamW::new(AdamWConfig { lr, weight_decay: wd, eps, variant, ..Default::default() });
        opt.add("p", &p, 0, wd).unwrap();
        opt.zero_grad();
        (&p * g as f64).sum(Kind::Float).backward();
        opt.step(0, &|_| 1.0);
        f64::try_from(&p).unwrap()
    }

    /// Worked numbers: g = 1e-9, eps = 1e-8, betas (0.9, 0.999). legacy_hf: m = 1e-10,
    /// sqrt(v) = sqrt(1e-21) = 3.16e-11, step = lr sqrt(0.001) / 0.1 * m / (sqrt(v) + eps)
    /// = 0.00315 lr; torch: m_hat / (sqrt(v_hat) + eps) = 1e-9 / 1.1e-8 = 0.0909 lr.
    #[test]
    fn legacy_hf_and_torch_first_updates_of_a_tiny_gradient_by_hand() {
        let legacy = 1.0 - one_step(AdamWVariant::LegacyHf, 1.0, 1e-9, 1.0, 0.0, 1e-8);
        let expect = 0.001f64.sqrt() / 0.1 * 1e-10 / (1e-21f64.sqrt() + 1e-8);
        assert!((legacy - expect).abs() < 1e-6, "legacy_hf moved {legacy}, expected {expect}");
        assert!((legacy - 0.003152).abs() < 1e-6, "{legacy}");
        let torch = 1.0 - one_step(AdamWVariant::Torch, 1.0, 1e-9, 1.0, 0.0, 1e-8);
        assert!((torch - 1.0 / 11.0).abs() < 1e-5, "torch moved {torch}, expected 1/11");
    }

    /// Weight decay: torch decays first (p (1 - lr wd) - lr = 2 * 0.99 - 0.1 = 1.88); legacy_hf
    /// decays the updated value (p - lr = 1.9, then 1.9 (1 - lr wd) = 1.881). Both first steps
    /// move by lr (m / sqrt(v) = sign g once corrected), up to eps.
    #[test]
    fn legacy_hf_decays_after_the_update_and_torch_before() {
        let legacy = one_step(AdamWVariant::LegacyHf, 2.0, 0.5, 0.1, 0.1, 1e-8);
        assert!((legacy - 1.881).abs() < 1e-6, "legacy_hf: {legacy}");
        let torch = one_step(AdamWVariant::Torch, 2.0, 0.5, 0.1, 0.1, 1e-8);
        assert!((torch - 1.88).abs() < 1e-6, "torch: {torch}");
    }

    /// Entries born at step 3 under legacy_hf: their count starts at 1 (first update exactly lr
    /// after correction: g = 10, m = 1, sqrt(v) = sqrt(0.1), step lr sqrt(0.001) / 0.1), and they
    /// decay with the grown weight decay (0.5) while the first entries (decay 0) do not:
    /// 5 - 0.1 = 4.9, then 4.9 (1 - 0.1 * 0.5) = 4.655.
    #[test]
    fn legacy_hf_births_count_from_their_step_with_their_own_decay() {
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(AdamWConfig { lr: 0.1, weight_decay: 0.0, variant: AdamWVariant::LegacyHf, ..Default::default() });
        opt.add("p", &p, 0, 0.0).unwrap();
        opt.set_grown_weight_decay("p", 0.5).unwrap();
        let mut old = Vec::new();
        for step in 0..3 {
            opt.zero_grad();
            (&p * &p).sum(Kind::Float).backward();
            opt.step(step, &|_| 1.0);
            old.push(f64::try_from(&p).unwrap());
        }
        // Old entry, hand-computed: each step p -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps).
        let (mut q, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
        for (t, got) in (1..=3).zip(&old) {
            let g = 2.0 * q;
            m = 0.9 * m + 0.1 * g;
            v = 0.999 * v + 0.001 * g * g;
            q -= 0.1 * (1.0 - 0.999f64.powi(t)).sqrt() / (1.0 - 0.9f64.powi(t)) * m / (v.sqrt() + 1e-8);
            assert!((q - got).abs() < 1e-5, "old entry at t = {t}: {got} vs {q}");
        }
        let grown = Tensor::cat(&[p.detach(), Tensor::from_slice(&[5.0f32])], 0).set_requires_grad(true);
        opt.grow("p", &grown, 3).unwrap();
        opt.zero_grad();
        (&grown * &grown).sum(Kind::Float).backward();
        opt.step(3, &|_| 1.0);
        let after = Vec::<f32>::try_from(&grown).unwrap();
        assert!((after[1] as f64 - 4.655).abs() < 1e-5, "new entry: {after:?}");
        let g = 2.0 * q;
        m = 0.9 * m + 0.1 * g;
        v = 0.999 * v + 0.001 * g * g;
        q -= 0.1 * (1.0 - 0.999f64.powi(4)).sqrt() / (1.0 - 0.9f64.powi(4)) * m / (v.sqrt() + 1e-8);
        assert!((after[0] as f64 - q).abs() < 1e-5, "old entry at t = 4, no decay: {after:?} vs {q}");
    }

    /// `constant`: entries born after 0 keep the base rate; step-0 entries follow the schedule.
    #[test]
    fn lr_policies_at_a_later_birth() {
        // warm-up 10, total 110, at step 60: global 0.5; born at 50: restart 1.0 (warm-up done).
        assert_eq!(LrPolicy::Follow.multiplier(60, 50, 10, 110), 0.5);
        assert_eq!(LrPolicy::Restart.multiplier(55, 50, 10, 110), 0.5);
        assert_eq!(LrPolicy::Constant.multiplier(60, 50, 10, 110), 1.0);
        assert_eq!(LrPolicy::Constant.multiplier(109, 50, 10, 110), 1.0);
        assert_eq!(LrPolicy::Constant.multiplier(60, 0, 10, 110), 0.5);
    }
}
