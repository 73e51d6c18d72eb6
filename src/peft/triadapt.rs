//! TriAdaptLoRA (docs/method.md, "TriAdaptLoRA"): h = W0 x + (alpha / r) B (L + U) A x with L lower- and U
//! upper-triangular, grown by rows and columns respectively; normalised-Frobenius importance;
//! rank growth driven by dynamic thresholds under a reference-rank budget.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::schedule::{default_growth_step, BudgetMode, ThresholdKind, TriadaptSchedule};
use super::{Adapter, RankController, Shared};
use crate::optim::AdamW;

/// Importance score at an allocation step (docs/method.md, "Importance").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImportanceMode {
    /// I_l minus its value at the previous allocation step (or at initialisation).
    #[default]
    Delta,
    /// I_l itself.
    Raw,
}

/// How a growth event of dr ranks extends L and U (docs/method.md, "Growth").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GrowthMode {
    /// dr single ranks: each appends a triangular row to L and column to U.
    #[default]
    PerRank,
    /// One (dr x r_new) row block for L and one (r_new x dr) column block for U.
    Block,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TriAdaptConfig {
    /// Starting rank r0 of every matrix.
    pub init_rank: i64,
    /// Reference (average target) rank rbar; budget = rbar * n.
    pub ref_rank: i64,
    /// Allocation warm-up t_w (steps).
    pub warmup_steps: i64,
    /// Rank update interval dt (steps).
    pub interval: i64,
    /// Ranks added per growth event dr; default rbar / 2 rounded down, at least 1.
    pub growth_step: Option<i64>,
    pub threshold: ThresholdKind,
    /// k for `threshold: fixed`.
    pub top_k: usize,
    pub importance: ImportanceMode,
    pub growth: GrowthMode,
    /// Standard deviation of A, L, U and of every grown entry (B starts at zero).
    pub init_std: f64,
    /// Weight decay of ranks grown during training: the reference adds them as a parameter
    /// group with its tuner config's `weight_decay` (default 0.0), not the optimizer's.
    pub grown_weight_decay: f64,
}

impl Default for TriAdaptConfig {
    fn default() -> Self {
        TriAdaptConfig {
            init_rank: 1,
            ref_rank: 2,
            warmup_steps: 100,
            interval: 100,
            growth_step: None,
            threshold: ThresholdKind::Linear,
            top_k: 1,
            importance: ImportanceMode::Delta,
            growth: GrowthMode::PerRank,
            init_std: 0.02,
            grown_weight_decay: 0.0,
        }
    }
}

impl TriAdaptConfig {
    /// Checks the block's values against a run of `total_steps`; errors name the key.
    pub fn validate(&self, total_steps: i64) -> Result<()> {
        if self.init_rank < 1 {
            bail!("key `method.triadapt.init_rank` = {}: must be at least 1", self.init_rank);
        }
        if self.ref_rank < self.init_rank {
            bail!(
                "key `method.triadapt.ref_rank` = {}: the budget is below the starting rank init_rank = {}",
                self.ref_rank,
                self.init_rank
            );
        }
        if self.warmup_steps >= total_steps {
            bail!("key `method.triadapt.warmup_steps` = {}: past the total of {total_steps} training steps", self.warmup_steps);
        }
        if self.interval < 1 {
            bail!("key `method.triadapt.interval` = {}: must be at least 1", self.interval);
        }
        if self.growth_step.is_some_and(|d| d < 1) {
            bail!("key `method.triadapt.growth_step`: must be at least 1");
        }
        // Also refuses NaN.
        if self.grown_weight_decay.is_nan() || self.grown_weight_decay < 0.0 {
            bail!("key `method.triadapt.grown_weight_decay` = {}: must not be negative", self.grown_weight_decay);
        }
        Ok(())
    }
}

impl TriAdaptConfig {
    pub fn dr(&self) -> i64 {
        self.growth_step.unwrap_or_else(|| default_growth_step(self.ref_rank))
    }
}

/// One adapted matrix. L and U are stored as full r x r tensors whose entries outside their
/// masks are zero and receive no gradient (the forward multiplies by the masks).
#[derive(Debug)]
pub struct TriAdapter {
    /// r x d_in
    pub a: Tensor,
    /// d_out x r
    pub b: Tensor,
    pub l: Tensor,
    pub u: Tensor,
    pub l_mask: Tensor,
    pub u_mask: Tensor,
    pub alpha: f64,
    /// Entries of `l_mask` plus `u_mask`, kept on the host so that counting the trainable
    /// parameters (every step of a run) does not wait for the device.
    mask_entries: i64,
}

fn randn(shape: &[i64], std: f64, device: Device) -> Tensor {
    Tensor::randn(shape, (Kind::Float, device)) * std
}

/// `t` enlarged to `shape` with its values at the top-left and `fill` elsewhere.
fn embed(t: &Tensor, shape: &[i64], fill: &Tensor) -> Tensor {
    let out = fill.detach().copy();
    let mut view = out.shallow_clone();
    for (d, &n) in t.size().iter().enumerate() {
        view = view.narrow(d as i64, 0, n);
    }
    tch::no_grad(|| view.copy_(t));
    debug_assert_eq!(out.size(), shape);
    out
}

impl TriAdapter {
    /// docs/method.md, "Initialisation": A, L, U ~ N(0, std^2) (on their triangles), B = 0.
    pub fn new(d_in: i64, d_out: i64, r0: i64, alpha: f64, std: f64, device: Device) -> Self {
        let l_mask = Tensor::ones([r0, r0], (Kind::Float, device)).tril(0);
        let u_mask = Tensor::ones([r0, r0], (Kind::Float, device)).triu(0);
        TriAdapter {
            a: randn(&[r0, d_in], std, device).set_requires_grad(true),
            b: Tensor::zeros([d_out, r0], (Kind::Float, device)).set_requires_grad(true),
            l: (randn(&[r0, r0], std, device) * &l_mask).set_requires_grad(true),
            u: (randn(&[r0, r0], std, device) * &u_mask).set_requires_grad(true),
            l_mask,
            u_mask,
            alpha,
            // Both triangles include the diagonal.
            mask_entries: r0 * (r0 + 1),
        }
    }

    fn count_mask_entries(&self) -> i64 {
        (self.l_mask.sum(Kind::Float) + self.u_mask.sum(Kind::Float)).double_value(&[]) as i64
    }

    /// C = L + U, restricted to the triangles.
    pub fn transformation(&self) -> Tensor {
        &self.l * &self.l_mask + &self.u * &self.u_mask
    }

    /// Normalised Frobenius norm I = ||L + U||_F / r (docs/method.md, "Importance"), on the host
    /// (one counted read).
    pub fn importance(&self) -> f64 {
        crate::device::read_f64(&self.importance_tensor())
    }

    /// I as a 0-dim float64 tensor on the device: the norm as float32 (as the reference's
    /// `torch.norm`), then divided by r in float64.
    pub fn importance_tensor(&self) -> Tensor {
        tch::no_grad(|| self.transformation().norm().to_kind(Kind::Double) / self.rank() as f64)
    }

    fn scaling(&self) -> f64 {
        self.alpha / self.rank() as f64
    }

    /// Appends `dr` ranks; every trained entry stays where it is. Per-rank growth appends, for
    /// each new rank i, C[i, 0..=i] to L and C[0..=i, i] to U; block growth appends full row
    /// and column blocks. New entries of A, B, L, U are N(0, std^2).
    pub fn grow(&mut self, dr: i64, mode: GrowthMode, std: f64) {
        let (r, dev) = (self.rank(), self.a.device());
        let n = r + dr;
        let (d_in, d_out) = (self.a.size()[1], self.b.size()[0]);
        let f = (Kind::Float, dev);
        let fresh = Tensor::arange(n, (Kind::Int64, dev)).ge(r).to_kind(Kind::Float);
        let (new_rows, new_cols) = (fresh.unsqueeze(1), fresh.unsqueeze(0));
        let ones = Tensor::ones([n, n], f);
        let (add_l, add_u) = match mode {
            GrowthMode::PerRank => (ones.tril(0) * &new_rows, ones.triu(0) * &new_cols),
            GrowthMode::Block => (&ones * &new_rows, &ones * &new_cols),
        };
        let zeros = Tensor::zeros([n, n], f);
        self.l_mask = embed(&self.l_mask, &[n, n], &zeros) + &add_l;
        self.u_mask = embed(&self.u_mask, &[n, n], &zeros) + &add_u;
        self.a = embed(&self.a, &[n, d_in], &randn(&[n, d_in], std, dev)).set_requires_grad(true);
        self.b = embed(&self.b, &[d_out, n], &randn(&[d_out, n], std, dev)).set_requires_grad(true);
        self.l = embed(&self.l, &[n, n], &(randn(&[n, n], std, dev) * &add_l)).set_requires_grad(true);
        self.u = embed(&self.u, &[n, n], &(randn(&[n, n], std, dev) * &add_u)).set_requires_grad(true);
        // Entries added: per rank, new rank i (0-based) brings i + 1 to L and i + 1 to U; a
        // block brings dr x n to L and n x dr to U.
        self.mask_entries += match mode {
            GrowthMode::PerRank => (r..n).map(|i| 2 * (i + 1)).sum::<i64>(),
            GrowthMode::Block => 2 * dr * n,
        };
    }
}

impl Adapter for TriAdapter {
    fn delta(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.a.tr()).matmul(&self.transformation().tr()).matmul(&self.b.tr()) * self.scaling()
    }

    fn add_delta(&self, base: &Tensor, x: &Tensor) -> Tensor {
        // C A is r x d_in: folding C into the down projection first leaves one matrix product
        // over the tokens, as in LoRA (and none in the backward pass).
        let h = x.matmul(&self.transformation().matmul(&self.a).tr()) * self.scaling();
        super::add_low_rank(base, &h, &self.b)
    }

    fn delta_weight(&self) -> Tensor {
        self.b.matmul(&self.transformation()).matmul(&self.a) * self.scaling()
    }

    fn rank(&self) -> i64 {
        self.a.size()[0]
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        vec![
            ("lora_A", self.a.shallow_clone()),
            ("lora_B", self.b.shallow_clone()),
            ("tri_L", self.l.shallow_clone()),
            ("tri_U", self.u.shallow_clone()),
        ]
    }

    fn trainable_count(&self) -> i64 {
        self.a.numel() as i64 + self.b.numel() as i64 + self.mask_entries
    }

    /// Loading keeps the scaling alpha / r right: r is read from A's rows.
    fn set_tensor(&mut self, role: &str, value: Tensor) -> Result<()> {
        let dev = self.a.device();
        match role {
            "lora_A" => self.a = super::leaf(&value, dev),
            "lora_B" => self.b = super::leaf(&value, dev),
            "tri_L" => self.l = super::leaf(&value, dev),
            "tri_U" => self.u = super::leaf(&value, dev),
            "tri_L_mask" => {
                self.l_mask = value.to_device(dev).to_kind(Kind::Float);
                self.mask_entries = self.count_mask_entries();
            }
            "tri_U_mask" => {
                self.u_mask = value.to_device(dev).to_kind(Kind::Float);
                self.mask_entries = self.count_mask_entries();
            }
            _ => return Err(super::unknown_role("TriAdaptLoRA", role)),
        }
        Ok(())
    }

    fn buffers(&self) -> Vec<(&'static str, Tensor)> {
        vec![("tri_L_mask", self.l_mask.shallow_clone()), ("tri_U_mask", self.u_mask.shallow_clone())]
    }

    /// A' = (L + U) A and B' = (alpha / r) B: a rank-r LoRA with the same dW.
    fn lora_factors(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| (self.transformation().matmul(&self.a), &self.b.detach() * self.scaling()))
    }
}

/// The rank controller: scores every matrix at allocation steps and grows the top ones.
#[derive(Debug)]
pub struct TriAdaptController {
    pub config: TriAdaptConfig,
    adapters: Vec<(String, Shared<TriAdapter>)>,
    total_steps: i64,
    orth_reg_weight: f64,
    /// Importance at the previous allocation step (initially at initialisation).
    previous: Vec<f64>,
    /// `method.budget`: whether a round may pass the budget.
    budget_mode: BudgetMode,
    /// Grants decided in `before_step`, applied in `after_step` of the same step.
    pending: Vec<(usize, i64)>,
}

impl TriAdaptController {
    pub fn new(config: TriAdaptConfig, adapters: Vec<(String, Shared<TriAdapter>)>, total_steps: i64, orth_reg_weight: f64) -> Self {
        let previous = adapters.iter().map(|(_, a)| a.lock().expect("adapter lock").importance()).collect();
        TriAdaptController {
            config,
            adapters,
            total_steps,
            orth_reg_weight,
            previous,
            budget_mode: BudgetMode::default(),
            pending: Vec::new(),
        }
    }

    /// Sets `method.budget` (strict by default).
    pub fn with_budget_mode(mut self, mode: BudgetMode) -> Self {
        self.budget_mode = mode;
        self
    }

    /// Scores (docs/method.md, "Importance") at this allocation step; updates the remembered
    /// importance. One device-to-host read for all matrices.
    pub fn scores(&mut self) -> Vec<f64> {
        let current: Vec<Tensor> = self.adapters.iter().map(|(_, a)| a.lock().expect("adapter lock").importance_tensor()).collect();
        let current = crate::device::read_vec_f64(&Tensor::stack(&current, 0));
        let scores = match self.config.importance {
            ImportanceMode::Raw => current.clone(),
            ImportanceMode::Delta => current.iter().zip(&self.previous).map(|(c, p)| c - p).collect(),
        };
        self.previous = current;
        scores
    }
}

impl RankController for TriAdaptController {
    fn adapters(&self) -> Vec<(String, super::DynAdapter)> {
        super::dyn_adapters(&self.adapters)
    }

    /// Decides the growth of step `step` from the importance before this step's update, as the
    /// reference calls its allocator after clipping and before `optimizer.step()`.
    fn before_step(&mut self, step: i64) -> Result<()> {
        let c = self.config.clone();
        let ranks: Vec<i64> = self.ranks().into_iter().map(|(_, r)| r).collect();
        let budget = self.budget().unwrap_or(0);
        let schedule = TriadaptSchedule {
            threshold: c.threshold,
            warmup: c.warmup_steps,
            interval: c.interval,
            total_steps: self.total_steps,
            top_k: c.top_k,
            dr: c.dr(),
            mode: self.budget_mode,
        };
        let plan = schedule.allocation(step, &ranks, budget, || self.scores());
        self.pending = plan.map(|(_, grants)| grants).unwrap_or_default();
        Ok(())
    }

    /// Applies the grants decided before this step's update. Appending entries leaves the old
    /// ones (just updated) in place, and the new ones are born at step + 1: the same as the
    /// reference's new parameters, which have no gradient at this step.
    fn after_step(&mut self, step: i64, opt: &mut AdamW) -> Result<()> {
        let (mode, std) = (self.config.growth, self.config.init_std);
        for (i, grant) in std::mem::take(&mut self.pending) {
            let (name, adapter) = &self.adapters[i];
            let mut a = adapter.lock().expect("adapter lock");
            a.grow(grant, mode, std);
            for (role, t) in a.params() {
                opt.grow(&format!("{name}.{role}"), &t, step + 1)?;
            }
        }
        Ok(())
    }

    fn grown_weight_decay(&self) -> Option<f64> {
        Some(self.config.grown_weight_decay)
    }

    fn regularization(&self) -> Option<Tensor> {
        super::orthogonality_regularization(&self.adapters, self.orth_reg_weight, |a| (a.a.shallow_clone(), a.b.shallow_clone()))
    }

    fn budget(&self) -> Option<i64> {
        Some(self.config.ref_rank * self.adapters.len() as i64)
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        vec![("previous_importance".into(), Tensor::from_slice(&self.previous))]
    }

    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let prev = Vec::<f64>::try_from(super::state_entry(state, "previous_importance")?.to_kind(Kind::Double))?;
        anyhow::ensure!(
            prev.len() == self.adapters.len(),
            "saved importance has {} entries for {} matrices",
            prev.len(),
            self.adapters.len()
        );
        self.previous = prev;
        Ok(())
    }
}
