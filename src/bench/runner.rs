//! Running one benchmark: builds the model and trainer of a [`BenchSpec`], times its warm-up and
//! timed steps (whole, or phase by phase with `--breakdown`), and summarises them into a
//! [`BenchResult`].

use anyhow::{bail, Result};

use super::flops::model_flops;
use super::ops::count_ops;
use super::probes::{process_cpu_seconds, process_memory_kb};
use super::spec::random_batch;
use super::timed::{sync, PhaseTimer};
use super::{BenchResult, BenchSpec, Precision, Variant};
use crate::model::HeadKind;
use crate::optim::{AdamWVariant, OptimConfig};
use crate::train::{Trainer, TrainerConfig};

/// Linear-interpolation percentile of sorted values (numpy's default), q in [0, 1].
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

fn average_rank(ranks: &[(String, i64)]) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().map(|(_, r)| *r as f64).sum::<f64>() / ranks.len() as f64
}

fn adamw_name(v: AdamWVariant) -> &'static str {
    match v {
        AdamWVariant::Torch => "torch",
        AdamWVariant::LegacyHf => "legacy_hf",
    }
}

/// Builds the model and trainer of `spec` and times its steps.
pub fn run(spec: &BenchSpec) -> Result<BenchResult> {
    if spec.batch < 1 || spec.seq < 2 || spec.steps < 1 || spec.warmup < 0 {
        bail!("--batch, --steps must be at least 1, --seq at least 2, --warmup not negative");
    }
    if spec.seq > 512 {
        bail!("--seq {}: the shapes have 512 positions", spec.seq);
    }
    let device = spec.device;
    if spec.precision == Precision::Bf16 {
        crate::precision::enable_bf16(device)?;
    }
    let total = spec.total_steps();
    let config = spec.model_config()?;
    let mcfg = spec.method_config();
    mcfg.validate(config.num_hidden_layers, total)?;
    let (rss_before, _) = process_memory_kb();
    tch::manual_seed(spec.seed);
    let attached = crate::peft::attach_random(&config, HeadKind::Cls, &mcfg, device);
    let optim = OptimConfig { lr: spec.lr, warmup_steps: 0, adamw: spec.adamw, ..Default::default() };
    let cfg = TrainerConfig { optim, total_steps: total, seed: spec.seed, bf16: spec.precision == Precision::Bf16 };
    let mut trainer = Trainer::new(attached, cfg)?;
    let batch = random_batch(&config, spec.batch, spec.seq, device);
    let n_adapted = trainer.adapters().len();

    let (mut step_times, mut ranks_seen, mut phases, mut ctl) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rank_start, mut loss, mut cpu_start) = (0.0, f64::NAN, None);
    for step in 0..total {
        if step == spec.warmup {
            cpu_start = process_cpu_seconds();
            rank_start = average_rank(&trainer.controller.ranks());
        }
        let timed = step >= spec.warmup;
        let mut timer = PhaseTimer::start(device, spec.breakdown && timed);
        let t0 = timer.last;
        loss = trainer.step_observed(&batch, step, &mut timer)?.loss_value();
        sync(device);
        let dt = t0.elapsed().as_secs_f64();
        if timed {
            step_times.push(dt);
            ranks_seen.push(average_rank(&trainer.controller.ranks()));
            ctl.push(timer.controller.as_secs_f64());
            if spec.breakdown {
                phases.push(timer.phases.map(|d| d.as_secs_f64()));
            }
        }
    }
    let cpu = cpu_start.zip(process_cpu_seconds()).map(|(a, b)| (b - a) / spec.steps as f64 * 1e3);
    let (_, hwm) = process_memory_kb();
    let rank_mean = if n_adapted == 0 { 0.0 } else { (rank_start + ranks_seen.iter().sum::<f64>()) / (ranks_seen.len() + 1) as f64 };
    // AdaLoRA masks singular values but multiplies by all r_init of them.
    let compute_rank = if spec.variant == Variant::Adalora { mcfg.adalora.init_rank as f64 } else { rank_mean };
    let flops = model_flops(&config, spec.variant, spec.batch, spec.seq, compute_rank);
    let mut sorted = step_times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = percentile(&sorted, 0.5);
    let phase = |i: usize| {
        let mut v: Vec<f64> = phases.iter().map(|p: &[f64; 3]| p[i]).collect();
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| percentile(&v, 0.5) * 1e3)
    };
    // Counted after every measurement above: a second trainer, its own steps.
    let ops = if spec.ops { Some(count_ops(spec)?) } else { None };
    Ok(BenchResult {
        tool: "triadapt",
        model_config: spec.model_config_name(),
        method: spec.variant.as_str(),
        batch: spec.batch,
        seq: spec.seq,
        warmup: spec.warmup,
        steps: spec.steps,
        device: crate::device::device_name(device),
        precision: spec.precision.as_str(),
        threads: tch::get_num_threads(),
        optim: "triadapt AdamW (src/optim.rs)",
        adamw: adamw_name(spec.adamw),
        examples_per_s: spec.batch as f64 / median,
        examples_per_s_mean: spec.batch as f64 * sorted.len() as f64 / sorted.iter().sum::<f64>(),
        step_ms_median: median * 1e3,
        step_ms_p25: percentile(&sorted, 0.25) * 1e3,
        step_ms_p75: percentile(&sorted, 0.75) * 1e3,
        step_ms_min: sorted[0] * 1e3,
        step_ms_max: sorted[sorted.len() - 1] * 1e3,
        controller_ms_per_step: ctl.iter().sum::<f64>() / ctl.len().max(1) as f64 * 1e3,
        controller_ms_max: ctl.iter().copied().fold(0.0, f64::max) * 1e3,
        cpu_ms_per_step: cpu,
        peak_rss_mb: hwm as f64 / 1024.0,
        rss_before_model_mb: rss_before as f64 / 1024.0,
        peak_cuda_mb: None,
        trainable_params: trainer.trainable_count(),
        adapted_matrices: n_adapted,
        final_loss: loss,
        avg_rank_start: rank_start,
        avg_rank_end: ranks_seen.last().copied().unwrap_or(0.0),
        avg_rank_mean: rank_mean,
        model_gflop_per_step: flops / 1e9,
        achieved_gflops: flops / median / 1e9,
        forward_ms: phase(0),
        backward_ms: phase(1),
        optimizer_ms: phase(2),
        ops_per_step: ops.as_ref().map(|o| o.ordinary.total()),
        ops_by_phase: ops.as_ref().map(|o| o.ordinary),
        ops_allocation_step: ops.as_ref().and_then(|o| o.allocation),
        versions: format!("triadapt {}, libtorch {}", env!("CARGO_PKG_VERSION"), env!("TRIADAPT_TORCH_VERSION")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 0.5), 2.5);
        assert_eq!(percentile(&v, 0.25), 1.75);
        assert_eq!(percentile(&[5.0], 0.75), 5.0);
    }
}
