//! `triadapt train`: one run from an experiment YAML.

use std::path::PathBuf;

use anyhow::Result;

use crate::config::RunConfig;
use crate::peft::method::MethodName;

/// `triadapt train`'s arguments.
// The field docs are --help text: `[...]` and `<...>` in them are literal, not links or HTML.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Experiment YAML (e.g. experiments/rte.yaml).
    #[arg(long)]
    pub config: PathBuf,
    /// Run this method instead of the config's method.name (full, lora, adalora, increlora, triadapt).
    #[arg(long)]
    pub method: Option<String>,
    /// Override a config key, e.g. --set method.triadapt.ref_rank=8 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Run folder (default results/runs/<task>_<method>_seed<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// cpu, cuda or cuda:N (overrides the config).
    #[arg(long)]
    pub device: Option<String>,
    /// Continue the run folder's last checkpoint (same config required; log_steps,
    /// save_steps, save_total_limit and device may change). Without a checkpoint, trains
    /// from step 0; a finished run is left as it is. On SIGTERM, SIGINT or SIGUSR1 a run
    /// saves a checkpoint at the next step and exits with code 75 (a second signal exits at
    /// once).
    #[arg(long)]
    pub resume: bool,
    /// Start LoRA from a PEFT LoRA adapter folder (adapter_config.json +
    /// adapter_model.safetensors or .bin): its modules (which must be the config's
    /// target_modules/target_layers), ranks, factors and modules_to_save (the head). The
    /// first update equals the adapter's; training then scales each module by the run's
    /// lora_alpha / its rank. Same as the config key `init_adapter`.
    #[arg(long, value_name = "DIR")]
    pub init_adapter: Option<PathBuf>,
}

/// The run folder when `--out` is not given: `results/runs/<task>_<method>_seed<seed>`.
pub fn default_out(cfg: &RunConfig) -> PathBuf {
    let name = cfg.name.clone().unwrap_or_else(|| format!("{}_{}_seed{}", cfg.task, cfg.method.name.as_str(), cfg.seed));
    PathBuf::from("results/runs").join(name)
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let method = args.method.as_deref().map(str::parse::<MethodName>).transpose()?;
    let mut cfg = RunConfig::load(&args.config, &args.sets)?.with_method(method);
    if let Some(d) = &args.device {
        cfg.device = d.to_string();
    }
    if let Some(dir) = &args.init_adapter {
        cfg.init_adapter = Some(dir.to_path_buf());
    }
    // Relative paths in a config (model, data_dir) are relative to the working directory.
    let base = PathBuf::from(".");
    let out = args.out.clone().unwrap_or_else(|| default_out(&cfg));
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let opts = crate::train::run::RunOptions { progress, resume: args.resume, stop: None };
    let result = crate::train::run::run(&cfg, &base, &out, opts)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    eprintln!("run folder: {}", out.display());
    Ok(())
}
