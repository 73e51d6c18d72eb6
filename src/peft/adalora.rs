//! AdaLoRA (docs/method.md, "AdaLoRA"), numerically as huggingface/peft's `AdaLoraModel` (peft 0.17):
//! dW = B diag(E) A * alpha / (r_init + 1e-5), with A (r x d_in), E (r x 1), B (d_out x r); the
//! triplets (row of A, entry of E, column of B) are ranked by an EMA sensitivity x uncertainty
//! score, and every dT steps the E entries outside the global top-b(t) are zeroed in place under a
//! cubic budget schedule. Tensors never change shape: pruned triplets stay trainable (PEFT masks,
//! it does not resize), so the optimizer never grows anything.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::schedule::AdaloraSchedule;
use super::{Adapter, RankController, Shared};
use crate::optim::AdamW;

/// The `method.adalora` block (PEFT's `AdaLoraConfig` names in brackets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaLoraConfig {
    /// Starting rank of every matrix, r_init (`init_r`); the initial budget is r_init * n.
    pub init_rank: i64,
    /// Average final rank (`target_r`); the final budget is target_rank * n.
    pub target_rank: i64,
    /// Warm-up steps at the initial budget, without masking (`tinit`).
    pub tinit: i64,
    /// Final steps at the final budget with the rank pattern frozen (`tfinal`).
    pub tfinal: i64,
    /// Masking interval dT of the budget phase (`deltaT`).
    pub delta_t: i64,
    /// EMA coefficient of the sensitivity |w * grad w| (`beta1`).
    pub beta1: f64,
    /// EMA coefficient of the uncertainty |I - Ibar| (`beta2`).
    pub beta2: f64,
    /// AdaLoRA's own adapter dropout (`lora_dropout`); unset: `method.lora_dropout`.
    pub dropout: Option<f64>,
}

impl Default for AdaLoraConfig {
    fn default() -> Self {
        AdaLoraConfig { init_rank: 3, target_rank: 2, tinit: 0, tfinal: 0, delta_t: 1, beta1: 0.85, beta2: 0.85, dropout: None }
    }
}

impl AdaLoraConfig {
    /// Checks the block's values against a run of `total_steps`; errors name the key.
    pub fn validate(&self, total_steps: i64) -> Result<()> {
        if self.init_rank < 1 {
            bail!("key `method.adalora.init_rank` = {}: must be at least 1", self.init_rank);
        }
        if self.target_rank < 1 {
            bail!("key `method.adalora.target_rank` = {}: must be at least 1", self.target_rank);
        }
        if self.target_rank > self.init_rank {
            bail!(
                "key `method.adalora.target_rank` = {}: the starting rank init_rank = {} is below the budget (AdaLoRA only prunes)",
                self.target_rank,
                self.init_rank
            );
        }
        if self.tinit < 0 || self.tfinal < 0 {
            bail!("key `method.adalora.tinit` = {} / `tfinal` = {}: must not be negative", self.tinit, self.tfinal);
        }
        if self.tinit + self.tfinal >= total_steps {
            bail!(
                "key `method.adalora.tinit` = {} (with tfinal = {}): leaves no budget phase in the total of {total_steps} training steps",
                self.tinit,
                self.tfinal
            );
        }
        if self.delta_t < 1 {
            bail!("key `method.adalora.delta_t` = {}: must be at least 1", self.delta_t);
        }
        for (key, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(beta > 0.0 && beta < 1.0) {
                bail!("key `method.adalora.{key}` = {beta}: must be in (0, 1)");
            }
        }
        Ok(())
    }
}

/// One adapted matrix: PEFT's `SVDLinear` adapter (`lora_A`, `lora_E`, `lora_B`).
#[derive(Debug)]
pub struct AdaLoraAdapter {
    /// r x d_in (right singular vectors P)
    pub a: Tensor,
    /// d_out x r (left singular vectors Q)
    pub b: Tensor,
    /// r x 1 (singular values lambda)
    pub e: Tensor,
    /// PEFT's `scaling`: lora_alpha, or r_init when lora_alpha <= 0.
    pub scaling: f64,
    /// PEFT's `ranknum + 1e-5`: a one-element float tensor, so the division rounds as PEFT's.
    ranknum: Tensor,
    /// The triplets kept by the last mask (PEFT's `rank_pattern`); all kept before any mask.
    pattern: Vec<bool>,
    /// The same pattern as an r x 1 "drop" mask on the device (None while all are kept), so the
    /// final phase re-applies it at every step without copying anything to the device.
    drop: Option<Tensor>,
}

impl AdaLoraAdapter {
    /// PEFT's `reset_lora_parameters`: E = 0, A and B ~ N(0, 0.02^2).
    pub fn new(d_in: i64, d_out: i64, init_rank: i64, alpha: f64, device: Device) -> Self {
        let f = (Kind::Float, device);
        let a = Tensor::randn([init_rank, d_in], f) * 0.02;
        let b = Tensor::randn([d_out, init_rank], f) * 0.02;
        let e = Tensor::zeros([init_rank, 1], f);
        Self::from_tensors(a, b, e, alpha)
    }

    /// An adapter with the given A (r x d_in), B (d_out x r) and E (r x 1); they become
    /// trainable leaves.
    pub fn from_tensors(a: Tensor, b: Tensor, e: Tensor, alpha: f64) -> Self {
        let r = a.size()[0];
        assert_eq!(b.size()[1], r, "lora_B must be d_out x r");
        assert_eq!(e.size(), [r, 1], "lora_E must be r x 1");
        let ranknum = Tensor::from_slice(&[r as f32]).to_device(a.device()) + 1e-5;
        AdaLoraAdapter {
            a: a.detach().set_requires_grad(true),
            b: b.detach().set_requires_grad(true),
            e: e.detach().set_requires_grad(true),
            scaling: if alpha > 0.0 { alpha } else { r as f64 },
            ranknum,
            pattern: vec![true; r as usize],
            drop: None,
        }
    }

    /// r_init, the (fixed) size of the triplet dimension.
    pub fn init_rank(&self) -> i64 {
        self.a.size()[0]
    }

    /// Which triplets the last mask kept (all, before the first mask).
    pub fn pattern(&self) -> &[bool] {
        &self.pattern
    }

    /// Zeroes E where `drop` (r x 1 bool, on the device) holds, in place (the optimizer holds
    /// this very tensor), and records `keep` (its complement, on the host) as the rank pattern.
    fn apply_mask(&mut self, drop: Tensor, keep: Vec<bool>) {
        assert_eq!(keep.len() as i64, self.init_rank(), "rank pattern length");
        self.pattern = keep;
        self.drop = Some(drop);
        self.reapply_mask();
    }

    /// Zeroes E again where the last mask dropped (the final phase's fixed pattern).
    fn reapply_mask(&mut self) {
        if let Some(drop) = &self.drop {
            tch::no_grad(|| {
                let _ = self.e.masked_fill_(drop, 0.0);
            });
        }
    }
}

impl Adapter for AdaLoraAdapter {
    fn delta(&self, x: &Tensor) -> Tensor {
        x.matmul(&(&self.a * &self.e).tr()).matmul(&self.b.tr()) * self.scaling / &self.ranknum
    }

    fn add_delta(&self, base: &Tensor, x: &Tensor) -> Tensor {
        let h = x.matmul(&(&self.a * &self.e).tr()) * self.scaling / &self.ranknum;
        super::add_low_rank(base, &h, &self.b)
    }

    fn delta_weight(&self) -> Tensor {
        self.b.matmul(&(&self.a * &self.e)) * self.scaling / &self.ranknum
    }

    /// The number of triplets in the rank pattern (the effective rank once masking starts).
    fn rank(&self) -> i64 {
        self.pattern.iter().filter(|&&k| k).count() as i64
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        vec![("lora_A", self.a.shallow_clone()), ("lora_B", self.b.shallow_clone()), ("lora_E", self.e.shallow_clone())]
    }

    /// Every entry of A, B and E: masked triplets stay trainable, as in PEFT.
    fn trainable_count(&self) -> i64 {
        (self.a.numel() + self.b.numel() + self.e.numel()) as i64
    }

    /// Exact factors of the update: every triplet whose E is non-zero, i.e. the kept ones and,
    /// between two masks, pruned ones that trained again since the last (PEFT's forward uses
    /// them too). Their number can exceed `rank()` mid-run; right after a mask it equals it.
    fn lora_factors(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let e = self.e.detach();
            let used = e.view([-1]).ne(0.0).nonzero().view([-1]);
            let a = (&self.a.detach() * &e).index_select(0, &used).contiguous();
            let b = (self.b.detach().index_select(1, &used) * self.scaling / &self.ranknum).contiguous();
            (a, b)
        })
    }

    /// The rank pattern (1 = kept), saved so that a loaded adapter reports the same ranks.
    fn buffers(&self) -> Vec<(&'static str, Tensor)> {
        let keep: Vec<f32> = self.pattern.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        vec![("adalora_pattern", Tensor::from_slice(&keep))]
    }

    fn set_tensor(&mut self, role: &str, value: Tensor) -> Result<()> {
        let dev = self.a.device();
        match role {
            "lora_A" => self.a = super::leaf(&value, dev),
            "lora_B" => self.b = super::leaf(&value, dev),
            "lora_E" => self.e = super::leaf(&value, dev),
            "adalora_pattern" => {
                self.pattern = Vec::<f32>::try_from(value.to_kind(Kind::Float).flatten(0, -1))?.into_iter().map(|v| v > 0.5).collect();
                let drop: Vec<bool> = self.pattern.iter().map(|k| !k).collect();
                self.drop = drop.iter().any(|d| *d).then(|| Tensor::from_slice(&drop).to_device(dev).view([-1, 1]));
            }
            _ => return Err(super::unknown_role("AdaLoRA", role)),
        }
        Ok(())
    }
}

/// Triplet scores of one matrix from the element scores of A (r x d_in), B (d_out x r) and
/// E (r x 1): s(E_i) + mean_j s(A_ij) + mean_j s(B_ji), a vector of r (PEFT's `mask_to_budget`
/// and `_combine_ipt`, operation for operation).
pub fn triplet_scores(s_a: &Tensor, s_b: &Tensor, s_e: &Tensor) -> Tensor {
    let a = s_a.mean_dim(1, true, None::<Kind>);
    let b = s_b.mean_dim(0, false, None::<Kind>).view([-1, 1]);
    let ab = Tensor::cat(&[a, b], 1).sum_dim_intlist(1, false, None::<Kind>);
    s_e.view([-1]) + ab.view([-1])
}

/// The EMA statistics of one parameter (PEFT's `exp_avg_ipt` and `exp_avg_unc`).
#[derive(Debug)]
struct Ema {
    ipt: Tensor,
    unc: Tensor,
}

impl Ema {
    fn score(&self) -> Tensor {
        &self.ipt * &self.unc
    }
}

/// What the last `after_step` did.
#[derive(Debug)]
pub struct Allocation {
    pub step: i64,
    /// The budget of PEFT's `budget_schedule` at this step.
    pub budget: i64,
    /// Whether E was masked to the budget (`mask_to_budget`); false for no mask and for the
    /// final phase's fixed pattern.
    pub masked: bool,
    /// The triplet scores ranked at a mask step, all matrices concatenated in model order.
    pub scores: Option<Tensor>,
    /// k = initial budget - budget, and the k-th smallest score (triplets scoring at most this
    /// are masked).
    pub k: i64,
    pub threshold: Option<f64>,
}

/// The rank allocator: PEFT's `AdaLoraModel.update_and_allocate` with its `RankAllocator`.
#[derive(Debug)]
pub struct AdaLoraController {
    pub config: AdaLoraConfig,
    adapters: Vec<(String, Shared<AdaLoraAdapter>)>,
    total_steps: i64,
    orth_reg_weight: f64,
    /// Per adapter, the statistics of A, B and E; None before the first update and after the
    /// reset at the start of the final phase.
    ema: Vec<Option<[Ema; 3]>>,
    /// The same statistics as one flat (ipt, unc) pair per role (A, B, E) over all matrices, of
    /// which `ema` holds views: the update runs on these in a handful of kernels per role
    /// instead of several per matrix. None until the first update and after a reset or load.
    flat: Option<[(Tensor, Tensor); 3]>,
    last: Option<Allocation>,
}

fn lock(a: &Shared<AdaLoraAdapter>) -> std::sync::MutexGuard<'_, AdaLoraAdapter> {
    a.lock().expect("adapter lock poisoned")
}

impl AdaLoraController {
    pub fn new(config: AdaLoraConfig, adapters: Vec<(String, Shared<AdaLoraAdapter>)>, total_steps: i64, orth_reg_weight: f64) -> Self {
        let ema = adapters.iter().map(|_| None).collect();
        AdaLoraController { config, adapters, total_steps, orth_reg_weight, ema, flat: None, last: None }
    }

    /// PEFT's `init_bgt`: the sum of the matrices' initial ranks.
    pub fn init_budget(&self) -> i64 {
        self.adapters.iter().map(|(_, a)| lock(a).init_rank()).sum()
    }

    /// PEFT's `target_bgt`.
    pub fn target_budget(&self) -> i64 {
        self.config.target_rank * self.adapters.len() as i64
    }

    /// What the last `after_step` did (budget, scores, threshold).
    pub fn last(&self) -> Option<&Allocation> {
        self.last.as_ref()
    }

    /// The rank pattern of every matrix, in model order.
    pub fn patterns(&self) -> Vec<(String, Vec<bool>)> {
        self.adapters.iter().map(|(n, a)| (n.clone(), lock(a).pattern().to_vec())).collect()
    }

    /// PEFT's `update_ipt`: sensitivity I = |w * grad w| (zero where there is no gradient),
    /// Ibar <- b1 Ibar + (1 - b1) I, Ubar <- b2 Ubar + (1 - b2) |I - Ibar| with the new Ibar.
    /// The same element-wise operations as PEFT's, on every matrix's entries of one role at once
    /// (concatenated), so a step launches a few kernels per role, not per matrix.
    fn update_ipt(&mut self) {
        let (b1, b2) = (self.config.beta1, self.config.beta2);
        let guards: Vec<_> = self.adapters.iter().map(|(_, a)| lock(a)).collect();
        let old_flat = self.flat.take();
        let mut flat_new: Vec<(Tensor, Tensor)> = Vec::with_capacity(3);
        let mut views: Vec<Vec<Ema>> = (0..guards.len()).map(|_| Vec::with_capacity(3)).collect();
        tch::no_grad(|| {
            for j in 0..3 {
                let params: Vec<&Tensor> = guards.iter().map(|a| [&a.a, &a.b, &a.e][j]).collect();
                let sizes: Vec<i64> = params.iter().map(|p| p.numel() as i64).collect();
                let p_all = Tensor::cat(&params.iter().map(|p| p.reshape([-1])).collect::<Vec<_>>(), 0);
                let g_all = Tensor::cat(
                    &params
                        .iter()
                        .map(|p| {
                            let g = p.grad();
                            if g.defined() {
                                g.reshape([-1])
                            } else {
                                p.zeros_like().reshape([-1])
                            }
                        })
                        .collect::<Vec<_>>(),
                    0,
                );
                let ipt = (&p_all * &g_all).abs();
                // Previous statistics: the flat pair, or (after a load) the matrices' own, or 0.
                let (avg, unc) = match &old_flat {
                    Some(f) => (f[j].0.shallow_clone(), f[j].1.shallow_clone()),
                    None if self.ema.iter().all(Option::is_some) => (
                        Tensor::cat(&self.ema.iter().map(|e| e.as_ref().expect("checked")[j].ipt.reshape([-1])).collect::<Vec<_>>(), 0),
                        Tensor::cat(&self.ema.iter().map(|e| e.as_ref().expect("checked")[j].unc.reshape([-1])).collect::<Vec<_>>(), 0),
                    ),
                    None => (p_all.zeros_like(), p_all.zeros_like()),
                };
                let avg = avg * b1 + &ipt * (1.0 - b1);
                let unc = unc * b2 + (&ipt - &avg).abs() * (1.0 - b2);
                let (avg, unc) = (avg.detach(), unc.detach());
                for (i, (a, u)) in avg.split_with_sizes(&sizes, 0).into_iter().zip(unc.split_with_sizes(&sizes, 0)).enumerate() {
                    let shape = params[i].size();
                    views[i].push(Ema { ipt: a.view(shape.as_slice()), unc: u.view(shape.as_slice()) });
                }
                flat_new.push((avg, unc));
            }
        });
        drop(guards);
        for (slot, v) in self.ema.iter_mut().zip(views) {
            *slot = Some(v.try_into().expect("three roles"));
        }
        self.flat = Some(flat_new.try_into().expect("three roles"));
    }

    /// PEFT's `mask_to_budget`: masks the triplets scoring at most the (init - budget)-th
    /// smallest score. Returns (scores, k, threshold); nothing is masked when k < 1 (PEFT would
    /// fail in `kthvalue`) or when there are no statistics yet (only after a resume).
    fn mask_to_budget(&mut self, budget: i64) -> (Option<Tensor>, i64, Option<f64>) {
        let k = self.init_budget() - budget;
        if self.ema.iter().any(|e| e.is_none()) {
            return (None, k, None);
        }
        let per_matrix: Vec<Tensor> = tch::no_grad(|| {
            self.ema
                .iter()
                .map(|e| {
                    let [a, b, e] = e.as_ref().expect("checked above");
                    triplet_scores(&a.score(), &b.score(), &e.score())
                })
                .collect()
        });
        let all = Tensor::cat(&per_matrix, 0);
        if k < 1 {
            return (Some(all), k, None);
        }
        // The mask is computed and applied on the device; the host reads the threshold and every
        // score in one read (one wait per mask step, whatever n) and derives the keep pattern
        // from them with the device's comparison (score <= threshold drops; the float32 values
        // compare the same as float64).
        let threshold = all.kthvalue(k, 0, false).0;
        let drops: Vec<Tensor> = per_matrix.iter().map(|s| s.le_tensor(&threshold).view([-1, 1])).collect();
        let host = crate::device::read_vec_f64(&Tensor::cat(&[threshold.view([1]), all.view([-1])], 0));
        let (threshold, scores) = (host[0], &host[1..]);
        let keep_all: Vec<bool> = scores
            .iter()
            .map(|s| !matches!(s.partial_cmp(&threshold), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)))
            .collect();
        let mut at = 0;
        for ((_, adapter), drop) in self.adapters.iter().zip(drops) {
            let r = drop.size()[0] as usize;
            lock(adapter).apply_mask(drop, keep_all[at..at + r].to_vec());
            at += r;
        }
        (Some(all), k, Some(threshold))
    }
}

impl RankController for AdaLoraController {
    fn adapters(&self) -> Vec<(String, super::DynAdapter)> {
        super::dyn_adapters(&self.adapters)
    }

    /// #Params as AdaLoRA's paper counts it: the kept triplets (an A row, an E entry and a B
    /// column each), so a finished run reports its final budget (target_rank x n triplets), not
    /// the r_init x n triplets that stay trainable (`trainable_count` still counts those).
    fn reported_param_count(&self) -> i64 {
        super::triplet_param_count(&self.adapters)
    }

    /// PEFT's `update_and_allocate(global_step = step)`. Before T - t_f: statistics update, then
    /// a mask to the scheduled budget when due. At T - t_f: a forced mask to the final budget
    /// with the statistics of the previous steps (no update at this step), then the statistics
    /// are dropped. After: the fixed pattern is re-applied to E at every step.
    fn after_step(&mut self, step: i64, _opt: &mut AdamW) -> Result<()> {
        let c = &self.config;
        let final_start = self.total_steps - c.tfinal;
        let (init, target) = (self.init_budget(), self.target_budget());
        let schedule = AdaloraSchedule {
            init_budget: init,
            target_budget: target,
            tinit: c.tinit,
            tfinal: c.tfinal,
            total_steps: self.total_steps,
            delta_t: c.delta_t,
        };
        let (budget, due) = schedule.budget(step);
        let mut done = Allocation { step, budget, masked: false, scores: None, k: 0, threshold: None };
        if step < final_start {
            self.update_ipt();
            if due {
                let (scores, k, threshold) = self.mask_to_budget(budget);
                done = Allocation { masked: threshold.is_some(), scores, k, threshold, ..done };
            }
        } else if step == final_start {
            let (scores, k, threshold) = self.mask_to_budget(budget);
            done = Allocation { masked: threshold.is_some(), scores, k, threshold, ..done };
            self.ema.iter_mut().for_each(|e| *e = None);
            self.flat = None;
        } else {
            for (_, adapter) in &self.adapters {
                lock(adapter).reapply_mask();
            }
        }
        self.last = Some(done);
        Ok(())
    }

    /// orth_reg_weight / (2n) * sum over matrices of ||A A^T - I||_F + ||B^T B - I||_F (PEFT's
    /// `AdaLoraModel.forward`, which averages over the 2n lora_A and lora_B matrices).
    fn regularization(&self) -> Option<Tensor> {
        super::orthogonality_regularization(&self.adapters, self.orth_reg_weight, |a| (a.a.shallow_clone(), a.b.shallow_clone()))
    }

    fn budget(&self) -> Option<i64> {
        Some(self.target_budget())
    }

    /// The moving averages of every matrix's A, B and E (present only between the first update
    /// and the final-phase reset), so a resumed run allocates as the uninterrupted one.
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, ema) in self.ema.iter().enumerate() {
            if let Some(e) = ema {
                for (role, x) in ["A", "B", "E"].iter().zip(e.iter()) {
                    out.push((format!("ema.{i}.{role}.ipt"), x.ipt.shallow_clone()));
                    out.push((format!("ema.{i}.{role}.unc"), x.unc.shallow_clone()));
                }
            }
        }
        out
    }

    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        self.flat = None;
        for i in 0..self.ema.len() {
            if !state.contains_key(&format!("ema.{i}.A.ipt")) {
                self.ema[i] = None;
                continue;
            }
            let dev = lock(&self.adapters[i].1).a.device();
            let get = |role: &str, which: &str| -> Result<Tensor> {
                Ok(super::state_entry(state, &format!("ema.{i}.{role}.{which}"))?.to_device(dev))
            };
            self.ema[i] = Some([
                Ema { ipt: get("A", "ipt")?, unc: get("A", "unc")? },
                Ema { ipt: get("B", "ipt")?, unc: get("B", "unc")? },
                Ema { ipt: get("E", "ipt")?, unc: get("E", "unc")? },
            ]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::shared;
    use super::*;
    use crate::optim::AdamWConfig;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let c: AdaLoraConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, AdaLoraConfig::default());
        assert_eq!((c.init_rank, c.target_rank, c.tinit, c.tfinal, c.delta_t), (3, 2, 0, 0, 1));
        assert_eq!((c.beta1, c.beta2), (0.85, 0.85));
        assert!(serde_json::from_str::<AdaLoraConfig>(r#"{"init_r": 3}"#).is_err());
    }

    #[test]
    fn new_adapter_starts_with_zero_e_and_full_pattern() {
        let a = AdaLoraAdapter::new(8, 6, 3, 16.0, Device::Cpu);
        assert_eq!((a.a.size(), a.b.size(), a.e.size()), (vec![3, 8], vec![6, 3], vec![3, 1]));
        assert_eq!(a.e.abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(a.delta_weight().abs().max().double_value(&[]), 0.0);
        assert_eq!((a.rank(), a.trainable_count(), a.scaling), (3, 24 + 18 + 3, 16.0));
        let names: Vec<_> = a.params().into_iter().map(|(n, p)| (n, p.requires_grad())).collect();
        assert_eq!(names, [("lora_A", true), ("lora_B", true), ("lora_E", true)]);
        // PEFT falls back to scaling = r when lora_alpha is 0.
        assert_eq!(AdaLoraAdapter::new(4, 4, 3, 0.0, Device::Cpu).scaling, 3.0);
    }

    #[test]
    fn delta_is_x_times_delta_weight_transposed_with_scale_alpha_over_r() {
        let a = AdaLoraAdapter::from_tensors(
            t(&[1., 2., 0., 1., -1., 3.], &[2, 3]),
            t(&[1., 0., 2., 1.], &[2, 2]),
            t(&[0.5, 2.0], &[2, 1]),
            4.0,
        );
        // B diag(E) A = [[0.5, 1, 0], [1+2, 2-2, 6]] * 4 / (2 + 1e-5)
        let want = t(&[0.5, 1., 0., 3., 0., 6.], &[2, 3]) * (4.0 / (2.0 + 1e-5));
        assert!((a.delta_weight() - &want).abs().max().double_value(&[]) < 1e-6);
        let x = t(&[1., -2., 0.5, 0., 1., 1.], &[2, 3]);
        let d = (a.delta(&x) - x.matmul(&a.delta_weight().tr())).abs().max().double_value(&[]);
        assert!(d < 1e-6, "{d}");
    }

    #[test]
    fn triplet_score_is_e_plus_row_mean_of_a_plus_column_mean_of_b() {
        // r = 2, d_in = 3, d_out = 2
        let s_a = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        let s_b = t(&[10., 20., 30., 40.], &[2, 2]);
        let s_e = t(&[100., 200.], &[2, 1]);
        let s = Vec::<f32>::try_from(triplet_scores(&s_a, &s_b, &s_e)).unwrap();
        assert_eq!(s, [100. + 2. + 20., 200. + 5. + 30.]);
    }

    /// Two 2-rank matrices; the gradients make triplet 0 of the second matrix the least
    /// important, then the budget phase masks it, and the final phase keeps it masked.
    #[test]
    fn phases_mask_then_freeze_the_pattern() {
        let cfg = AdaLoraConfig { init_rank: 2, target_rank: 1, tinit: 0, tfinal: 2, delta_t: 1, ..Default::default() };
        let mk = || {
            shared(AdaLoraAdapter::from_tensors(
                Tensor::ones([2, 3], (Kind::Float, Device::Cpu)),
                Tensor::ones([3, 2], (Kind::Float, Device::Cpu)),
                Tensor::ones([2, 1], (Kind::Float, Device::Cpu)),
                8.0,
            ))
        };
        let adapters = vec![("m0".to_string(), mk()), ("m1".to_string(), mk())];
        let mut ctl = AdaLoraController::new(cfg, adapters.clone(), 6, 0.1);
        let mut opt = AdamW::new(AdamWConfig::default());
        let weights = [[1.0, 2.0], [0.5, 3.0]];
        for step in 0..6 {
            // Gradient = weight of the triplet, on every entry of its row / column / value.
            for ((_, a), w) in adapters.iter().zip(weights) {
                let a = lock(a);
                tch::no_grad(|| {
                    let _ = a.e.shallow_clone().fill_(1.0);
                });
                let wv = t(&[w[0] as f32, w[1] as f32], &[2, 1]);
                for p in [&a.a, &a.b, &a.e] {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.zero_();
                    }
                }
                ((&a.a * &wv).sum(Kind::Float) + (&a.b * wv.tr()).sum(Kind::Float) + (&a.e * &wv).sum(Kind::Float)).backward();
            }
            ctl.after_step(step, &mut opt).unwrap();
            let last = ctl.last().unwrap();
            // Budget 4 at step 0, cubic to 2 at T - t_f = 4, then 2.
            let want_budget = [4, 2, 2, 2, 2, 2][step as usize];
            assert_eq!(last.budget, want_budget, "step {step}");
            if step == 0 {
                assert_eq!(ctl.ranks(), [("m0".to_string(), 2), ("m1".to_string(), 2)]);
                assert!(!last.masked);
                continue;
            }
            if step < 5 {
                assert!(last.masked, "step {step}");
                assert_eq!(last.k, 2);
            } else {
                assert!(!last.masked && last.scores.is_none());
            }
            // m0 keeps triplet 1, m1 keeps triplet 1 (scores 1 < 2 and 0.5 < 3 are dropped).
            assert_eq!(ctl.patterns(), [("m0".to_string(), vec![false, true]), ("m1".to_string(), vec![false, true])]);
            for (_, a) in &adapters {
                assert_eq!(Vec::<f32>::try_from(lock(a).e.view([-1])).unwrap(), [0.0, 1.0], "step {step}");
            }
        }
        assert_eq!(ctl.budget(), Some(2));
        assert_eq!(ctl.trainable_count(), 2 * (6 + 6 + 2));
    }

    #[test]
    fn no_mask_when_the_budget_equals_the_initial_budget() {
        let cfg = AdaLoraConfig { init_rank: 2, target_rank: 2, tinit: 0, tfinal: 0, delta_t: 1, ..Default::default() };
        let a = shared(AdaLoraAdapter::new(3, 3, 2, 8.0, Device::Cpu));
        let mut ctl = AdaLoraController::new(cfg, vec![("m".to_string(), a)], 4, 0.1);
        let mut opt = AdamW::new(AdamWConfig::default());
        ctl.after_step(1, &mut opt).unwrap();
        assert!(!ctl.last().unwrap().masked);
        assert_eq!(ctl.ranks()[0].1, 2);
    }
}
