//! `triadapt train`: one run from an experiment YAML.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::config::RunConfig;
use crate::peft::method::MethodName;

pub struct TrainArgs<'a> {
    pub config: &'a Path,
    pub method: Option<MethodName>,
    pub sets: &'a [String],
    pub out: Option<&'a Path>,
    pub device: Option<&'a str>,
    /// Continue the run folder's last checkpoint.
    pub resume: bool,
    /// Start LoRA from this PEFT LoRA adapter (sets the `init_adapter` key).
    pub init_adapter: Option<&'a Path>,
}

/// The run folder when `--out` is not given: `results/runs/<task>_<method>_seed<seed>`.
pub fn default_out(cfg: &RunConfig) -> PathBuf {
    let name = cfg.name.clone().unwrap_or_else(|| format!("{}_{}_seed{}", cfg.task, cfg.method.name.as_str(), cfg.seed));
    PathBuf::from("results/runs").join(name)
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let mut cfg = RunConfig::load(args.config, args.sets)?.with_method(args.method);
    if let Some(d) = args.device {
        cfg.device = d.to_string();
    }
    if let Some(dir) = args.init_adapter {
        cfg.init_adapter = Some(dir.to_path_buf());
    }
    // Relative paths in a config (model, data_dir) are relative to the working directory.
    let base = PathBuf::from(".");
    let out = args.out.map(Path::to_path_buf).unwrap_or_else(|| default_out(&cfg));
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let opts = crate::train::run::RunOptions { progress, resume: args.resume };
    let result = crate::train::run::run(&cfg, &base, &out, opts)?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    eprintln!("run folder: {}", out.display());
    Ok(())
}
