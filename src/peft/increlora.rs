//! IncreLoRA (docs/method.md, "IncreLoRA"), as its public code (github.com/FeiyuZhang98/IncreLoRA) computes it:
//! dW = B diag(E) A * alpha / (ranknum + 1e-5) with A (R x d_in), E (R x 1), B (d_out x R),
//! where ranknum counts the active ranks and R also holds the reserved ranks of "advance
//! learning". Every matrix starts at `init_rank` with E = 0 (so dW = 0) and A, B ~ N(0, 0.02^2).
//! After each step the importance of every matrix, sum |dW * grad dW| / sqrt(numel dW), feeds an
//! EMA sensitivity and uncertainty; every `incre_interval` steps after `init_warmup` the `top_h`
//! matrices with the largest product switch on their reserved ranks, until the total rank reaches
//! `target_rank * n`.
//!
//! Where each rule comes from (files of that repository):
//! - layer, initialisation, score (the backward hook on the dense dW), reserved ranks:
//!   `loralib/loralib/increlora.py`, `SVDLinear` (`loraW.forward`, `backward_hook`,
//!   `reset_parameters`, `add_reserve_param`);
//! - EMA, selection, growth, the final switch-off of the reserve: same file, `RankAllocator`
//!   (`update_ipt`, `calculate_score`, `increase_to_target_rank`, `update_and_increase`);
//! - orthogonal regularisation: `NLU/src/transformers/trainer.py`, `compute_svd_orth_regu`;
//! - per-group learning rates: `NLU/src/transformers/optimization.py`, `Multi_LambdaLR`
//!   (our `LrPolicy::Restart` with each entry's birth step);
//! - defaults: `NLU/scripts/rank=2/run_rte.sh` and the argument defaults of
//!   `NLU/examples/text-classification/run_glue.py`.

use std::cell::RefCell;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::schedule::{allocation_due, default_growth_step, select_growth, BudgetMode};
use super::{Adapter, RankController, Shared};
use crate::optim::AdamW;

/// E of a reserved rank while advance learning runs (a frozen constant in IncreLoRA; 0 without
/// advance learning, and 0 for every reserved rank once the budget is reached).
pub const RESERVE_E: f64 = 1e-5;

/// The `method.increlora` block (IncreLoRA's argument names in brackets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncreLoraConfig {
    /// Starting rank of every matrix (`lora_r`; its GLUE scripts use 1).
    pub init_rank: i64,
    /// Average final rank (`target_rank`); the total-rank budget is target_rank * n.
    pub target_rank: i64,
    /// Steps before the first rank increase (`init_warmup`): ranks grow only at steps > this.
    pub init_warmup: i64,
    /// Steps between two rank increases (`incre_interval`).
    pub incre_interval: i64,
    /// Number of matrices that gain ranks at each increase (`top_h`).
    pub top_h: usize,
    /// Ranks added to a selected matrix (`incre_rank_num`); by default target_rank / 2, at least
    /// 1 (its table {2: 1, 4: 2, 6: 3, 8: 4}). Also the number of reserved ranks per matrix.
    pub incre_rank_num: Option<i64>,
    /// EMA coefficient of the sensitivity (`beta1`).
    pub beta1: f64,
    /// EMA coefficient of the uncertainty (`beta2`).
    pub beta2: f64,
    /// Train the reserved ranks ahead of switching them on (`advance_learn`): their A and B train
    /// under a frozen E = 1e-5. Without it the reserve is inert (E = 0, A and B frozen).
    pub advance_learning: bool,
    /// Standard deviation of A and B, initial and of every reserved rank (E starts at 0).
    pub init_std: f64,
}

impl Default for IncreLoraConfig {
    /// Its rank-2 RTE script (`run_rte.sh`): lora_r 1, target_rank 2, init_warmup = incre_interval
    /// = 100, top_h 5, beta1 = beta2 = 0.85, advance learning on; std 0.02 from `SVDLinear`.
    fn default() -> Self {
        IncreLoraConfig {
            init_rank: 1,
            target_rank: 2,
            init_warmup: 100,
            incre_interval: 100,
            top_h: 5,
            incre_rank_num: None,
            beta1: 0.85,
            beta2: 0.85,
            advance_learning: true,
            init_std: 0.02,
        }
    }
}

impl IncreLoraConfig {
    /// Ranks added per selected matrix (and reserved per matrix).
    pub fn incre_rank_num(&self) -> i64 {
        self.incre_rank_num.unwrap_or_else(|| default_growth_step(self.target_rank))
    }

    /// Checks the block's values against a run of `total_steps`; errors name the key.
    pub fn validate(&self, total_steps: i64) -> Result<()> {
        if self.init_rank < 1 {
            bail!("key `method.increlora.init_rank` = {}: must be at least 1", self.init_rank);
        }
        if self.target_rank < self.init_rank {
            bail!("key `method.increlora.target_rank` = {}: budget below the start (init_rank = {})", self.target_rank, self.init_rank);
        }
        if self.init_warmup >= total_steps {
            bail!("key `method.increlora.init_warmup` = {}: past the total of {total_steps} training steps", self.init_warmup);
        }
        if self.incre_interval < 1 {
            bail!("key `method.increlora.incre_interval` = {}: must be at least 1", self.incre_interval);
        }
        if self.top_h < 1 {
            bail!("key `method.increlora.top_h` = {}: must be at least 1", self.top_h);
        }
        if self.incre_rank_num.is_some_and(|d| d < 1) {
            bail!("key `method.increlora.incre_rank_num`: must be at least 1");
        }
        for (key, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(beta > 0.0 && beta < 1.0) {
                bail!("key `method.increlora.{key}` = {beta}: must be in (0, 1)");
            }
        }
        Ok(())
    }
}

fn randn(shape: &[i64], std: f64, device: Device) -> Tensor {
    Tensor::randn(shape, (Kind::Float, device)) * std
}

/// `old` (detached) followed by `extra` along `dim`, as a fresh leaf that requires grad: the old
/// entries keep their values and indices.
fn append(old: &Tensor, extra: &Tensor, dim: i64) -> Tensor {
    Tensor::cat(&[old.detach(), extra.detach()], dim).set_requires_grad(true)
}

/// One adapted matrix: IncreLoRA's `SVDLinear` with contiguous tensors. Rows of `a` (columns of
/// `b`) are ordered active ranks first, then, under advance learning, the reserved ranks; `e`
/// holds only the active ranks' E, the reserved ranks' E being the constant `reserve_e`.
#[derive(Debug)]
pub struct IncreLoraAdapter {
    /// (rank + trained reserve) x d_in
    pub a: Tensor,
    /// rank x 1
    pub e: Tensor,
    /// d_out x (rank + trained reserve)
    pub b: Tensor,
    /// Reserved rows of A without advance learning (frozen, not parameters): reserve x d_in;
    /// 0 rows under advance learning, where the reserve lives in `a`.
    pub frozen_a: Tensor,
    /// Reserved columns of B without advance learning: d_out x reserve (0 columns otherwise).
    pub frozen_b: Tensor,
    /// Active ranks (IncreLoRA's `ranknum`).
    rank: i64,
    /// Reserved ranks (0 until the controller adds the reserve after step 0).
    reserve: i64,
    /// E of every reserved rank: RESERVE_E under advance learning, else 0; 0 once finished.
    pub reserve_e: f64,
    /// IncreLoRA's `scaling`: lora_alpha, or the initial rank when lora_alpha <= 0.
    pub scaling: f64,
    pub advance_learning: bool,
    pub init_std: f64,
    /// Whether training forwards record what the importance needs (IncreLoRA's backward hook,
    /// removed once the budget is reached).
    pub capture: bool,
    /// From the first training forward since the last score update: |s dW| (detached) and a
    /// zero leaf Z added to dW, whose gradient after backward is the gradient of the loss with
    /// respect to s dW. With `share_att_key` DeBERTa calls query_proj and key_proj a second time
    /// on the relative-position embeddings; the reference's backward hook fires once per call in
    /// reverse call order, so the score it keeps is the first (hidden-states) call's.
    captured: RefCell<Option<(Tensor, Tensor)>>,
    /// The last importance sum |s dW * grad(s dW)| / sqrt(numel) (IncreLoRA's `layer.score`): a
    /// 0-dim float64 tensor on the adapter's device, so that updating it reads nothing back.
    pub score: Tensor,
}

impl IncreLoraAdapter {
    /// `SVDLinear.reset_parameters`: E = 0, A and B ~ N(0, init_std^2); no reserve yet.
    pub fn new(d_in: i64, d_out: i64, config: &IncreLoraConfig, alpha: f64, device: Device) -> Self {
        let (r0, std) = (config.init_rank, config.init_std);
        IncreLoraAdapter {
            a: randn(&[r0, d_in], std, device).set_requires_grad(true),
            e: Tensor::zeros([r0, 1], (Kind::Float, device)).set_requires_grad(true),
            b: randn(&[d_out, r0], std, device).set_requires_grad(true),
            frozen_a: Tensor::zeros([0, d_in], (Kind::Float, device)),
            frozen_b: Tensor::zeros([d_out, 0], (Kind::Float, device)),
            rank: r0,
            reserve: 0,
            reserve_e: if config.advance_learning { RESERVE_E } else { 0.0 },
            scaling: if alpha > 0.0 { alpha } else { r0 as f64 },
            advance_learning: config.advance_learning,
            init_std: std,
            capture: true,
            captured: RefCell::new(None),
            score: Tensor::zeros([] as [i64; 0], (Kind::Double, device)),
        }
    }

    /// Reserved ranks (trained ahead under advance learning).
    pub fn reserve(&self) -> i64 {
        self.reserve
    }

    /// A with the frozen reserve, if any: all R rows that enter dW.
    pub fn full_a(&self) -> Tensor {
        if self.frozen_a.size()[0] == 0 {
            self.a.shallow_clone()
        } else {
            Tensor::cat(&[&self.a, &self.frozen_a], 0)
        }
    }

    /// B with the frozen reserve, if any.
    pub fn full_b(&self) -> Tensor {
        if self.frozen_b.size()[1] == 0 {
            self.b.shallow_clone()
        } else {
            Tensor::cat(&[&self.b, &self.frozen_b], 1)
        }
    }

    /// E of all R ranks: the trained active entries, then the reserve's constant.
    pub fn full_e(&self) -> Tensor {
        if self.reserve == 0 {
            self.e.shallow_clone()
        } else {
            let res = Tensor::full([self.reserve, 1], self.reserve_e, (Kind::Float, self.e.device()));
            Tensor::cat(&[&self.e, &res], 0)
        }
    }

    /// `ranknum + 1e-5` rounded to float32 as IncreLoRA's one-element float tensor holds it (a
    /// host number: no tensor to copy to the device at every forward).
    fn ranknum(&self) -> f64 {
        f64::from(self.rank as f32 + 1e-5f32)
    }

    /// Adds `k` reserved ranks (`add_reserve_param`): A rows and B columns ~ N(0, std^2), E the
    /// reserve constant. Under advance learning they are appended to the trained `a` and `b`.
    pub fn add_reserve(&mut self, k: i64) {
        let (dev, std) = (self.a.device(), self.init_std);
        let (d_in, d_out) = (self.a.size()[1], self.b.size()[0]);
        let (ra, rb) = (randn(&[k, d_in], std, dev), randn(&[d_out, k], std, dev));
        if self.advance_learning {
            self.a = append(&self.a, &ra, 0);
            self.b = append(&self.b, &rb, 1);
        } else {
            self.frozen_a = Tensor::cat(&[&self.frozen_a, &ra], 0);
            self.frozen_b = Tensor::cat(&[&self.frozen_b, &rb], 1);
        }
        self.reserve += k;
    }

    /// Switches on `g` reserved ranks and reserves `g` new ones (`increase_to_target_rank`):
    /// every trained value stays at its index. The switched-on ranks' E join `e` with the
    /// reserve's value; under advance learning their (already trained) A rows and B columns stay
    /// where they are and `g` fresh reserved ones are appended; otherwise their frozen A rows and
    /// B columns are appended to `a` and `b` and become trainable.
    pub fn grow(&mut self, g: i64) -> Result<()> {
        if g < 1 || g > self.reserve {
            bail!("IncreLoRA: cannot switch on {g} ranks with {} reserved", self.reserve);
        }
        let dev = self.e.device();
        self.e = append(&self.e, &Tensor::full([g, 1], self.reserve_e, (Kind::Float, dev)), 0);
        if !self.advance_learning {
            let (fa, fb) = (self.frozen_a.narrow(0, 0, g), self.frozen_b.narrow(1, 0, g));
            self.a = append(&self.a, &fa, 0);
            self.b = append(&self.b, &fb, 1);
            self.frozen_a = self.frozen_a.narrow(0, g, self.reserve - g).copy();
            self.frozen_b = self.frozen_b.narrow(1, g, self.reserve - g).copy();
        }
        self.rank += g;
        self.reserve -= g;
        self.add_reserve(g);
        Ok(())
    }

    /// Ends the growth phase (IncreLoRA, on reaching the budget): the reserved ranks' E become 0
    /// and the importance is no longer recorded.
    pub fn finish(&mut self) {
        self.reserve_e = 0.0;
        self.stop_capture();
    }

    /// Stops recording the importance (its hook removed) and drops what was recorded.
    pub fn stop_capture(&mut self) {
        self.capture = false;
        *self.captured.get_mut() = None;
    }

    /// Updates `score` from the last training forward and backward (`SVDLinear.backward_hook`):
    /// sum |s dW * grad(s dW)| / sqrt(numel(dW)), with dW including the reserved ranks. Keeps the
    /// previous score when no gradient was recorded. Stays on the device (nothing is read).
    pub fn update_score(&mut self) -> Tensor {
        if let Some((w_abs, z)) = self.captured.get_mut().take() {
            let g = z.grad();
            if g.defined() {
                let numel = w_abs.numel() as f64;
                self.score = tch::no_grad(|| ((&w_abs * &g).abs().sum(Kind::Float) / numel.sqrt()).to_kind(Kind::Double));
            }
        }
        self.score.shallow_clone()
    }

    /// The last score on the host (one counted read).
    pub fn score_value(&self) -> f64 {
        crate::device::read_f64(&self.score)
    }
}

impl Adapter for IncreLoraAdapter {
    /// x (B diag(E) A)^T * alpha / (ranknum + 1e-5), in factored form. While the importance is
    /// recorded (training, before the budget is reached) a zero leaf Z is added to the dense
    /// update, x (s dW + Z)^T, as IncreLoRA's layer multiplies by the dense s dW: the output is
    /// unchanged and Z's gradient is the gradient its backward hook reads.
    fn delta(&self, x: &Tensor) -> Tensor {
        let ae = self.full_a() * self.full_e();
        let out = x.matmul(&ae.tr()).matmul(&self.full_b().tr()) * self.scaling / self.ranknum();
        if !(self.capture && out.requires_grad()) {
            return out;
        }
        if self.captured.borrow().is_some() {
            // A later call in the same step (the relative-position path): not the score kept.
            return out;
        }
        let (d_out, d_in) = (self.b.size()[0], self.a.size()[1]);
        let z = Tensor::zeros([d_out, d_in], (x.kind(), x.device())).set_requires_grad(true);
        let w_abs = tch::no_grad(|| self.delta_weight().abs());
        let out = out + x.matmul(&z.tr());
        self.captured.replace(Some((w_abs, z)));
        out
    }

    /// `loraW.forward`: B (A * E) * scaling / (ranknum + 1e-5), reserved ranks included.
    fn delta_weight(&self) -> Tensor {
        self.full_b().matmul(&(self.full_a() * self.full_e())) * self.scaling / self.ranknum()
    }

    /// The active ranks (IncreLoRA's `ranknum`, what its rank pattern reports).
    fn rank(&self) -> i64 {
        self.rank
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        vec![("lora_A", self.a.shallow_clone()), ("lora_E", self.e.shallow_clone()), ("lora_B", self.b.shallow_clone())]
    }

    /// Every scalar the optimizer updates: active A, E, B and, under advance learning, the
    /// reserved A rows and B columns (the frozen reserve is not counted).
    fn trainable_count(&self) -> i64 {
        self.a.numel() as i64 + self.e.numel() as i64 + self.b.numel() as i64
    }

    /// The frozen reserve (without advance learning; empty otherwise) and the scalars that define
    /// the adapter: [active rank, reserved ranks, reserve E, last score, recording (0/1)].
    fn buffers(&self) -> Vec<(&'static str, Tensor)> {
        let state =
            [self.rank as f64, self.reserve as f64, self.reserve_e, self.score.double_value(&[]), f64::from(u8::from(self.capture))];
        vec![
            ("reserve_A", self.frozen_a.shallow_clone()),
            ("reserve_B", self.frozen_b.shallow_clone()),
            ("increlora_state", Tensor::from_slice(&state)),
        ]
    }

    fn set_tensor(&mut self, role: &str, value: Tensor) -> Result<()> {
        let dev = self.a.device();
        match role {
            "lora_A" => self.a = super::leaf(&value, dev),
            "lora_E" => self.e = super::leaf(&value, dev),
            "lora_B" => self.b = super::leaf(&value, dev),
            "reserve_A" => self.frozen_a = value.to_device(dev).to_kind(Kind::Float),
            "reserve_B" => self.frozen_b = value.to_device(dev).to_kind(Kind::Float),
            "increlora_state" => {
                let v = Vec::<f64>::try_from(value.to_kind(Kind::Double).flatten(0, -1))?;
                if v.len() != 5 {
                    bail!("increlora_state has {} entries, expected 5", v.len());
                }
                (self.rank, self.reserve, self.reserve_e, self.capture) = (v[0] as i64, v[1] as i64, v[2], v[4] != 0.0);
                self.score = Tensor::from(v[3]).to_device(dev);
            }
            _ => return Err(super::unknown_role("IncreLoRA", role)),
        }
        Ok(())
    }

    /// A' = A * E and B' = B * alpha / (ranknum + 1e-5) over the active ranks. Exact once the
    /// reserve's E is 0 (budget reached, or no advance learning); before that it leaves out the
    /// reserve's 1e-5 * B_res A_res term.
    fn lora_factors(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let r = self.rank;
            let a = self.a.narrow(0, 0, r) * &self.e;
            let b = self.b.narrow(1, 0, r) * self.scaling / self.ranknum();
            (a.contiguous(), b.contiguous())
        })
    }
}

/// IncreLoRA's `RankAllocator`: EMA importance every step until the budget is reached, rank
/// increases every `incre_interval` steps after `init_warmup`.
#[derive(Debug)]
pub struct IncreLoraController {
    pub config: IncreLoraConfig,
    adapters: Vec<(String, Shared<IncreLoraAdapter>)>,
    pub total_steps: i64,
    orth_reg_weight: f64,
    /// Sensitivity EMA per matrix (`exp_avg_ipt`): float64 [n] on the device, updated there
    /// every step (read back only at increase steps).
    exp_avg_ipt: Tensor,
    /// Uncertainty EMA per matrix (`exp_avg_unc`), likewise.
    exp_avg_unc: Tensor,
    /// `method.budget`: whether a round may pass the budget.
    budget_mode: BudgetMode,
}

/// `update_ipt` on plain numbers: each matrix's latest score s feeds the sensitivity
/// Ibar <- b1 Ibar + (1 - b1) s, then the uncertainty Ubar <- b2 Ubar + (1 - b2) |s - Ibar|
/// (with the updated Ibar).
pub fn update_emas(exp_avg_ipt: &mut [f64], exp_avg_unc: &mut [f64], scores: &[f64], beta1: f64, beta2: f64) {
    for ((ipt, unc), &s) in exp_avg_ipt.iter_mut().zip(exp_avg_unc.iter_mut()).zip(scores) {
        *ipt = beta1 * *ipt + (1.0 - beta1) * s;
        *unc = beta2 * *unc + (1.0 - beta2) * (s - *ipt).abs();
    }
}

/// [`update_emas`] on device tensors (float64 `[n]`), in the same operations and order, so the
/// two agree bit for bit (a unit test checks it). Returns the new (ipt, unc).
pub fn update_emas_on_device(exp_avg_ipt: &Tensor, exp_avg_unc: &Tensor, scores: &Tensor, beta1: f64, beta2: f64) -> (Tensor, Tensor) {
    let ipt = exp_avg_ipt * beta1 + scores * (1.0 - beta1);
    let unc = exp_avg_unc * beta2 + (scores - &ipt).abs() * (1.0 - beta2);
    (ipt, unc)
}

/// When and how IncreLoRA increases ranks over one run (its config's schedule keys), handed to
/// the allocation by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncreloraSchedule {
    /// Steps before the first increase (`init_warmup`).
    pub warmup: i64,
    /// Steps between increases (`incre_interval`).
    pub interval: i64,
    /// Matrices granted ranks per increase, at most.
    pub top_h: usize,
    /// Ranks granted per matrix (`incre_rank_num`).
    pub add_r: i64,
    pub mode: BudgetMode,
}

impl IncreloraSchedule {
    /// The increase at step t (`increase_to_target_rank`) with `total` ranks under `budget`:
    /// None when none is due; else k = min(top_h, budget - total) and the grants of `add_r`
    /// ranks to every matrix at or above the k-th largest ipt x unc product (cut to the budget
    /// under `Strict`). `scores` is called only when an increase is due (reading the products
    /// waits for the device).
    pub fn allocation(&self, t: i64, total: i64, budget: i64, scores: impl FnOnce() -> Vec<f64>) -> Option<(usize, Vec<(usize, i64)>)> {
        if !allocation_due(t, self.warmup, self.interval, total, budget) {
            return None;
        }
        let k = (self.top_h as i64).min(budget - total) as usize;
        Some((k, select_growth(&scores(), k, self.add_r, budget - total, self.mode)))
    }
}

fn lock(a: &Shared<IncreLoraAdapter>) -> std::sync::MutexGuard<'_, IncreLoraAdapter> {
    a.lock().expect("adapter lock poisoned")
}

impl IncreLoraController {
    pub fn new(config: IncreLoraConfig, adapters: Vec<(String, Shared<IncreLoraAdapter>)>, total_steps: i64, orth_reg_weight: f64) -> Self {
        let n = adapters.len();
        let device = adapters.first().map_or(Device::Cpu, |(_, a)| lock(a).a.device());
        let zeros = || Tensor::zeros([n as i64], (Kind::Double, device));
        IncreLoraController {
            config,
            adapters,
            total_steps,
            orth_reg_weight,
            exp_avg_ipt: zeros(),
            exp_avg_unc: zeros(),
            budget_mode: BudgetMode::default(),
        }
    }

    /// Sets `method.budget` (strict by default).
    pub fn with_budget_mode(mut self, mode: BudgetMode) -> Self {
        self.budget_mode = mode;
        self
    }

    pub fn total_rank(&self) -> i64 {
        self.adapters.iter().map(|(_, a)| lock(a).rank()).sum()
    }

    fn total_budget(&self) -> i64 {
        self.config.target_rank * self.adapters.len() as i64
    }

    /// `update_ipt`: each matrix's latest importance s feeds Ibar <- b1 Ibar + (1 - b1) s and
    /// Ubar <- b2 Ubar + (1 - b2) |s - Ibar| (with the updated Ibar).
    pub fn update_importance(&mut self) {
        let scores: Vec<Tensor> = self.adapters.iter().map(|(_, a)| lock(a).update_score()).collect();
        let scores = Tensor::stack(&scores, 0);
        (self.exp_avg_ipt, self.exp_avg_unc) =
            update_emas_on_device(&self.exp_avg_ipt, &self.exp_avg_unc, &scores, self.config.beta1, self.config.beta2);
    }

    /// The sensitivity and uncertainty EMAs on the host (one counted read each).
    pub fn emas(&self) -> (Vec<f64>, Vec<f64>) {
        (crate::device::read_vec_f64(&self.exp_avg_ipt), crate::device::read_vec_f64(&self.exp_avg_unc))
    }

    /// `calculate_score` ("ipt"): sensitivity x uncertainty per matrix (one counted read).
    pub fn scores(&self) -> Vec<f64> {
        crate::device::read_vec_f64(&(&self.exp_avg_ipt * &self.exp_avg_unc))
    }

    /// Hands every tensor of adapter `i` that changed shape to the optimizer; its new entries
    /// are born at `birth` (IncreLoRA's new parameter group with its own schedule).
    fn register(&self, i: usize, opt: &mut AdamW, birth: i64) -> Result<()> {
        let (name, adapter) = &self.adapters[i];
        for (role, t) in lock(adapter).params() {
            let key = format!("{name}.{role}");
            if opt.value(&key).is_none_or(|v| v.size() != t.size()) {
                opt.grow(&key, &t, birth)?;
            }
        }
        Ok(())
    }
}

impl RankController for IncreLoraController {
    fn adapters(&self) -> Vec<(String, super::DynAdapter)> {
        super::dyn_adapters(&self.adapters)
    }

    /// `update_and_increase` for global step `step`. Its allocator runs between backward and the
    /// optimizer step, ours right after the step; parameters it adds then get no update before
    /// step + 1 (their gradient is None at `step`), which is their birth here.
    fn after_step(&mut self, step: i64, opt: &mut AdamW) -> Result<()> {
        let add_r = self.config.incre_rank_num();
        // The initial reserve, added after the first step's backward.
        for i in 0..self.adapters.len() {
            let fresh = lock(&self.adapters[i].1).reserve() == 0;
            if fresh {
                lock(&self.adapters[i].1).add_reserve(add_r);
                self.register(i, opt, step + 1)?;
            }
        }
        let (total, budget) = (self.total_rank(), self.total_budget());
        if total >= budget {
            // No importance is needed any more (IncreLoRA still runs its hook; no effect).
            for (_, a) in &self.adapters {
                lock(a).stop_capture();
            }
            return Ok(());
        }
        self.update_importance();
        let c = &self.config;
        let schedule =
            IncreloraSchedule { warmup: c.init_warmup, interval: c.incre_interval, top_h: c.top_h, add_r, mode: self.budget_mode };
        // An increase step reads the products once; other steps read nothing.
        let Some((_, grants)) = schedule.allocation(step, total, budget, || self.scores()) else {
            return Ok(());
        };
        for (i, g) in grants {
            lock(&self.adapters[i].1).grow(g)?;
            self.register(i, opt, step + 1)?;
        }
        // As the reference: the reserve is switched off only when the total lands exactly on
        // the budget (always under `strict`; an overshooting `reference` run keeps it).
        if self.total_rank() == budget {
            for (_, a) in &self.adapters {
                lock(a).finish();
            }
        }
        Ok(())
    }

    /// `compute_svd_orth_regu` times gamma: (gamma / 2n) sum over matrices of
    /// ||A A^T - I||_F + ||B^T B - I||_F, with A and B including the reserved ranks.
    fn regularization(&self) -> Option<Tensor> {
        super::orthogonality_regularization(&self.adapters, self.orth_reg_weight, |a| (a.full_a(), a.full_b()))
    }

    fn budget(&self) -> Option<i64> {
        Some(self.total_budget())
    }

    /// The active ranks' A rows, E entries and B columns: r (d_in + d_out + 1) per matrix, as
    /// IncreLoRA counts its parameters (the reserve trained ahead is left out).
    fn reported_param_count(&self) -> i64 {
        super::triplet_param_count(&self.adapters)
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        vec![("exp_avg_ipt".into(), self.exp_avg_ipt.shallow_clone()), ("exp_avg_unc".into(), self.exp_avg_unc.shallow_clone())]
    }

    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let read = |k: &str| -> Result<Vec<f64>> { Ok(Vec::<f64>::try_from(super::state_entry(state, k)?.to_kind(Kind::Double))?) };
        let (ipt, unc) = (read("exp_avg_ipt")?, read("exp_avg_unc")?);
        if ipt.len() != self.adapters.len() || unc.len() != self.adapters.len() {
            bail!("saved IncreLoRA importance has the wrong length");
        }
        let device = self.exp_avg_ipt.device();
        let put = |v: &[f64]| Tensor::from_slice(v).to_device(device);
        (self.exp_avg_ipt, self.exp_avg_unc) = (put(&ipt), put(&unc));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::AdamWConfig;

    fn cfg(advance_learning: bool) -> IncreLoraConfig {
        IncreLoraConfig { advance_learning, ..Default::default() }
    }

    fn t(v: &[f32], shape: [i64; 2]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    /// An optimizer holding every adapter tensor, born at step 0 (as the trainer registers them).
    fn optimizer(adapters: &[(String, Shared<IncreLoraAdapter>)]) -> AdamW {
        let mut opt = AdamW::new(AdamWConfig::default());
        for (module, a) in adapters {
            for (role, p) in a.lock().unwrap().params() {
                opt.add(&format!("{module}.{role}"), &p, 0, 0.0).unwrap();
            }
        }
        opt
    }

    #[test]
    fn starts_with_zero_update_and_no_reserve() {
        tch::manual_seed(1);
        let a = IncreLoraAdapter::new(6, 5, &cfg(true), 32.0, Device::Cpu);
        assert_eq!((a.rank(), a.reserve()), (1, 0));
        assert_eq!(a.delta_weight().abs().max().double_value(&[]), 0.0);
        assert!(a.a.abs().min().double_value(&[]) > 0.0 && a.b.abs().min().double_value(&[]) > 0.0);
        assert_eq!(a.trainable_count(), 6 + 1 + 5);
    }

    #[test]
    fn advance_growth_keeps_trained_values_and_switches_on_the_reserve() {
        tch::manual_seed(2);
        let mut a = IncreLoraAdapter::new(6, 5, &cfg(true), 32.0, Device::Cpu);
        a.add_reserve(1);
        assert_eq!((a.rank(), a.reserve(), a.a.size(), a.b.size(), a.e.size()), (1, 1, vec![2, 6], vec![5, 2], vec![1, 1]));
        a.e = t(&[0.7], [1, 1]).set_requires_grad(true);
        let (old_a, old_b) = (a.a.copy(), a.b.copy());
        a.grow(1).unwrap();
        assert_eq!((a.rank(), a.reserve()), (2, 1));
        assert_eq!((a.a.size(), a.b.size(), a.e.size()), (vec![3, 6], vec![5, 3], vec![2, 1]));
        // The reserved rank (row 1 of A, column 1 of B) became active where it was; E gets the
        // reserve's 1e-5; a fresh reserved rank is appended.
        assert!(a.a.narrow(0, 0, 2).equal(&old_a) && a.b.narrow(1, 0, 2).equal(&old_b));
        assert!(close(f64::try_from(a.e.get(0).get(0)).unwrap(), 0.7));
        assert_eq!(f32::try_from(a.e.get(1).get(0)).unwrap(), 1e-5f32);
        assert!(a.a.get(2).abs().min().double_value(&[]) > 0.0);
        assert!(a.a.requires_grad() && a.e.requires_grad() && a.b.requires_grad() && a.a.is_leaf());
        // dW = B diag(E_full) A * alpha / (2 + 1e-5), the reserve with E = 1e-5; delta agrees.
        let e_full = t(&[0.7, 1e-5, 1e-5], [3, 1]);
        let expect = a.b.matmul(&(&a.a * e_full)) * 32.0 / (2.0 + 1e-5);
        assert!((a.delta_weight() - &expect).abs().max().double_value(&[]) < 1e-7);
        let x = Tensor::randn([4, 6], (Kind::Float, Device::Cpu));
        let d = tch::no_grad(|| a.delta(&x));
        assert!((d - x.matmul(&expect.tr())).abs().max().double_value(&[]) < 1e-6);
        assert_eq!(a.trainable_count(), 3 * 6 + 2 + 5 * 3);
    }

    #[test]
    fn growth_without_advance_learning_moves_the_frozen_reserve_into_the_parameters() {
        tch::manual_seed(3);
        let mut a = IncreLoraAdapter::new(4, 3, &cfg(false), 8.0, Device::Cpu);
        a.add_reserve(2);
        assert_eq!((a.a.size(), a.frozen_a.size(), a.frozen_b.size()), (vec![1, 4], vec![2, 4], vec![3, 2]));
        let (old_a, old_b, res_a, res_b) = (a.a.copy(), a.b.copy(), a.frozen_a.copy(), a.frozen_b.copy());
        a.grow(1).unwrap();
        assert_eq!((a.rank(), a.reserve()), (2, 2));
        assert!(a.a.narrow(0, 0, 1).equal(&old_a) && a.a.get(1).equal(&res_a.get(0)));
        assert!(a.b.narrow(1, 0, 1).equal(&old_b) && a.b.select(1, 1).equal(&res_b.select(1, 0)));
        // The second reserved rank moves up; a fresh one follows it. The new E starts at 0.
        assert!(a.frozen_a.get(0).equal(&res_a.get(1)) && a.frozen_a.size() == [2, 4]);
        assert_eq!(Vec::<f32>::try_from(a.e.view([-1])).unwrap(), vec![0.0, 0.0]);
        assert_eq!(a.trainable_count(), 2 * 4 + 2 + 3 * 2);
        assert!(a.grow(3).is_err());
    }

    /// One token x = [1, 3], loss = sum(c * (x dW^T)) with c = [2, -1]: grad dW = c^T x.
    #[test]
    fn importance_is_the_hand_computed_score_and_its_emas() {
        let mut a = IncreLoraAdapter::new(2, 2, &cfg(true), 4.0, Device::Cpu);
        a.a = t(&[1.0, 2.0], [1, 2]).set_requires_grad(true);
        a.e = t(&[0.5], [1, 1]).set_requires_grad(true);
        a.b = t(&[1.0, -1.0], [2, 1]).set_requires_grad(true);
        let x = t(&[1.0, 3.0], [1, 2]);
        let c = t(&[2.0, -1.0], [1, 2]);
        let plain = tch::no_grad(|| a.delta(&x));
        let out = a.delta(&x);
        assert!(out.detach().equal(&plain), "recording must not change the output");
        (out * &c).sum(Kind::Float).backward();
        // s dW = 4 / (1 + 1e-5) * [[0.5, 1], [-0.5, -1]], grad = [[2, 6], [-1, -3]]:
        // sum |s dW * grad| = 4 * (1 + 6 + 0.5 + 3) / (1 + 1e-5), over sqrt(4).
        let s = 4.0 * 10.5 / (1.0 + 1e-5) / 2.0;
        let shared = crate::peft::shared(a);
        let adapters = vec![("m".to_string(), shared.clone())];
        let mut opt = optimizer(&adapters);
        let mut ctl = IncreLoraController::new(IncreLoraConfig::default(), adapters, 1000, 0.1);
        ctl.after_step(0, &mut opt).unwrap();
        let got = shared.lock().unwrap().score_value();
        assert!(close(got, s), "{got} vs {s}");
        let (i1, u1) = (0.15 * s, 0.15 * (s - 0.15 * s));
        let (ipt, unc) = ctl.emas();
        assert!(close(ipt[0], i1) && close(unc[0], u1));
        // Step 1 has no new backward: the last score is used again.
        ctl.after_step(1, &mut opt).unwrap();
        let i2 = 0.85 * i1 + 0.15 * s;
        let u2 = 0.85 * u1 + 0.15 * (s - i2).abs();
        assert!(close(ctl.scores()[0], i2 * u2), "{} vs {}", ctl.scores()[0], i2 * u2);
        // The reserve was added after step 0 and handed to the optimizer, born at step 1.
        let [_, _, birth] = opt.state("m.lora_A").unwrap();
        assert_eq!(Vec::<f32>::try_from(birth.select(1, 0)).unwrap(), vec![0.0, 1.0]);
    }

    /// Final ranks, the grants per step, the optimizer and the adapters of a simulated run.
    type Simulated = (Vec<i64>, Vec<(i64, i64)>, AdamW, Vec<(String, Shared<IncreLoraAdapter>)>);

    fn simulate(n: usize, target: i64, top_h: usize, incre: Option<i64>, scores: &[f64], advance: bool) -> Simulated {
        tch::manual_seed(4);
        let config = IncreLoraConfig {
            target_rank: target,
            init_warmup: 3,
            incre_interval: 2,
            top_h,
            incre_rank_num: incre,
            advance_learning: advance,
            ..Default::default()
        };
        let adapters: Vec<_> =
            (0..n).map(|i| (format!("m{i}"), crate::peft::shared(IncreLoraAdapter::new(6, 5, &config, 16.0, Device::Cpu)))).collect();
        for (i, (_, a)) in adapters.iter().enumerate() {
            a.lock().unwrap().score = Tensor::from(scores[i]);
        }
        let mut opt = optimizer(&adapters);
        let mut ctl = IncreLoraController::new(config, adapters.clone(), 40, 0.1);
        let budget = ctl.budget().unwrap();
        let mut events = Vec::new();
        let mut before = ctl.total_rank();
        for step in 0..40 {
            ctl.after_step(step, &mut opt).unwrap();
            let now = ctl.total_rank();
            assert!(now <= budget, "total rank {now} passed the budget {budget} at step {step}");
            if now != before {
                events.push((step, now - before));
            }
            before = now;
        }
        let ranks = ctl.ranks().into_iter().map(|(_, r)| r).collect();
        (ranks, events, opt, adapters)
    }

    #[test]
    fn grows_top_h_at_the_increase_steps_until_exactly_the_budget() {
        let (ranks, events, opt, adapters) = simulate(4, 3, 2, None, &[1.0, 4.0, 2.0, 3.0], true);
        // Steps > 3 that are multiples of 2; 2 ranks per round; budget 12 from 4 after 4 rounds.
        assert_eq!(events, vec![(4, 2), (6, 2), (8, 2), (10, 2)]);
        assert_eq!(ranks.iter().sum::<i64>(), 12);
        // Constant scores: the same two matrices (scores 4 and 3) win every round.
        assert_eq!(ranks, vec![1, 5, 1, 5]);
        for (name, a) in &adapters {
            let a = a.lock().unwrap();
            assert_eq!(a.reserve_e, 0.0, "the reserve is switched off at the budget");
            assert!(!a.capture);
            for (role, p) in a.params() {
                assert_eq!(opt.value(&format!("{name}.{role}")).unwrap().size(), p.size(), "{name}.{role} not registered");
            }
        }
        // m1 grew at 4, 6, 8, 10: its E entries are born at 0, 5, 7, 9, 11.
        let [_, _, birth] = opt.state("m1.lora_E").unwrap();
        assert_eq!(Vec::<f32>::try_from(birth.view([-1])).unwrap(), vec![0.0, 5.0, 7.0, 9.0, 11.0]);
        // Its A: initial row, the reserve born at 1, then one reserve per increase.
        let [_, _, birth] = opt.state("m1.lora_A").unwrap();
        assert_eq!(Vec::<f32>::try_from(birth.select(1, 0)).unwrap(), vec![0.0, 1.0, 5.0, 7.0, 9.0, 11.0]);
    }

    #[test]
    fn the_last_grants_are_cut_to_the_budget() {
        // Budget 6 from 3, 2 ranks per selected matrix, top_h 2: 2 + 1.
        let (ranks, events, _, _) = simulate(3, 2, 2, Some(2), &[1.0, 3.0, 2.0], true);
        assert_eq!(events, vec![(4, 3)]);
        assert_eq!(ranks, vec![1, 3, 2]);
        let (ranks, events, _, _) = simulate(3, 2, 2, Some(2), &[1.0, 3.0, 2.0], false);
        assert_eq!((ranks, events), (vec![1, 3, 2], vec![(4, 3)]));
    }

    #[test]
    fn regularization_covers_the_reserve_but_trains_only_parameters() {
        tch::manual_seed(5);
        let mut a = IncreLoraAdapter::new(6, 5, &cfg(false), 16.0, Device::Cpu);
        a.add_reserve(1);
        let (fa, fb) = (a.full_a(), a.full_b());
        let expect = crate::peft::orthogonality_penalty(&fa, &fb).double_value(&[]) * 0.3 / 2.0;
        let ctl = IncreLoraController::new(cfg(false), vec![("m".into(), crate::peft::shared(a))], 100, 0.3);
        let reg = ctl.regularization().unwrap();
        assert!(close(reg.double_value(&[]), expect));
        reg.backward();
        let (_, a) = &ctl.adapters[0];
        let a = a.lock().unwrap();
        assert!(a.a.grad().defined() && !a.frozen_a.requires_grad());
    }

    #[test]
    fn empty_reserve_buffers_round_trip_through_safetensors() {
        let a = IncreLoraAdapter::new(6, 5, &cfg(true), 16.0, Device::Cpu);
        let path = std::env::temp_dir().join(format!("increlora_buffers_{}.safetensors", std::process::id()));
        let named: Vec<(String, Tensor)> = a.buffers().into_iter().map(|(n, t)| (n.to_string(), t)).collect();
        Tensor::write_safetensors(&named, &path).unwrap();
        let back = Tensor::read_safetensors(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let reserve_a = back.iter().find(|(n, _)| n == "reserve_A").unwrap();
        assert_eq!(reserve_a.1.size(), vec![0, 6]);
    }

    /// The controller's device EMAs equal the host replay's (`update_emas`, which the reference
    /// oracle test drives) bit for bit.
    #[test]
    fn device_emas_equal_the_host_replay() {
        tch::manual_seed(6);
        let (mut ipt, mut unc) = (vec![0.0; 5], vec![0.0; 5]);
        let (mut ti, mut tu) = (Tensor::zeros([5], (Kind::Double, Device::Cpu)), Tensor::zeros([5], (Kind::Double, Device::Cpu)));
        for _ in 0..20 {
            let s = Tensor::rand([5], (Kind::Double, Device::Cpu)) * 1e-3;
            update_emas(&mut ipt, &mut unc, &Vec::<f64>::try_from(&s).unwrap(), 0.85, 0.85);
            (ti, tu) = update_emas_on_device(&ti, &tu, &s, 0.85, 0.85);
        }
        assert_eq!(Vec::<f64>::try_from(&ti).unwrap(), ipt);
        assert_eq!(Vec::<f64>::try_from(&tu).unwrap(), unc);
    }
}
