//! `triadapt bench`: training-step timings on random weights of a real DeBERTa-v3 shape.

use anyhow::Result;

use crate::bench::{self, BenchResult, BenchSpec, Precision, Shape, Variant};

/// `triadapt bench`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// base (deberta-v3-base: 12 layers, hidden 768), small (deberta-v3-small: 6 layers, hidden
    /// 768), xsmall (deberta-v3-xsmall: 12 layers, hidden 384), tiny (the test fixture), or the
    /// path of any DeBERTa config.json (random weights, a two-label head).
    #[arg(long, default_value = "small")]
    pub model_config: String,
    /// Comma-separated: full, lora, adalora, increlora, triadapt (started at the average rank),
    /// triadapt-grow (from rank/2, growing during the timed steps). One process per method gives
    /// the cleanest peak-memory figure.
    #[arg(long, default_value = "lora", value_delimiter = ',')]
    pub method: Vec<String>,
    #[arg(long, default_value_t = 8)]
    pub batch: i64,
    /// Sequence length (every token attended).
    #[arg(long, default_value_t = 128)]
    pub seq: i64,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: i64,
    /// Timed steps.
    #[arg(long, default_value_t = 8)]
    pub steps: i64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Intra-op threads of LibTorch (default: LibTorch's choice, usually the core count).
    #[arg(long)]
    pub threads: Option<i32>,
    /// fp32, or bf16 (autocast, on CUDA or CPU).
    #[arg(long, default_value = "fp32")]
    pub precision: String,
    /// The average rank of every adapter method (AdaLoRA starts at 1.5x, the growing methods at
    /// half of it).
    #[arg(long, default_value_t = 8)]
    pub rank: i64,
    /// Adapter dropout (the model's own dropout is its config's 0.1).
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    #[arg(long, default_value_t = 1)]
    pub seed: i64,
    /// Also time the phases of each step (forward, backward, optimizer), waiting for the device at
    /// the end of each phase of the training step.
    #[arg(long)]
    pub breakdown: bool,
    /// AdamW's arithmetic: torch (torch.optim.AdamW) or legacy_hf (old HF transformers', which
    /// the paper's experiments run).
    #[arg(long, default_value = "torch", value_parser = ["torch", "legacy_hf"])]
    pub adamw: String,
    /// Also count the ATen ops that launch work per step, by phase (README "Counting kernels"),
    /// with AdamW on its device path; a second trainer runs the counted steps.
    #[arg(long)]
    pub ops: bool,
    /// With --ops: print each phase's counted op names to stderr.
    #[arg(long, requires = "ops")]
    pub ops_names: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Only measure the fp32 matmul rate of this libtorch (2048^3, GFLOP/s of the fastest of 10
    /// products, the peak the achieved rates are compared with), and print it.
    #[arg(long)]
    pub matmul: bool,
}

/// `cpu`, `cuda:N`.
fn print_text(r: &BenchResult) {
    println!(
        "triadapt bench: {} {} (batch {}, seq {}, {} {}, {} threads, {} warm-up + {} timed steps)",
        r.model_config, r.method, r.batch, r.seq, r.device, r.precision, r.threads, r.warmup, r.steps
    );
    println!("  throughput        {:.2} examples/s (mean over the steps {:.2})", r.examples_per_s, r.examples_per_s_mean);
    println!(
        "  median step       {:.1} ms (p25 {:.1}, p75 {:.1}, min {:.1}, max {:.1})",
        r.step_ms_median, r.step_ms_p25, r.step_ms_p75, r.step_ms_min, r.step_ms_max
    );
    if let Some(cpu) = r.cpu_ms_per_step {
        println!("  cpu time          {cpu:.1} ms/step (all threads)");
    }
    println!("  rank controller   {:.3} ms/step (max {:.3})", r.controller_ms_per_step, r.controller_ms_max);
    if let (Some(f), Some(b), Some(o)) = (r.forward_ms, r.backward_ms, r.optimizer_ms) {
        println!("  phases (median)   forward {f:.1} ms, backward {b:.1} ms, optimizer {o:.1} ms");
    }
    println!("  peak memory       {:.0} MiB resident (before the model: {:.0} MiB)", r.peak_rss_mb, r.rss_before_model_mb);
    println!("  compute           {:.1} GFLOP/step, {:.1} GFLOP/s achieved", r.model_gflop_per_step, r.achieved_gflops);
    println!(
        "  adapters          {} matrices, average rank {:.2} -> {:.2} (mean {:.2}), {} trainable parameters",
        r.adapted_matrices, r.avg_rank_start, r.avg_rank_end, r.avg_rank_mean, r.trainable_params
    );
    println!("  final loss        {:.4}", r.final_loss);
    if let (Some(total), Some(p)) = (r.ops_per_step, &r.ops_by_phase) {
        println!(
            "  ops per step      {total} (forward {}, loss {}, backward {}, clipping {}, optimizer {}, zero_grad {}, controller {})",
            p.forward, p.loss, p.backward, p.clipping, p.optimizer, p.zero_grad, p.controller
        );
        if let (Some(all), Some(c)) = (r.ops_allocation_step, p.controller_allocation) {
            println!("  allocation step   {all} ops (controller {c})");
        }
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let Some(t) = args.threads {
        anyhow::ensure!(t >= 1, "--threads {t}: must be at least 1");
        tch::set_num_threads(t);
    }
    let device = crate::device::parse_device(&args.device)?;
    if args.matmul {
        let gflops = bench::matmul_gflops(2048, 10, device);
        let out = serde_json::json!({"matmul_n": 2048, "matmul_gflops": gflops, "threads": tch::get_num_threads(), "device": crate::device::device_name(device)});
        if args.json {
            println!("{out}");
        } else {
            println!(
                "matmul 2048^3 fp32: {gflops:.1} GFLOP/s, fastest of 10 ({} threads, {})",
                tch::get_num_threads(),
                crate::device::device_name(device)
            );
        }
        return Ok(());
    }
    // A built-in shape's name, else a config.json path.
    let (shape, config_file) = match args.model_config.parse::<Shape>() {
        Ok(shape) => (shape, None),
        Err(_) if std::path::Path::new(&args.model_config).is_file() => (Shape::Tiny, Some(std::path::PathBuf::from(&args.model_config))),
        Err(_) => anyhow::bail!(
            "--model-config {:?}: expected one of {} or the path of a DeBERTa config.json",
            args.model_config,
            Shape::ALL.map(|m| m.as_str()).join(", ")
        ),
    };
    let precision: Precision = args.precision.parse()?;
    let variants = args.method.iter().map(|m| m.parse::<Variant>()).collect::<Result<Vec<_>>>()?;
    for variant in variants {
        let spec = BenchSpec {
            batch: args.batch,
            seq: args.seq,
            warmup: args.warmup,
            steps: args.steps,
            device,
            precision,
            rank: args.rank,
            lora_dropout: args.lora_dropout,
            seed: args.seed,
            breakdown: args.breakdown,
            adamw: serde_json::from_value(serde_json::Value::String(args.adamw.clone()))?,
            ops: args.ops,
            ops_names: args.ops_names,
            config_file: config_file.clone(),
            ..BenchSpec::new(shape, variant)
        };
        let r = bench::run(&spec)?;
        if args.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            print_text(&r);
        }
    }
    Ok(())
}
