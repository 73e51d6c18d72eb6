//! What a benchmark reports: [`BenchResult`] (one JSON line of `bench --json`, keys shared with
//! `scripts/bench_peft.py`) and the op counts by phase.

use serde::Serialize;

/// What one benchmark measured. Keys shared with `scripts/bench_peft.py`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub tool: &'static str,
    /// The shape's name, or the config.json path.
    pub model_config: String,
    pub method: &'static str,
    pub batch: i64,
    pub seq: i64,
    pub warmup: i64,
    pub steps: i64,
    pub device: String,
    pub precision: &'static str,
    pub threads: i32,
    pub optim: &'static str,
    /// `torch` or `legacy_hf`.
    pub adamw: &'static str,
    /// batch / median step time.
    pub examples_per_s: f64,
    /// batch * steps / total timed time.
    pub examples_per_s_mean: f64,
    pub step_ms_median: f64,
    pub step_ms_p25: f64,
    pub step_ms_p75: f64,
    pub step_ms_min: f64,
    pub step_ms_max: f64,
    /// Mean time per timed step in the rank controller's `after_step` (growth, masking, scores).
    pub controller_ms_per_step: f64,
    pub controller_ms_max: f64,
    /// Process CPU time (all threads) per timed step: less sensitive than wall time to other
    /// processes sharing the cores, when --threads does not exceed the free cores.
    pub cpu_ms_per_step: Option<f64>,
    /// Peak resident set of the process (VmHWM), MiB.
    pub peak_rss_mb: f64,
    /// Resident set before the model was built, MiB.
    pub rss_before_model_mb: f64,
    /// Peak CUDA allocator memory: not exposed by tch (the GPU script samples nvidia-smi).
    pub peak_cuda_mb: Option<f64>,
    pub trainable_params: i64,
    pub adapted_matrices: usize,
    pub final_loss: f64,
    /// Average rank over the adapted matrices before the first and after the last timed step,
    /// and its mean over the timed steps.
    pub avg_rank_start: f64,
    pub avg_rank_end: f64,
    pub avg_rank_mean: f64,
    /// Matmul FLOPs of one training step by [`model_flops`](super::model_flops) at the mean average rank (AdaLoRA:
    /// at r_init, the rank it computes with).
    pub model_gflop_per_step: f64,
    /// model_gflop_per_step / median step time.
    pub achieved_gflops: f64,
    /// With `breakdown`: median milliseconds of the forward pass (with loss and regularisation),
    /// the backward pass, and the optimizer (zero_grad, clipping, AdamW).
    pub forward_ms: Option<f64>,
    pub backward_ms: Option<f64>,
    pub optimizer_ms: Option<f64>,
    /// With `ops`: ATen ops that launch work in an ordinary step ([`count_ops`](super::count_ops)).
    pub ops_per_step: Option<i64>,
    /// With `ops`: that step's ops by phase, and the controller's on an allocation step.
    pub ops_by_phase: Option<OpsByPhase>,
    /// With `ops`: ops of a step where the controller allocates or masks (None for methods
    /// without one).
    pub ops_allocation_step: Option<i64>,
    pub versions: String,
}

/// Ops of one training step by phase, in the order `Trainer::step` runs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpsByPhase {
    /// The model's forward pass (under autocast for bf16).
    pub forward: i64,
    /// The task loss and the method's regularisation.
    pub loss: i64,
    /// `loss.backward()`.
    pub backward: i64,
    /// Gradient-norm clipping.
    pub clipping: i64,
    /// AdamW (the device's tensor-op path, also on CPU).
    pub optimizer: i64,
    /// Dropping the gradients before backward.
    pub zero_grad: i64,
    /// The rank controller (its pre-update and post-update hooks) on an ordinary step.
    pub controller: i64,
    /// The rank controller on an allocation step (None without allocation steps).
    pub controller_allocation: Option<i64>,
}

impl OpsByPhase {
    /// Every phase of the step (the ordinary controller's count).
    pub fn total(&self) -> i64 {
        self.forward + self.loss + self.backward + self.clipping + self.optimizer + self.zero_grad + self.controller
    }
}
