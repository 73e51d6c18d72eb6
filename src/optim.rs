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
use tch::{Device, Kind, Tensor};

mod cpu_kernel;
mod flat;
mod update;

use flat::{FlatGroup, MemberClasses};
use update::{Buffers, ClassScalars, EntryClass, Shared};

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
    /// The parameter itself (the tensor the model holds); a view into its flat buffer once packed.
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
    /// Each entry's class (int32, a view into the flat class buffer) once packed.
    class: Option<Tensor>,
    /// The class of every entry when they share one (a tensor that never grew), once packed.
    uniform_class: Option<usize>,
}

impl ParamState {
    /// The birth of the entries the tensor was registered with.
    fn first_birth(&self) -> i64 {
        self.births.iter().copied().min().unwrap_or(0)
    }

    /// The weight decay of entries born at `birth`.
    fn weight_decay_of(&self, birth: i64) -> f64 {
        if birth == self.first_birth() {
            self.weight_decay
        } else {
            self.grown_weight_decay
        }
    }
}

/// Decoupled-weight-decay Adam (torch.optim.AdamW numerics) over named, growable parameters.
#[derive(Debug)]
pub struct AdamW {
    pub config: AdamWConfig,
    /// See [`AdamW::set_tensor_ops_only`].
    tensor_ops_only: bool,
    /// See [`AdamW::set_flat`].
    flat: bool,
    params: Vec<(String, ParamState)>,
    index: HashMap<String, usize>,
    /// The distinct (birth, weight decay) classes of the packed entries.
    classes: Vec<EntryClass>,
    groups: Vec<FlatGroup>,
    /// The flat buffers hold every parameter at its current shape.
    packed: bool,
    /// Every `.grad` is a view into its group's flat gradient buffer (until `zero_grad`).
    grads_gathered: bool,
    /// Updates that ran through the flat buffers (the rest ran one tensor at a time).
    flat_updates: u64,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        AdamW {
            config,
            tensor_ops_only: false,
            flat: true,
            params: Vec::new(),
            index: HashMap::new(),
            classes: Vec::new(),
            groups: Vec::new(),
            packed: false,
            grads_gathered: false,
            flat_updates: 0,
        }
    }

    /// Update float32 CPU tensors with tensor ops too, as on CUDA, instead of the one-pass CPU
    /// kernel (the same arithmetic, bit for bit): `bench --ops` counts the ops a GPU would run.
    pub fn set_tensor_ops_only(&mut self, on: bool) {
        self.tensor_ops_only = on;
        self.packed = false;
    }

    /// Clip and update through flat buffers where tensor ops run (the default), a fixed number
    /// of ops per step; off, one parameter at a time (the tests' oracle: the same bits).
    pub fn set_flat(&mut self, on: bool) {
        self.flat = on;
        self.packed = false;
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
            class: None,
            uniform_class: None,
        };
        self.index.insert(name.to_string(), self.params.len());
        self.params.push((name.to_string(), state));
        self.packed = false;
        Ok(())
    }

    /// Sets the weight decay of the entries that later growth adds to `name` (by default the
    /// tensor's own).
    pub fn set_grown_weight_decay(&mut self, name: &str, weight_decay: f64) -> Result<()> {
        let Some(&i) = self.index.get(name) else { bail!("unknown parameter {name}") };
        self.params[i].1.grown_weight_decay = weight_decay;
        self.packed = false;
        Ok(())
    }

    /// Replaces a parameter by a larger one whose old entries sit at the top-left corner (the
    /// same index in every dimension). Moments are carried over; new entries get zero moments
    /// and birth `step`. The flat buffers are re-packed before the next clipping or update.
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
        st.class = None;
        self.packed = false;
        Ok(())
    }

    /// How many updates ran through the flat buffers (the others, one tensor at a time).
    pub fn flat_updates(&self) -> u64 {
        self.flat_updates
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
        s.class = None;
        self.packed = false;
        Ok(())
    }

    /// Drops every parameter's gradient (torch's `zero_grad(set_to_none=True)`): the next
    /// backward pass writes fresh gradients instead of adding to zeroed ones (no memset, no
    /// accumulation pass), and their memory is free until then. A parameter that gets no
    /// gradient in a step is then skipped by [`AdamW::step`], as torch skips it.
    pub fn zero_grad(&mut self) {
        self.grads_gathered = false;
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

    /// Copies every parameter, its moments and its entries' classes into flat buffers, one per
    /// dtype and device, and re-points the parameter at its slice (`flat.rs`). Members whose size
    /// is a multiple of 16 entries come first, so that their slices stay 64-byte aligned. Does
    /// nothing unless a parameter was added, grown or restored since the last packing; clipping
    /// and [`AdamW::step`] pack first, and the trainer packs after a step that grew (so that an
    /// ordinary step never copies).
    pub fn pack(&mut self) {
        if self.packed {
            return;
        }
        let mut keys: Vec<(Kind, Device)> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, (_, s)) in self.params.iter().enumerate() {
            let key = (s.value.kind(), s.value.device());
            let g = keys.iter().position(|k| *k == key).unwrap_or_else(|| {
                keys.push(key);
                members.push(Vec::new());
                keys.len() - 1
            });
            members[g].push(i);
        }
        // Flat buffers only where tensor ops run: float32 CPU tensors take the one-pass kernel one
        // at a time, which needs no flat copy (nor the transient second copy packing makes).
        let flat = self.flat && (self.tensor_ops_only || keys.iter().any(|&(k, d)| !(k == Kind::Float && d == Device::Cpu)));
        let mut classes: Vec<EntryClass> = Vec::new();
        let mut groups = Vec::with_capacity(keys.len());
        tch::no_grad(|| {
            for ((_, device), mut ids) in keys.into_iter().zip(members) {
                ids.sort_by_key(|&i| !self.params[i].1.value.numel().is_multiple_of(16));
                let mut member_classes = Vec::with_capacity(ids.len());
                for &i in &ids {
                    let s = &mut self.params[i].1;
                    let class_ids: Vec<i32> = s
                        .births
                        .iter()
                        .map(|&b| {
                            let k = EntryClass { birth: b, weight_decay: s.weight_decay_of(b) };
                            classes.iter().position(|c| *c == k).unwrap_or_else(|| {
                                classes.push(k);
                                classes.len() - 1
                            }) as i32
                        })
                        .collect();
                    s.uniform_class = (class_ids.len() == 1).then(|| class_ids[0] as usize);
                    member_classes.push(class_ids);
                }
                let described: Vec<MemberClasses> = ids
                    .iter()
                    .zip(member_classes)
                    .map(|(&i, c)| {
                        let s = &self.params[i].1;
                        match c.as_slice() {
                            [only] => MemberClasses::Uniform(*only),
                            _ => {
                                // `births` in ascending order, with their classes.
                                let mut pairs: Vec<(i64, i32)> = s.births.iter().copied().zip(c).collect();
                                pairs.sort_unstable();
                                let (births, classes) = pairs.into_iter().unzip();
                                MemberClasses::ByBirth { births, classes, birth: &s.birth }
                            }
                        }
                    })
                    .collect();
                if !flat {
                    // Each tensor keeps its own storage; a tensor that grew gets its own classes.
                    let own: Vec<Option<Tensor>> = described
                        .iter()
                        .zip(&ids)
                        .map(|(d, &i)| match d {
                            MemberClasses::Uniform(_) => None,
                            grown => {
                                let shape = self.params[i].1.value.size();
                                Some(
                                    flat::class_buffer(device, &[shape.iter().product()], std::slice::from_ref(grown))
                                        .view(shape.as_slice()),
                                )
                            }
                        })
                        .collect();
                    drop(described);
                    for (&i, class) in ids.iter().zip(own) {
                        self.params[i].1.class = class;
                    }
                    continue;
                }
                let numels: Vec<i64> = ids.iter().map(|&i| self.params[i].1.value.numel() as i64).collect();
                let class = flat::class_buffer(device, &numels, &described);
                let states: Vec<&ParamState> = ids.iter().map(|&i| &self.params[i].1).collect();
                let group = FlatGroup::pack(
                    ids.clone(),
                    &states.iter().map(|s| &s.value).collect::<Vec<_>>(),
                    &states.iter().map(|s| &s.exp_avg).collect::<Vec<_>>(),
                    &states.iter().map(|s| &s.exp_avg_sq).collect::<Vec<_>>(),
                    class,
                );
                for (j, &i) in group.members.iter().enumerate() {
                    let s = &mut self.params[i].1;
                    let shape = s.value.size();
                    s.value.set_data(&group.slice(&group.value, j, &shape));
                    s.exp_avg = group.slice(&group.exp_avg, j, &shape);
                    s.exp_avg_sq = group.slice(&group.exp_avg_sq, j, &shape);
                    s.class = Some(group.slice(&group.class, j, &shape));
                }
                groups.push(group);
            }
        });
        self.classes = classes;
        self.groups = groups;
        self.packed = true;
        self.grads_gathered = false;
    }

    /// Whether clipping and the update run through the flat buffers: where they run tensor ops
    /// (a GPU, or `tensor_ops_only`), so that their count does not grow with the number of
    /// tensors. Float32 CPU buffers take the one-pass kernel one tensor at a time instead (the
    /// same bits, without gathering the gradients: a copy a CPU would pay for nothing).
    fn flat_path(&mut self) -> bool {
        self.pack();
        !self.groups.is_empty()
    }

    /// Gathers the gradients into the flat gradient buffers (see [`FlatGroup::gather_grads`]).
    /// False when some parameter has no gradient this step (the per-tensor path then runs).
    fn gather_grads(&mut self) -> bool {
        if self.grads_gathered {
            return true;
        }
        self.pack();
        for g in &self.groups {
            let values: Vec<&Tensor> = g.members.iter().map(|&i| &self.params[i].1.value).collect();
            if !g.gather_grads(&values) {
                return false;
            }
        }
        self.grads_gathered = true;
        true
    }

    /// Clips the global L2 norm of the gradients to `max_norm` (torch.nn.utils.clip_grad_norm_,
    /// see [`clip_grad_norm`]): with flat buffers one `_foreach_norm` over the gradients and one
    /// multiplication per buffer. Returns the norm before clipping, on the device.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Option<Tensor> {
        let values: Vec<Tensor> = self.params.iter().map(|(_, s)| s.value.shallow_clone()).collect();
        if !self.flat_path() || !self.gather_grads() {
            return clip_grad_norm(&values, max_norm);
        }
        let grads: Vec<Tensor> = values.iter().map(|v| v.grad()).collect();
        if grads.is_empty() {
            return None;
        }
        let total = flat::stacked_l2_norms(&grads).expect("_foreach_norm over the gradients").norm();
        tch::no_grad(|| {
            let coef = clip_coefficient(&total, max_norm);
            for g in &self.groups {
                let _ = g.grad.shallow_clone().g_mul_(&coef);
            }
        });
        Some(total.detach())
    }

    /// One AdamW update at global step `step` (0-based). `lr_mult(birth)` is the learning-rate
    /// multiplier for entries born at `birth`; entries born later than `step` do not exist.
    ///
    /// Every entry's scalars come from its class (birth, weight decay; `update.rs`): one update
    /// per flat buffer where tensor ops run ([`AdamW::set_flat`]), else one per parameter (the CPU's
    /// one-pass kernel, `flat` off, or a parameter without a gradient this step, which torch
    /// skips).
    pub fn step(&mut self, step: i64, lr_mult: &dyn Fn(i64) -> f64) {
        self.pack();
        let table = update::class_table(&self.config, &self.classes, step, lr_mult);
        let shared = update::Shared::new(&self.config);
        let variant = self.config.variant;
        if self.flat_path() && self.gather_grads() {
            for g in &self.groups {
                let b = Buffers {
                    value: &g.value,
                    grad: &g.grad,
                    exp_avg: &g.exp_avg,
                    exp_avg_sq: &g.exp_avg_sq,
                    class: Some(&g.class),
                    uniform: 0,
                };
                apply_update(variant, &b, &table, shared, self.tensor_ops_only);
            }
            self.flat_updates += 1;
            return;
        }
        for (_, s) in &self.params {
            let grad = s.value.grad();
            if !grad.defined() {
                continue;
            }
            let b = Buffers {
                value: &s.value,
                grad: &grad,
                exp_avg: &s.exp_avg,
                exp_avg_sq: &s.exp_avg_sq,
                class: if s.uniform_class.is_some() { None } else { s.class.as_ref() },
                uniform: s.uniform_class.unwrap_or(0),
            };
            apply_update(variant, &b, &table, shared, self.tensor_ops_only);
        }
    }
}

/// One AdamW update of `b` in place: the one-pass CPU kernel where it applies (float32 CPU
/// buffers, unless `tensor_ops_only`), else tensor ops (what a GPU runs; `bench --ops` counts
/// these on the CPU).
fn apply_update(variant: AdamWVariant, b: &Buffers, table: &[ClassScalars], shared: Shared, tensor_ops_only: bool) {
    if !tensor_ops_only && cpu_kernel::applies(b) {
        cpu_kernel::update(variant, b, table, shared);
    } else {
        tch::no_grad(|| update::apply_with_tensor_ops(variant, b, table, shared));
    }
}

/// The birth tensor of entries all born at `step`: one float broadcast to the parameter's shape
/// (a stride-0 view, no memory per entry). Growing materialises it (see [`AdamW::grow`]).
fn uniform_birth(value: &Tensor, step: i64) -> Tensor {
    Tensor::from(step as f32).to_device(value.device()).expand(value.size(), true)
}

/// min(1, max_norm / (norm + 1e-6)), a float32 on the device as torch computes it.
fn clip_coefficient(total: &Tensor, max_norm: f64) -> Tensor {
    (max_norm / (total + 1e-6)).clamp_max(1.0)
}

/// Clips the global L2 norm of the gradients to `max_norm` (torch.nn.utils.clip_grad_norm_):
/// every gradient is multiplied by min(1, max_norm / (norm + 1e-6)), a float32 computed on the
/// device as torch does (a factor of exactly 1 leaves a gradient unchanged). Nothing is read
/// back: the multiplication is queued without waiting for the norm. Returns the norm before
/// clipping, a 0-dim tensor on the device (None without gradients). One tensor at a time: the
/// flat path ([`AdamW::clip_grad_norm`]) gives the same bits.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Option<Tensor> {
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return None;
    }
    let total = Tensor::stack(&grads.iter().map(|g| g.norm()).collect::<Vec<_>>(), 0).norm();
    tch::no_grad(|| {
        let coef = clip_coefficient(&total, max_norm);
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

    /// The one-pass CPU kernel and the tensor-op path (what a GPU runs) agree over several steps
    /// (the moments bit for bit, the values to an ulp), for both AdamW variants, with entries of three classes (births, weight
    /// decays) mixed in one buffer, on a buffer large enough to be split across threads and on a
    /// small one.
    #[test]
    fn cpu_kernel_matches_the_tensor_op_update() {
        tch::manual_seed(3);
        for variant in [AdamWVariant::Torch, AdamWVariant::LegacyHf] {
            for n in [7i64, 3 * (1 << 15) + 5] {
                let c = AdamWConfig { lr: 0.01, weight_decay: 0.1, variant, ..Default::default() };
                let classes = [
                    EntryClass { birth: 0, weight_decay: 0.1 },
                    EntryClass { birth: 2, weight_decay: 0.5 },
                    EntryClass { birth: 0, weight_decay: 0.0 },
                ];
                let class = Tensor::randint(3, [n], (Kind::Int, Device::Cpu));
                let p0 = Tensor::randn([n], (Kind::Float, Device::Cpu));
                let zeros = || Tensor::zeros([n], (Kind::Float, Device::Cpu));
                let (kp, km, kv) = (p0.copy(), zeros(), zeros());
                let (op, om, ov) = (p0.copy(), zeros(), zeros());
                let shared = update::Shared::new(&c);
                for step in 2..6 {
                    let g = Tensor::randn([n], (Kind::Float, Device::Cpu));
                    let table = update::class_table(&c, &classes, step, &|b| 0.5 + b as f64 * 0.1);
                    let kernel = Buffers { value: &kp, grad: &g, exp_avg: &km, exp_avg_sq: &kv, class: Some(&class), uniform: 0 };
                    assert!(cpu_kernel::applies(&kernel));
                    apply_update(variant, &kernel, &table, shared, false);
                    let ops = Buffers { value: &op, grad: &g, exp_avg: &om, exp_avg_sq: &ov, class: Some(&class), uniform: 0 };
                    apply_update(variant, &ops, &table, shared, true);
                }
                // m and v are exact; p differs by at most an ulp where LibTorch's vectorised
                // square root (MKL's, on x86) is not correctly rounded (the kernel's is; CUDA's is).
                assert!(om.equal(&km) && ov.equal(&kv), "{variant:?} (n = {n}): the moments differ");
                let diff = (&op - &kp).abs().max().double_value(&[]);
                let scale = op.abs().max().double_value(&[]);
                assert!(diff <= 2.0 * f32::EPSILON as f64 * scale, "{variant:?} (n = {n}): p differs by {diff} (scale {scale})");
                // Every thread's chunk was updated (an entry may by chance come back to its start).
                let unchanged = (&kp - &p0).eq(0.0).sum(Kind::Int64).int64_value(&[]);
                assert!(unchanged * 100 <= n, "{unchanged} of {n} entries never moved");
            }
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

    /// Packing gives every entry the class of its own (birth, weight decay), checked entry by entry
    /// against births worked out by hand: `a` grew twice (2x3 born at 0, to 3x4 at 5, to 4x4 at
    /// 9) with its own weight decay for grown entries, `b` grew once at 5 with another weight
    /// decay (so step 5 has two classes), `c` never grew. With tensor ops all three share one flat
    /// buffer; for the CPU kernel each keeps its own storage (a class tensor only where it grew).
    #[test]
    fn packed_classes_name_each_entrys_birth_and_weight_decay() {
        let expect = |name: &str, index: &[i64]| -> (i64, f64) {
            match (name, index) {
                ("a", [i, j]) if *i < 2 && *j < 3 => (0, 0.01),
                ("a", [i, _]) if *i < 3 => (5, 0.0),
                ("a", _) => (9, 0.0),
                ("b", [i]) if *i < 5 => (0, 0.02),
                ("b", _) => (5, 0.02),
                _ => (3, 0.01),
            }
        };
        for tensor_ops in [true, false] {
            let ones = |shape: &[i64]| Tensor::ones(shape, (Kind::Float, Device::Cpu));
            let mut opt = AdamW::new(AdamWConfig { lr: 0.1, weight_decay: 0.01, ..Default::default() });
            opt.set_tensor_ops_only(tensor_ops);
            opt.add("a", &ones(&[2, 3]), 0, 0.01).unwrap();
            opt.add("b", &ones(&[5]), 0, 0.02).unwrap();
            opt.add("c", &ones(&[4, 4]), 3, 0.01).unwrap();
            opt.set_grown_weight_decay("a", 0.0).unwrap();
            opt.pack();
            opt.grow("a", &ones(&[3, 4]), 5).unwrap();
            opt.grow("b", &ones(&[7]), 5).unwrap();
            opt.pack();
            opt.grow("a", &ones(&[4, 4]), 9).unwrap();
            opt.pack();
            assert_eq!(opt.groups.len(), usize::from(tensor_ops));
            let mut seen = 0;
            for (name, s) in &opt.params {
                let shape = s.value.size();
                let n = shape.iter().product::<i64>() as usize;
                let class = match (&s.class, s.uniform_class) {
                    (Some(c), _) => Vec::<i32>::try_from(c.flatten(0, -1)).unwrap(),
                    (None, Some(u)) => vec![u as i32; n],
                    (None, None) => panic!("{name}: no class"),
                };
                assert_eq!(class.len(), n);
                for (e, &k) in class.iter().enumerate() {
                    let index: Vec<i64> =
                        shape.iter().rev().scan(e as i64, |rest, &d| Some(std::mem::replace(rest, *rest / d) % d)).collect();
                    let index: Vec<i64> = index.into_iter().rev().collect();
                    let c = opt.classes[k as usize];
                    assert_eq!((c.birth, c.weight_decay), expect(name, &index), "{name}{index:?} (tensor ops {tensor_ops})");
                    seen += 1;
                }
            }
            assert_eq!(seen, 16 + 7 + 16);
            assert_eq!(opt.classes.len(), 6);
        }
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
