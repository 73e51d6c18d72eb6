//! The training step shared by every method: forward in train mode, task loss plus the method's
//! regularisation, backward, gradient clipping, AdamW with the learning-rate policy, then the
//! rank controller. Dropout draws from a generator reseeded from (seed, step), so a run resumed
//! at any step reproduces the uninterrupted one bit for bit on CPU.

use anyhow::{bail, Result};
use tch::{nn, Kind, Reduction, Tensor};

use crate::data::batch::Batch;
use crate::model::{DebertaModel, HeadKind};
use crate::optim::{AdamW, AdamWConfig, LrPolicy, OptimConfig};
use crate::peft::method::MethodName;
use crate::peft::Attached;
use crate::peft::RankController;
pub use phase::{Phase, StepObserver, Unobserved};

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
    /// Forward, loss and regularisation under bf16 autocast ([`TrainerConfig::bf16`]).
    bf16: bool,
}

/// What one step did. The loss and gradient norm stay on the device (reading them would wait
/// for the step to finish): read them where they are logged (`loss_value`).
#[derive(Debug)]
pub struct StepStats {
    /// The task loss (without the regulariser), detached, 0-dim.
    pub loss: Tensor,
    /// The learning rate of entries born at step 0.
    pub lr: f64,
    /// The gradient norm before clipping (None when clipping is off).
    pub grad_norm: Option<Tensor>,
}

impl StepStats {
    /// The task loss on the host (one counted device-to-host read).
    pub fn loss_value(&self) -> f64 {
        crate::device::read_f64(&self.loss)
    }
}

/// How a trainer optimises: AdamW settings, the run's length (schedules) and its seed (dropout).
#[derive(Debug, Clone)]
pub struct TrainerConfig {
    pub optim: OptimConfig,
    pub total_steps: i64,
    pub seed: i64,
    /// Forward, loss and regularisation under bf16 autocast (`bf16: true`; call
    /// `precision::enable_bf16` first). Backward's bookkeeping, clipping, AdamW and the rank
    /// controller stay in float32, as under torch.autocast.
    pub bf16: bool,
}

impl Trainer {
    /// A trainer for `model` (from [`crate::peft::attach()`]) running the method block it was
    /// built with: freezes the backbone (all of it trains for full fine-tuning; the head always
    /// trains) and registers every trainable tensor with AdamW, born at step 0.
    pub fn new(model: Attached, cfg: TrainerConfig) -> Result<Self> {
        let TrainerConfig { optim, total_steps, seed, bf16 } = cfg;
        if total_steps < 1 {
            bail!("key `total_steps`: a run needs at least one training step");
        }
        let method = model.method.clone();
        let (vs, model, adapters, controller) = model.into_parts(total_steps);
        let lr_policy = method.lr_policy;
        let full = method.name == MethodName::Full;
        let heads = crate::model::heads::head_prefixes(model.kind);
        let mut trainable_vars = Vec::new();
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, t) in vars {
            let head = heads.iter().any(|p| name.starts_with(p));
            let train = full || (head && (method.train_pooler || !name.starts_with("pooler.")));
            let t = t.set_requires_grad(train);
            if train {
                trainable_vars.push((name, t));
            }
        }
        let mut opt = AdamW::new(AdamWConfig {
            lr: optim.lr,
            beta1: optim.adam_beta1,
            beta2: optim.adam_beta2,
            eps: optim.adam_eps,
            weight_decay: optim.weight_decay,
            variant: optim.adamw,
        });
        for (name, t) in &trainable_vars {
            opt.add(name, t, 0, if decays(name) { optim.weight_decay } else { 0.0 })?;
        }
        let grown_decay = controller.grown_weight_decay().unwrap_or(optim.weight_decay);
        for (name, t) in controller.named_params() {
            opt.add(&name, &t, 0, optim.weight_decay)?;
            opt.set_grown_weight_decay(&name, grown_decay)?;
        }
        opt.pack();
        Ok(Trainer { vs, model, controller, opt, optim, lr_policy, total_steps, seed, trainable_vars, adapters, bf16 })
    }

    /// Whether forward, loss and regularisation run under bf16 autocast.
    pub fn bf16(&self) -> bool {
        self.bf16
    }

    /// The learning-rate multiplier of entries born at `birth`, at `step`.
    pub fn lr_multiplier(&self, step: i64, birth: i64) -> f64 {
        self.lr_policy.multiplier(step, birth, self.optim.warmup_steps, self.total_steps)
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
        self.trainable_vars
            .iter()
            .map(|(_, t)| t.shallow_clone())
            .chain(self.controller.named_params().into_iter().map(|(_, t)| t))
            .collect()
    }

    /// Trainable scalars of the task head (pooler and classifier, or the QA outputs).
    pub fn head_param_count(&self) -> i64 {
        let heads = crate::model::heads::head_prefixes(self.model.kind);
        self.trainable_vars.iter().filter(|(n, _)| heads.iter().any(|p| n.starts_with(p))).map(|(_, t)| t.numel() as i64).sum()
    }

    /// Trainable scalars outside the head, as the papers' #Params counts them: the adapters
    /// (TriAdaptLoRA's triangle entries included), or the backbone for full fine-tuning.
    pub fn adapter_param_count(&self) -> i64 {
        let backbone: i64 = self.trainable_vars.iter().map(|(_, t)| t.numel() as i64).sum::<i64>() - self.head_param_count();
        backbone + self.controller.reported_param_count()
    }

    /// Trainable scalars: adapter parameters plus the head (or the whole model for full FT).
    pub fn trainable_count(&self) -> i64 {
        self.trainable_vars.iter().map(|(_, t)| t.numel() as i64).sum::<i64>() + self.controller.trainable_count()
    }

    /// Forward, loss and regularisation: reseeds dropout from (seed, step), then forward in train
    /// mode, the task loss and the method's regularisation (under bf16 autocast when `bf16`).
    /// Returns (task loss, loss to differentiate).
    fn forward_loss(&mut self, batch: &Batch, step: i64, obs: &mut dyn StepObserver) -> (Tensor, Tensor) {
        tch::manual_seed(self.seed.wrapping_mul(1_000_003).wrapping_add(step));
        let device = self.vs.device();
        crate::precision::autocast(device, self.bf16, || {
            let out = self.model.forward_t(&batch.input_ids, &batch.attention_mask, &batch.token_type_ids, true);
            obs.phase_done(Phase::Forward);
            let task = task_loss(self.model.kind, self.model.config.num_labels(), &out.logits, &batch.labels);
            let loss = match self.controller.regularization() {
                Some(reg) => &task + reg,
                None => task.shallow_clone(),
            };
            obs.phase_done(Phase::Loss);
            (task, loss)
        })
    }

    /// Drops the old gradients, backward, clipping. Returns the gradient norm before clipping,
    /// on the device (None when clipping is off).
    fn backward(&mut self, loss: &Tensor, obs: &mut dyn StepObserver) -> Option<Tensor> {
        self.opt.zero_grad();
        obs.phase_done(Phase::ZeroGrad);
        loss.backward();
        obs.phase_done(Phase::Backward);
        let norm = (self.optim.max_grad_norm > 0.0).then(|| self.opt.clip_grad_norm(self.optim.max_grad_norm)).flatten();
        obs.phase_done(Phase::Clipping);
        norm
    }

    /// The controller's pre-update hook (where the reference harnesses call their allocators:
    /// after clipping, before the update; docs/method.md, "Training step"), then AdamW. Returns
    /// the learning rate of entries born at step 0.
    fn optimizer_step(&mut self, step: i64, obs: &mut dyn StepObserver) -> Result<f64> {
        self.controller.before_step(step)?;
        obs.phase_done(Phase::ControllerBefore);
        let (policy, warmup, total) = (self.lr_policy, self.optim.warmup_steps, self.total_steps);
        let mult = move |birth: i64| policy.multiplier(step, birth, warmup, total);
        self.opt.step(step, &mult);
        obs.phase_done(Phase::Optimizer);
        Ok(self.optim.lr * mult(0))
    }

    /// The rank controller after the update (growth, masking), then the optimizer's flat buffers
    /// re-packed if a tensor grew.
    fn after_step(&mut self, step: i64, obs: &mut dyn StepObserver) -> Result<()> {
        self.controller.after_step(step, &mut self.opt)?;
        self.opt.pack();
        obs.phase_done(Phase::ControllerAfter);
        Ok(())
    }

    /// One optimisation step at global step `step` (0-based): forward and loss, backward and
    /// clipping, the controller's hook and AdamW, the controller after the update. Nothing is
    /// read back to the host except where the rank controller allocates; the caller checks the
    /// loss where it reads it (`run` does at every log line).
    pub fn step(&mut self, batch: &Batch, step: i64) -> Result<StepStats> {
        self.step_observed(batch, step, &mut Unobserved)
    }

    /// [`Trainer::step`], telling `obs` as each [`Phase`] ends (benchmarks time and count it).
    pub fn step_observed(&mut self, batch: &Batch, step: i64, obs: &mut dyn StepObserver) -> Result<StepStats> {
        let (task, loss) = self.forward_loss(batch, step, obs);
        let grad_norm = self.backward(&loss, obs);
        let lr = self.optimizer_step(step, obs)?;
        self.after_step(step, obs)?;
        Ok(StepStats { loss: task.detach(), lr, grad_norm })
    }
}
pub mod cadence;
pub mod checkpoint;
pub mod folder;
pub mod log;
pub mod phase;
pub mod provenance;
pub mod result;
pub mod run;
pub mod signals;
pub mod tensorboard;
