//! Counting the ATen ops that launch work in each phase of a training step (`bench --ops`):
//! the real `Trainer::step` under [`crate::op_count`]'s counter, counted as each phase ends.

use anyhow::{bail, Result};

use super::spec::random_batch;
use super::{BenchSpec, OpsByPhase, Precision};
use crate::data::batch::Batch;
use crate::model::HeadKind;
use crate::op_count::OpCounter;
use crate::optim::OptimConfig;
use crate::train::{Phase, StepObserver, Trainer, TrainerConfig};

/// What [`count_ops`] found: an ordinary step by phase, and the whole of an allocation step.
#[derive(Debug, Clone, Copy)]
pub struct OpsCount {
    pub ordinary: OpsByPhase,
    pub allocation: Option<i64>,
}

/// Takes the counter's count at the end of each phase of the real step, into the slot of
/// [`OpsByPhase`]'s field order (the controller's two hooks into one slot).
struct CountingObserver<'a> {
    counter: &'a OpCounter,
    step: i64,
    names: bool,
    counts: [i64; 7],
}

impl StepObserver for CountingObserver<'_> {
    fn phase_done(&mut self, phase: Phase) {
        let slot = match phase {
            Phase::Forward => 0,
            Phase::Loss => 1,
            Phase::Backward => 2,
            Phase::Clipping => 3,
            Phase::Optimizer => 4,
            Phase::ZeroGrad => 5,
            Phase::ControllerBefore | Phase::ControllerAfter => 6,
        };
        if self.names {
            eprintln!("step {} {}: {:?}", self.step, phase_name(phase), self.counter.names());
        }
        self.counts[slot] += self.counter.take();
    }
}

/// The phase's name in `--ops-names` output (the `ops_by_phase` key it counts into).
fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Forward => "forward",
        Phase::Loss => "loss",
        Phase::ZeroGrad => "zero_grad",
        Phase::Backward => "backward",
        Phase::Clipping => "clipping",
        Phase::Optimizer => "optimizer",
        Phase::ControllerBefore | Phase::ControllerAfter => "controller",
    }
}

/// [`Trainer::step`] under an op counter: the ops of each phase, in the order of
/// [`OpsByPhase`]'s fields (the controller last, both hooks). Prints the names with `names`.
fn counted_step(t: &mut Trainer, batch: &Batch, step: i64, counter: &OpCounter, names: bool) -> Result<[i64; 7]> {
    let _ = counter.take();
    let mut obs = CountingObserver { counter, step, names, counts: [0; 7] };
    let stats = t.step_observed(batch, step, &mut obs)?;
    let counts = obs.counts;
    let value = stats.loss_value();
    if !value.is_finite() {
        bail!("the loss became {value} at step {step}");
    }
    let _ = counter.take();
    Ok(counts)
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
    trainer.opt.set_tensor_ops_only(true);
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
