//! The training step shared by every method: forward in train mode, task loss plus the method's
//! regularisation, backward, gradient clipping, AdamW with the learning-rate policy, then the
//! rank controller. Dropout draws from a generator reseeded from (seed, step), so a run resumed
//! at any step reproduces the uninterrupted one bit for bit on CPU.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Reduction, Tensor};

use crate::model::{DebertaModel, HeadKind};
use crate::optim::{clip_grad_norm, linear_schedule, AdamW, AdamWConfig, LrPolicy};
use crate::peft::method::MethodName;
use crate::peft::RankController;

/// Optimisation settings of a run (spec section 4).
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
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig { lr: 1e-3, weight_decay: 0.01, warmup_steps: 100, max_grad_norm: 1.0, adam_beta1: 0.9, adam_beta2: 0.999, adam_eps: 1e-8 }
    }
}

/// One batch on the model's device. Labels: class ids (int64), regression targets (float), or
/// for QA a [batch, 2] tensor of start and end positions.
pub struct Batch {
    pub input_ids: Tensor,
    pub attention_mask: Tensor,
    pub token_type_ids: Tensor,
    pub labels: Tensor,
}

/// The task loss HF computes for each head: cross-entropy, MSE for one label, and the mean of
/// the start and end cross-entropies for QA.
pub fn task_loss(kind: HeadKind, num_labels: i64, logits: &Tensor, labels: &Tensor) -> Tensor {
    match kind {
        HeadKind::Cls if num_labels == 1 => logits.view([-1]).mse_loss(&labels.to_kind(Kind::Float).view([-1]), Reduction::Mean),
        HeadKind::Cls => logits.cross_entropy_for_logits(labels),
        HeadKind::Qa => {
            let start = logits.select(2, 0).cross_entropy_for_logits(&labels.select(1, 0));
            let end = logits.select(2, 1).cross_entropy_for_logits(&labels.select(1, 1));
            (start + end) / 2.0
        }
    }
}

/// HF Trainer's rule: no weight decay on biases and LayerNorm weights.
fn decays(name: &str) -> bool {
    !(name.ends_with("bias") || name.contains("LayerNorm"))
}

/// A model, its method's controller and the optimizer over every trainable tensor.
pub struct Trainer {
    pub vs: nn::VarStore,
    pub model: DebertaModel,
    pub controller: Box<dyn RankController>,
    pub opt: AdamW,
    pub optim: OptimConfig,
    pub lr_policy: LrPolicy,
    pub total_steps: i64,
    pub seed: i64,
    /// Backbone/head tensors that train (the head, or everything for full fine-tuning).
    trainable_vars: Vec<(String, Tensor)>,
    adapters: Vec<(String, crate::peft::DynAdapter)>,
}

/// What one step did.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
}

impl Trainer {
    /// Freezes the backbone (all of it trains for full fine-tuning; the head always trains) and
    /// registers every trainable tensor with AdamW, born at step 0.
    #[allow(clippy::too_many_arguments)]
    pub fn new(vs: nn::VarStore, model: DebertaModel, controller: Box<dyn RankController>, adapters: Vec<(String, crate::peft::DynAdapter)>, method: MethodName, optim: OptimConfig, lr_policy: LrPolicy, total_steps: i64, seed: i64) -> Result<Self> {
        if total_steps < 1 {
            bail!("key `total_steps`: a run needs at least one training step");
        }
        let heads = crate::model::heads::head_prefixes(model.kind);
        let mut trainable_vars = Vec::new();
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in vars {
            let train = method == MethodName::Full || heads.iter().any(|p| name.starts_with(p));
            let t = t.set_requires_grad(train);
            if train {
                trainable_vars.push((name, t));
            }
        }
        let mut opt = AdamW::new(AdamWConfig { lr: optim.lr, beta1: optim.adam_beta1, beta2: optim.adam_beta2, eps: optim.adam_eps, weight_decay: optim.weight_decay });
        for (name, t) in &trainable_vars {
            opt.add(name, t, 0, if decays(name) { optim.weight_decay } else { 0.0 })?;
        }
        for (name, t) in controller.named_params() {
            opt.add(&name, &t, 0, optim.weight_decay)?;
        }
        Ok(Trainer { vs, model, controller, opt, optim, lr_policy, total_steps, seed, trainable_vars, adapters })
    }

    /// The learning-rate multiplier of entries born at `birth`, at `step`.
    pub fn lr_multiplier(&self, step: i64, birth: i64) -> f64 {
        let birth = match self.lr_policy {
            LrPolicy::Restart => birth,
            LrPolicy::Follow => 0,
        };
        linear_schedule(step, birth, self.optim.warmup_steps, self.total_steps)
    }

    /// Backbone/head tensors that train, by HF name.
    pub fn trainable_vars(&self) -> &[(String, Tensor)] {
        &self.trainable_vars
    }

    /// The adapted matrices, by HF module name.
    pub fn adapters(&self) -> &[(String, crate::peft::DynAdapter)] {
        &self.adapters
    }

    /// Every tensor the optimizer updates (for clipping and counting).
    pub fn trainable(&self) -> Vec<Tensor> {
        self.trainable_vars.iter().map(|(_, t)| t.shallow_clone()).chain(self.controller.named_params().into_iter().map(|(_, t)| t)).collect()
    }

    /// Trainable scalars: adapter parameters plus the head (or the whole model for full FT).
    pub fn trainable_count(&self) -> i64 {
        self.trainable_vars.iter().map(|(_, t)| t.numel() as i64).sum::<i64>() + self.controller.trainable_count()
    }

    /// One optimisation step at global step `step` (0-based).
    pub fn step(&mut self, batch: &Batch, step: i64) -> Result<StepStats> {
        tch::manual_seed(self.seed.wrapping_mul(1_000_003).wrapping_add(step));
        let out = self.model.forward_t(&batch.input_ids, &batch.attention_mask, &batch.token_type_ids, true);
        let task = task_loss(self.model.kind, self.model.config.num_labels(), &out.logits, &batch.labels);
        let loss = match self.controller.regularization() {
            Some(reg) => &task + reg,
            None => task.shallow_clone(),
        };
        let loss_value = task.double_value(&[]);
        if !loss_value.is_finite() {
            bail!("the loss became {loss_value} at step {step}");
        }
        self.opt.zero_grad();
        loss.backward();
        let grad_norm = if self.optim.max_grad_norm > 0.0 { clip_grad_norm(&self.trainable(), self.optim.max_grad_norm) } else { 0.0 };
        let (policy, warmup, total) = (self.lr_policy, self.optim.warmup_steps, self.total_steps);
        let mult = move |birth: i64| {
            let birth = if policy == LrPolicy::Restart { birth } else { 0 };
            linear_schedule(step, birth, warmup, total)
        };
        self.opt.step(step, &mult);
        self.controller.after_step(step, &mut self.opt)?;
        Ok(StepStats { loss: loss_value, lr: self.optim.lr * mult(0), grad_norm })
    }
}
pub mod eval;
pub mod run;
