//! `triadapt bench`: times training steps (forward, backward, clipping, AdamW, the rank
//! controller: exactly [`Trainer::step`]) on a randomly initialised DeBERTa-v3 of a real shape,
//! after untimed warm-up steps, and reports throughput, the median step time and its spread, the
//! time spent in the rank controller, peak memory and the achieved matmul FLOP rate.
//!
//! `scripts/bench_peft.py` measures the same thing with HF transformers + peft, with the same
//! output keys; `scripts/bench_suite.py` (`make bench`) runs both, alternating, and writes the
//! tables.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::data::batch::Batch;
use crate::model::{DebertaConfig, HeadKind};
use crate::op_count::OpCounter;
use crate::optim::LrPolicy;
use crate::optim::{AdamWVariant, OptimConfig};
use crate::peft::method::{MethodConfig, MethodName};
use crate::peft::RankController;
use crate::train::{Trainer, TrainerConfig};

crate::listed::listed_enum! {
    /// Model shapes with random weights (no checkpoint needed).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Shape {
        /// microsoft/deberta-v3-base: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 128100.
        Base,
        /// microsoft/deberta-v3-small: 6 layers, hidden 768, 12 heads, FFN 3072, vocab 128100.
        Small,
        /// microsoft/deberta-v3-xsmall: 12 layers, hidden 384, 6 heads, FFN 1536, vocab 128100.
        Xsmall,
        /// The test fixture (tests/fixtures/models/v3): 2 layers, hidden 32, 4 heads, FFN 64, vocab 1001.
        Tiny,
    }
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Base => "base",
            Shape::Small => "small",
            Shape::Xsmall => "xsmall",
            Shape::Tiny => "tiny",
        }
    }

    /// (vocab, hidden, layers, heads, intermediate)
    fn dims(self) -> (i64, i64, i64, i64, i64) {
        match self {
            Shape::Base => (128100, 768, 12, 12, 3072),
            Shape::Small => (128100, 768, 6, 12, 3072),
            Shape::Xsmall => (128100, 384, 12, 6, 1536),
            Shape::Tiny => (1001, 32, 2, 4, 64),
        }
    }

    /// The DeBERTa-v3 config of this shape (relative attention with 256 log buckets, shared
    /// position keys, c2p and p2c, layer-normalised relative embeddings, dropout 0.1), with a
    /// two-label classification head.
    pub fn config(self) -> DebertaConfig {
        let (vocab, hidden, layers, heads, inter) = self.dims();
        let json = serde_json::json!({
            "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": inter, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 512, "type_vocab_size": 0, "initializer_range": 0.02,
            "layer_norm_eps": 1e-7, "relative_attention": true, "max_relative_positions": -1,
            "position_buckets": 256, "norm_rel_ebd": "layer_norm", "share_att_key": true,
            "pos_att_type": ["p2c", "c2p"], "position_biased_input": false, "pad_token_id": 0,
            "pooler_dropout": 0.0, "pooler_hidden_act": "gelu", "num_labels": 2,
        });
        serde_json::from_value(json).expect("the built-in shapes are valid configs")
    }
}

impl FromStr for Shape {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Shape::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("--model-config {s:?}: expected one of {}", Shape::ALL.map(|m| m.as_str()).join(", ")))
    }
}

crate::listed::listed_enum! {
    /// What trains, and how its ranks are set up for timing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Variant {
        Full,
        /// LoRA at rank r.
        Lora,
        /// AdaLoRA: r_init = 1.5 r, target r, masking at every step (t_init = t_final = 0, dT = 1).
        Adalora,
        /// IncreLoRA: from r/2 to an average of r, growing every step after the warm-up.
        Increlora,
        /// TriAdaptLoRA started at rank r with a budget of r (no growth): the same average rank as LoRA.
        Triadapt,
        /// TriAdaptLoRA from r/2 to an average of r, growing every step of the timed window.
        TriadaptGrow,
    }
}

impl Variant {
    /// The method the variant trains.
    pub fn method(self) -> MethodName {
        match self {
            Variant::Full => MethodName::Full,
            Variant::Lora => MethodName::Lora,
            Variant::Adalora => MethodName::Adalora,
            Variant::Increlora => MethodName::Increlora,
            Variant::Triadapt | Variant::TriadaptGrow => MethodName::Triadapt,
        }
    }

    /// The method's name; `triadapt-grow` for the growing TriAdaptLoRA variant.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::TriadaptGrow => "triadapt-grow",
            other => other.method().as_str(),
        }
    }
}

impl FromStr for Variant {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Variant::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("--method {s:?}: expected one of {}", Variant::ALL.map(|m| m.as_str()).join(", ")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    /// bf16 autocast (CUDA only), as `torch.autocast("cuda", dtype=torch.bfloat16)`.
    Bf16,
}

impl FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => bail!("--precision {other:?}: expected fp32 or bf16"),
        }
    }
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// One benchmark configuration.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub shape: Shape,
    /// A DeBERTa config.json to bench instead of `shape` (random weights, two labels).
    pub config_file: Option<std::path::PathBuf>,
    pub variant: Variant,
    pub batch: i64,
    pub seq: i64,
    /// Untimed steps before the timed ones.
    pub warmup: i64,
    /// Timed steps.
    pub steps: i64,
    pub device: Device,
    pub precision: Precision,
    /// The average rank every adapter method is compared at.
    pub rank: i64,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub orth_reg_weight: f64,
    pub lr: f64,
    pub seed: i64,
    /// Time the phases of each timed step (forward, backward, optimizer, controller) with a
    /// replica of `Trainer::step` instead of calling it.
    pub breakdown: bool,
    /// The AdamW arithmetic (`torch`, or `legacy_hf` as the paper's experiments run).
    pub adamw: AdamWVariant,
    /// Also count the ops of each phase of a step ([`count_ops`]), on a second trainer.
    pub ops: bool,
    /// With `ops`: print each phase's counted op names to stderr (checking the rules file).
    pub ops_names: bool,
}

impl BenchSpec {
    pub fn new(shape: Shape, variant: Variant) -> Self {
        BenchSpec {
            shape,
            config_file: None,
            variant,
            batch: 8,
            seq: 128,
            warmup: 2,
            steps: 8,
            device: Device::Cpu,
            precision: Precision::Fp32,
            rank: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            orth_reg_weight: 0.1,
            lr: 1e-3,
            seed: 1,
            breakdown: false,
            adamw: AdamWVariant::Torch,
            ops: false,
            ops_names: false,
        }
    }

    pub fn total_steps(&self) -> i64 {
        self.warmup + self.steps
    }

    /// The model config: `config_file`'s (with a two-label head), else the shape's.
    pub fn model_config(&self) -> Result<DebertaConfig> {
        let Some(path) = &self.config_file else { return Ok(self.shape.config()) };
        let mut config = DebertaConfig::from_file(path)?;
        (config.num_labels, config.id2label) = (Some(2), None);
        config.validate().map_err(|e| anyhow::anyhow!("--model-config {}: {e}", path.display()))?;
        Ok(config)
    }

    /// The shape's name, or the config file's path.
    pub fn model_config_name(&self) -> String {
        match &self.config_file {
            Some(path) => path.display().to_string(),
            None => self.shape.as_str().to_string(),
        }
    }

    /// The method block of this variant (all six matrices of every layer adapted).
    pub fn method_config(&self) -> MethodConfig {
        let r = self.rank;
        let mut m = MethodConfig {
            name: self.variant.method(),
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            orth_reg_weight: self.orth_reg_weight,
            lr_policy: LrPolicy::Restart,
            ..Default::default()
        };
        match self.variant {
            Variant::Full => {}
            Variant::Lora => m.lora.rank = r,
            Variant::Adalora => {
                m.adalora.init_rank = (r * 3 / 2).max(r);
                m.adalora.target_rank = r;
                (m.adalora.tinit, m.adalora.tfinal, m.adalora.delta_t) = (0, 0, 1);
            }
            Variant::Increlora => {
                m.increlora.init_rank = (r / 2).max(1);
                m.increlora.target_rank = r;
                m.increlora.init_warmup = self.warmup;
                m.increlora.incre_interval = 1;
            }
            Variant::Triadapt => {
                (m.triadapt.init_rank, m.triadapt.ref_rank) = (r, r);
                m.triadapt.warmup_steps = 0;
            }
            Variant::TriadaptGrow => {
                (m.triadapt.init_rank, m.triadapt.ref_rank) = ((r / 2).max(1), r);
                // Allocation at every step after the untimed warm-up: growth happens in the
                // timed window, a few matrices at a time (linear threshold).
                m.triadapt.warmup_steps = self.warmup;
                m.triadapt.interval = 1;
                m.triadapt.growth_step = Some((r / 4).max(1));
            }
        }
        m
    }
}

impl BenchSpec {
    /// The method block the op count runs: [`BenchSpec::method_config`] with the controller
    /// allocating (growing, masking) every second step instead of every step, so that the
    /// counted window has both ordinary and allocation steps, ordinary ones after growth too.
    pub fn counting_method_config(&self) -> MethodConfig {
        let mut m = self.method_config();
        match self.variant {
            Variant::Adalora => m.adalora.delta_t = 2,
            Variant::Increlora => m.increlora.incre_interval = 2,
            Variant::Triadapt | Variant::TriadaptGrow => m.triadapt.interval = 2,
            Variant::Full | Variant::Lora => {}
        }
        m
    }
}

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
    /// Matmul FLOPs of one training step by [`model_flops`] at the mean average rank (AdaLoRA:
    /// at r_init, the rank it computes with).
    pub model_gflop_per_step: f64,
    /// model_gflop_per_step / median step time.
    pub achieved_gflops: f64,
    /// With `breakdown`: median milliseconds of the forward pass (with loss and regularisation),
    /// the backward pass, and the optimizer (zero_grad, clipping, AdamW).
    pub forward_ms: Option<f64>,
    pub backward_ms: Option<f64>,
    pub optimizer_ms: Option<f64>,
    /// With `ops`: ATen ops that launch work in an ordinary step ([`count_ops`]).
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

/// Per-call times of the wrapped controller's `after_step`.
#[derive(Debug, Default, Clone)]
struct CallTimes(Arc<Mutex<Vec<Duration>>>);

/// A rank controller that times the `after_step` of the one it wraps (synchronising CUDA first
/// and last, so that the time is the controller's own).
#[derive(Debug)]
struct TimedController {
    inner: Box<dyn RankController>,
    times: CallTimes,
    device: Device,
    /// Time of this step's `before_step`, added to its `after_step`: one entry per step.
    before: Duration,
}

impl RankController for TimedController {
    fn after_step(&mut self, step: i64, opt: &mut crate::optim::AdamW) -> Result<()> {
        sync(self.device);
        let t0 = Instant::now();
        let r = self.inner.after_step(step, opt);
        sync(self.device);
        let took = t0.elapsed() + std::mem::take(&mut self.before);
        self.times.0.lock().expect("timer lock").push(took);
        r
    }
    fn before_step(&mut self, step: i64) -> Result<()> {
        sync(self.device);
        let t0 = Instant::now();
        let r = self.inner.before_step(step);
        sync(self.device);
        self.before += t0.elapsed();
        r
    }
    fn grown_weight_decay(&self) -> Option<f64> {
        self.inner.grown_weight_decay()
    }
    fn adapters(&self) -> Vec<(String, crate::peft::DynAdapter)> {
        self.inner.adapters()
    }
    fn regularization(&self) -> Option<Tensor> {
        self.inner.regularization()
    }
    fn ranks(&self) -> Vec<(String, i64)> {
        self.inner.ranks()
    }
    fn budget(&self) -> Option<i64> {
        self.inner.budget()
    }
    fn named_params(&self) -> Vec<(String, Tensor)> {
        self.inner.named_params()
    }
    fn trainable_count(&self) -> i64 {
        self.inner.trainable_count()
    }
    fn reported_param_count(&self) -> i64 {
        self.inner.reported_param_count()
    }
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.inner.state_tensors()
    }
    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        self.inner.load_state(state)
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// (VmRSS, VmHWM) of this process in KiB; zeros where /proc is not available.
pub fn process_memory_kb() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time of this process so far (user + system, all threads, including threads that have
/// already exited, such as the optimizer kernel's workers), from getrusage(RUSAGE_SELF).
pub fn process_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

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

/// The number of relative-position buckets a sequence of `len` tokens reaches: 2m + 1 where m is
/// the bucketed position of distance len - 1, at most 2 * att_span.
pub fn relative_rows_used(c: &DebertaConfig, len: i64) -> i64 {
    let span = c.att_span();
    let rel = crate::model::deberta::relative_positions(len, c.position_buckets, c.max_relative_positions(), Device::Cpu);
    let m = rel.abs().max().int64_value(&[]).min(span);
    (2 * m + 1).min(2 * span)
}

/// Matmul FLOPs of one training step (2 per multiply-add), the "useful work" convention of MFU:
/// the six linears, attention (QK, PV, c2p, p2c over the 2L-1 relative buckets a length-L batch
/// reaches), the position projections of those buckets, the adapters (at `avg_rank`; for
/// TriAdaptLoRA also the product C A), the pooler. Forward counts once; backward twice for
/// everything that trains or carries a gradient to something that trains, once (input gradient
/// only) for frozen weights; so full fine-tuning is 3x the forward and adapter methods about 2x.
pub fn model_flops(c: &DebertaConfig, variant: Variant, batch: i64, seq: i64, avg_rank: f64) -> f64 {
    let (b, l, h, i, n) = (batch as f64, seq as f64, c.hidden_size as f64, c.intermediate_size as f64, c.num_hidden_layers as f64);
    let tokens = b * l;
    let p = relative_rows_used(c, seq) as f64;
    let weight_passes = if variant == Variant::Full { 3.0 } else { 2.0 };
    let linears = 2.0 * tokens * (4.0 * h * h + 2.0 * h * i);
    let pos_proj = 2.0 * 2.0 * p * h * h;
    let attention = 2.0 * 2.0 * b * l * l * h + 2.0 * 2.0 * b * l * p * h;
    let adapters = if variant == Variant::Full {
        0.0
    } else {
        let r = avg_rank;
        // TriAdaptLoRA folds its triangles into the down projection once per step: C A.
        let triangles = matches!(variant, Variant::Triadapt | Variant::TriadaptGrow);
        // (d_in, d_out) of the six matrices; query and key also project the relative rows.
        let shapes = [(h, h, tokens + p), (h, h, tokens + p), (h, h, tokens), (h, h, tokens), (h, i, tokens), (i, h, tokens)];
        shapes.iter().map(|&(din, dout, rows)| rows * 2.0 * r * (din + dout) + if triangles { 2.0 * r * r * din } else { 0.0 }).sum::<f64>()
    };
    let per_layer = weight_passes * (linears + pos_proj) + 3.0 * (attention + adapters);
    let pooler = 3.0 * 2.0 * b * h * h;
    n * per_layer + pooler
}

/// The fp32 matrix-product rate of this libtorch: GFLOP/s of the fastest of `reps` products of
/// two n x n matrices, after two untimed ones (the peak: on a shared machine the median moves with
/// the neighbours' load).
pub fn matmul_gflops(n: i64, reps: usize, device: Device) -> f64 {
    let a = Tensor::randn([n, n], (Kind::Float, device));
    let b = Tensor::randn([n, n], (Kind::Float, device));
    let mut times = Vec::new();
    for i in 0..reps + 2 {
        sync(device);
        let t0 = Instant::now();
        let _c = a.matmul(&b);
        sync(device);
        if i >= 2 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) / fastest / 1e9
}

/// A random batch on `device`: ids in [4, vocab), full attention, two labels.
fn random_batch(c: &DebertaConfig, batch: i64, seq: i64, device: Device) -> Batch {
    Batch {
        input_ids: Tensor::randint_low(4, c.vocab_size, [batch, seq], (Kind::Int64, device)),
        attention_mask: Tensor::ones([batch, seq], (Kind::Int64, device)),
        token_type_ids: Tensor::zeros([batch, seq], (Kind::Int64, device)),
        labels: Tensor::randint(c.num_labels(), [batch], (Kind::Int64, device)),
    }
}

fn average_rank(ranks: &[(String, i64)]) -> f64 {
    if ranks.is_empty() {
        return 0.0;
    }
    ranks.iter().map(|(_, r)| *r as f64).sum::<f64>() / ranks.len() as f64
}

/// `Trainer::step` phase by phase, with the time of each: (forward, backward, optimizer) in
/// seconds; the controller is timed by its wrapper.
fn phased_step(t: &mut Trainer, batch: &Batch, step: i64, device: Device) -> Result<(f64, [f64; 3])> {
    let mut marks = [Instant::now(); 4];
    let (task, loss) = t.forward_loss(batch, step);
    let loss_value = crate::device::read_f64(&task);
    if !loss_value.is_finite() {
        bail!("the loss became {loss_value} at step {step}");
    }
    sync(device);
    marks[1] = Instant::now();
    t.backward(&loss);
    sync(device);
    marks[2] = Instant::now();
    t.optimizer_step(step)?;
    sync(device);
    marks[3] = Instant::now();
    t.after_step(step)?;
    let d = |i: usize| (marks[i + 1] - marks[i]).as_secs_f64();
    Ok((loss_value, [d(0), d(1), d(2)]))
}

fn adamw_name(v: AdamWVariant) -> &'static str {
    match v {
        AdamWVariant::Torch => "torch",
        AdamWVariant::LegacyHf => "legacy_hf",
    }
}

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
    let (task, loss) = crate::precision::autocast(device, t.bf16, || {
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
        crate::optim::clip_grad_norm(&t.trainable(), t.optim.max_grad_norm);
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
    let mut trainer = Trainer::new(attached, &mcfg, TrainerConfig { optim, total_steps: total, seed: spec.seed })?;
    trainer.bf16 = spec.precision == Precision::Bf16;
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
    let times = CallTimes::default();
    let optim = OptimConfig { lr: spec.lr, warmup_steps: 0, adamw: spec.adamw, ..Default::default() };
    let timed = times.clone();
    let cfg = TrainerConfig { optim, total_steps: total, seed: spec.seed };
    let mut trainer = Trainer::with_controller(attached, &mcfg, cfg, |inner| {
        Box::new(TimedController { inner, times: timed, device, before: Duration::ZERO })
    })?;
    trainer.bf16 = spec.precision == Precision::Bf16;
    let batch = random_batch(&config, spec.batch, spec.seq, device);
    let n_adapted = trainer.adapters().len();

    let (mut step_times, mut ranks_seen, mut phases) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rank_start, mut loss, mut cpu_start) = (0.0, f64::NAN, None);
    let mut controller_timed = 0;
    for step in 0..total {
        if step == spec.warmup {
            cpu_start = process_cpu_seconds();
            rank_start = average_rank(&trainer.controller.ranks());
            controller_timed = times.0.lock().expect("timer lock").len();
        }
        sync(device);
        let t0 = Instant::now();
        if spec.breakdown && step >= spec.warmup {
            let (l, p) = phased_step(&mut trainer, &batch, step, device)?;
            loss = l;
            phases.push(p);
        } else {
            loss = trainer.step(&batch, step)?.loss_value();
        }
        sync(device);
        let dt = t0.elapsed().as_secs_f64();
        if step >= spec.warmup {
            step_times.push(dt);
            ranks_seen.push(average_rank(&trainer.controller.ranks()));
        }
    }
    let cpu = cpu_start.zip(process_cpu_seconds()).map(|(a, b)| (b - a) / spec.steps as f64 * 1e3);
    let (_, hwm) = process_memory_kb();
    let ctl: Vec<f64> = times.0.lock().expect("timer lock")[controller_timed..].iter().map(|d| d.as_secs_f64()).collect();
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

    #[test]
    fn a_batch_of_128_tokens_reaches_255_relative_rows() {
        let c = Shape::Base.config();
        assert_eq!(relative_rows_used(&c, 128), 255);
        // Past position_buckets / 2 the log buckets compress: never more than 2 * 256 rows.
        assert!(relative_rows_used(&c, 512) <= 512);
    }

    /// Training FLOPs against the 6 N T rule (N = the 12 layers' linear weights, 7.08 M each):
    /// full fine-tuning of the base shape at batch 8 x 128 is that plus attention and the
    /// relative-position projections (about 12 % more by hand); TriAdaptLoRA costs LoRA's plus
    /// the r x r x d_in product C A of each of the 72 adapters, three times (forward, backward).
    #[test]
    fn model_flops_agree_with_the_6nt_rule_and_the_triangle_product() {
        let c = Shape::Base.config();
        let n_weights = 12.0 * (4.0 * 768.0 * 768.0 + 2.0 * 768.0 * 3072.0);
        let tokens = 8.0 * 128.0;
        let full = model_flops(&c, Variant::Full, 8, 128, 0.0) / (6.0 * n_weights * tokens);
        assert!((1.05..1.2).contains(&full), "full fine-tuning / 6NT = {full}");
        let r = 8.0;
        let extra = model_flops(&c, Variant::Triadapt, 8, 128, r) - model_flops(&c, Variant::Lora, 8, 128, r);
        let by_hand = 12.0 * 3.0 * 2.0 * r * r * (5.0 * 768.0 + 3072.0);
        assert!((extra - by_hand).abs() < 1.0, "{extra} vs {by_hand}");
    }

    /// `Variant::ALL` cannot miss a variant (`listed_enum!`); a method without a variant fails here.
    #[test]
    fn every_method_has_a_variant() {
        for m in MethodName::ALL {
            assert!(Variant::ALL.iter().any(|v| v.method() == m), "bench::Variant has no variant for {m:?}");
        }
    }

    #[test]
    fn shapes_are_valid_and_named() {
        for s in Shape::ALL {
            s.config().validate().unwrap();
            assert_eq!(s.as_str().parse::<Shape>().unwrap(), s);
        }
        for v in Variant::ALL {
            assert_eq!(v.as_str().parse::<Variant>().unwrap(), v);
            let spec = BenchSpec::new(Shape::Tiny, v);
            spec.method_config().validate(2, spec.total_steps()).unwrap();
        }
    }
}
