//! Counting the ATen ops that launch work in each phase of a training step (`bench --ops`):
//! `Trainer::step` replayed phase by phase under [`crate::op_count`]'s counter.

use anyhow::{bail, Result};

use super::spec::random_batch;
use super::{BenchSpec, OpsByPhase, Precision};
use crate::data::batch::Batch;
use crate::model::HeadKind;
use crate::op_count::OpCounter;
use crate::optim::OptimConfig;
use crate::train::{Trainer, TrainerConfig};

/// What [`count_ops`] found: an ordinary step by phase, and the whole of an allocation step.
#[derive(Debug, Clone, Copy)]
pub struct OpsCount {
    pub ordinary: OpsByPhase,
    pub allocation: Option<i64>,
}

/// `Trainer::step` phase by phase under an op counter: the ops of each phase, in the order of
/// [`OpsByPhase`]'s fields (the controller last, both hooks). Prints the names with `names`.
fn counted_step(t: &mut Trainer, batch: &Batch, step: i64, counter: &OpCounter, names: bool) -> Result<[i64; 7]> {
    let mut n = [0i64; 7];
    let mut take = |i: usize, phase: &str| {
        if names {
            eprintln!("step {step} {phase}: {:?}", counter.names());
        }
        n[i] += counter.take();
    };
    let _ = counter.take();
    // Trainer::forward_loss, with a count between the model and the loss (one autocast block,
    // so that its cache of bf16 weights spans both, as in the step).
    tch::manual_seed(t.seed.wrapping_mul(1_000_003).wrapping_add(step));
    let device = t.vs.device();
    let (task, loss) = crate::precision::autocast(device, t.bf16(), || {
        let out = t.model.forward_t(&batch.input_ids, &batch.attention_mask, &batch.token_type_ids, true);
        take(0, "forward");
        let task = crate::train::task_loss(t.model.kind, t.model.config.num_labels(), &out.logits, &batch.labels);
        let loss = match t.controller.regularization() {
            Some(reg) => &task + reg,
            None => task.shallow_clone(),
        };
        take(1, "loss");
        (task, loss)
    });
    // Trainer::backward: zero_grad, backward, clipping.
    t.opt.zero_grad();
    take(5, "zero_grad");
    loss.backward();
    take(2, "backward");
    if t.optim.max_grad_norm > 0.0 {
        t.opt.clip_grad_norm(t.optim.max_grad_norm);
    }
    take(3, "clipping");
    // Trainer::optimizer_step: the controller's pre-update hook, then AdamW.
    t.controller.before_step(step)?;
    take(6, "controller");
    let (policy, warmup, total) = (t.lr_policy, t.optim.warmup_steps, t.total_steps);
    t.opt.step(step, &move |birth: i64| policy.multiplier(step, birth, warmup, total));
    take(4, "optimizer");
    t.after_step(step)?;
    take(6, "controller");
    let value = crate::device::read_f64(&task);
    if !value.is_finite() {
        bail!("the loss became {value} at step {step}");
    }
    let _ = counter.take();
    Ok(n)
}

/// Counts the ATen ops that launch work ([`crate::op_count`]) in every phase of every step of a
/// fresh trainer of `spec` (warm-up and timed steps, the controller allocating every second step:
/// [`BenchSpec::counting_method_config`]), with AdamW on its device path (tensor ops, also on
/// CPU). An allocation step is one whose controller count exceeds the smallest; the last
/// ordinary and the last allocation step are reported (after growth, where the method grows).
pub fn count_ops(spec: &BenchSpec) -> Result<OpsCount> {
    let device = spec.device;
    if spec.precision == Precision::Bf16 {
        crate::precision::enable_bf16(device)?;
    }
    let total = spec.total_steps();
    let config = spec.model_config()?;
    let mcfg = spec.counting_method_config();
    mcfg.validate(config.num_hidden_layers, total)?;
    tch::manual_seed(spec.seed);
    let attached = crate::peft::attach_random(&config, HeadKind::Cls, &mcfg, device);
    let optim = OptimConfig { lr: spec.lr, warmup_steps: 0, adamw: spec.adamw, ..Default::default() };
    let bf16 = spec.precision == Precision::Bf16;
    let mut trainer = Trainer::new(attached, TrainerConfig { optim, total_steps: total, seed: spec.seed, bf16 })?;
    trainer.opt.tensor_ops_only = true;
    let batch = random_batch(&config, spec.batch, spec.seq, device);
    let counter = OpCounter::start(spec.ops_names)?;
    let mut steps = Vec::new();
    for step in 0..total {
        steps.push(counted_step(&mut trainer, &batch, step, &counter, spec.ops_names)?);
    }
    drop(counter);
    let least = steps.iter().map(|n| n[6]).min().unwrap_or(0);
    let ordinary = steps.iter().rev().find(|n| n[6] == least).expect("at least one step");
    let allocation = steps.iter().rev().find(|n| n[6] > least);
    let by_phase = OpsByPhase {
        forward: ordinary[0],
        loss: ordinary[1],
        backward: ordinary[2],
        clipping: ordinary[3],
        optimizer: ordinary[4],
        zero_grad: ordinary[5],
        controller: ordinary[6],
        controller_allocation: allocation.map(|n| n[6]),
    };
    Ok(OpsCount { ordinary: by_phase, allocation: allocation.map(|n| n.iter().sum()) })
}
