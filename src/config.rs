//! The run configuration (an experiment YAML), `--set key=value` overrides, and validation.
//! Every key has a default, so an experiment file names only what differs; unknown keys are
//! errors that name the file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

pub use crate::data::squad::SquadConfig;
use crate::optim::OptimConfig;
use crate::peft::method::{MethodConfig, MethodName};

/// One training run. The same keys are what `--set` and sweep grids take (dotted paths for
/// nested blocks, e.g. `method.triadapt.ref_rank`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// A label for the run (used in folder names and tables).
    pub name: Option<String>,
    /// glue task (mnli, sst2, cola, qqp, qnli, rte, mrpc, stsb) or squad2.
    pub task: String,
    /// The task's data folder (GLUE TSV or hub parquet layout, or SQuAD JSON); default: the
    /// cache (`triadapt fetch`).
    pub data_dir: Option<PathBuf>,
    /// A model directory, or a hub name (`owner/name[@revision]`) in the Hugging Face cache.
    pub model: String,
    pub max_seq_length: usize,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    pub epochs: f64,
    /// Overrides `epochs` when set.
    pub max_steps: Option<i64>,
    /// Evaluate every this many steps (and always at the end).
    pub eval_steps: i64,
    /// Read the losses back, append them to curve.csv and metrics.jsonl and, off a terminal,
    /// print a log line every this many steps (and at least every 60 s, and at evaluations).
    pub log_steps: i64,
    /// Save a checkpoint (everything needed to continue exactly) every this many steps; default
    /// a quarter of an epoch. The end of a run is always saved (as `adapter/`).
    pub save_steps: Option<i64>,
    /// Checkpoints kept (the newest ones).
    pub save_total_limit: usize,
    pub seed: i64,
    /// Dropout before the classifier (HF `cls_dropout`); default: the model's hidden dropout.
    pub cls_dropout: Option<f64>,
    /// Use only the first N training / evaluation examples (quick runs).
    pub max_train_examples: Option<usize>,
    pub max_eval_examples: Option<usize>,
    pub optim: OptimConfig,
    pub method: MethodConfig,
    pub squad: SquadConfig,
    /// cpu, cuda or cuda:N.
    pub device: String,
    /// bf16 autocast (CUDA or CPU) for the forward pass, loss and evaluation.
    pub bf16: bool,
    /// TF32 tensor cores for float32 matrix products on GPUs that have them (off, as in
    /// PyTorch; no effect on the CPU).
    pub tf32: bool,
    /// A PEFT LoRA adapter folder that LoRA starts from (its factors, ranks and
    /// modules_to_save; `train --init-adapter`).
    pub init_adapter: Option<PathBuf>,
    pub log: LogConfig,
}

/// Where a run reports besides its own files (the `log:` block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// TensorBoard event file in the run folder (`tensorboard --logdir results/`).
    pub tensorboard: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { tensorboard: true }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            name: None,
            task: "rte".into(),
            data_dir: None,
            model: "microsoft/deberta-v3-base".into(),
            max_seq_length: 128,
            batch_size: 32,
            eval_batch_size: 64,
            epochs: 3.0,
            max_steps: None,
            eval_steps: 500,
            log_steps: 50,
            save_steps: None,
            save_total_limit: 1,
            seed: 42,
            cls_dropout: None,
            max_train_examples: None,
            max_eval_examples: None,
            optim: OptimConfig::default(),
            method: MethodConfig::default(),
            squad: SquadConfig::default(),
            device: "cpu".into(),
            bf16: false,
            tf32: false,
            init_adapter: None,
            log: LogConfig::default(),
        }
    }
}

/// Parses `value` as a YAML scalar/sequence (so `--set lr=1e-3` is a number, `a=[1,2]` a list).
fn parse_value(raw: &str) -> Value {
    serde_yaml_ng::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()))
}

/// Whether the dotted `key` exists in `tree` (the fully defaulted config).
pub fn key_exists(tree: &Value, key: &str) -> bool {
    let mut node = tree;
    for part in key.split('.') {
        match node {
            Value::Mapping(m) => match m.get(Value::String(part.to_string())) {
                Some(v) => node = v,
                None => return false,
            },
            _ => return false,
        }
    }
    true
}

/// Sets the dotted `key` in `tree`, creating intermediate mappings.
pub fn set_key(tree: &mut Value, key: &str, value: Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let mut node = tree;
    for (i, part) in parts.iter().enumerate() {
        if !matches!(node, Value::Mapping(_)) {
            if node.is_null() {
                *node = Value::Mapping(Default::default());
            } else {
                bail!("key `{key}`: `{}` is not a block", parts[..i].join("."));
            }
        }
        let Value::Mapping(m) = node else { unreachable!() };
        let k = Value::String(part.to_string());
        if i + 1 == parts.len() {
            m.insert(k, value);
            return Ok(());
        }
        node = m.entry(k).or_insert(Value::Null);
    }
    Ok(())
}

/// All dotted keys of the configuration, for `--help` and error messages.
pub fn all_keys() -> Vec<String> {
    fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
        if let Value::Mapping(m) = v {
            for (k, v) in m {
                let k = k.as_str().unwrap_or_default();
                let path = if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
                if matches!(v, Value::Mapping(_)) {
                    walk(v, &path, out);
                } else {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&serde_yaml_ng::to_value(RunConfig::default()).expect("config serialises"), "", &mut out);
    out
}

impl RunConfig {
    /// Reads an experiment YAML and applies `overrides` (`key=value`), in order.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_yaml_str(&text, overrides).with_context(|| format!("{}", path.display()))
    }

    pub fn from_yaml_str(text: &str, overrides: &[String]) -> Result<Self> {
        let mut tree: Value = serde_yaml_ng::from_str(text).map_err(|e| anyhow::anyhow!("YAML error: {e}"))?;
        if tree.is_null() {
            tree = Value::Mapping(Default::default());
        }
        Self::from_value(tree, overrides)
    }

    /// Builds a config from a YAML tree plus overrides; errors name the key at fault.
    pub fn from_value(mut tree: Value, overrides: &[String]) -> Result<Self> {
        let defaults = serde_yaml_ng::to_value(RunConfig::default()).expect("config serialises");
        for o in overrides {
            let (key, raw) = o.split_once('=').with_context(|| format!("--set {o:?}: expected key=value"))?;
            let key = key.trim();
            if !key_exists(&defaults, key) {
                bail!("--set {key}: unknown key (see `triadapt train --help` for the keys)");
            }
            set_key(&mut tree, key, parse_value(raw.trim()))?;
        }
        let cfg: RunConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("key `{path}`: {}", e.into_inner())
        })?;
        Ok(cfg)
    }

    /// The same config with another method selected (`--method`).
    pub fn with_method(mut self, name: Option<MethodName>) -> Self {
        if let Some(n) = name {
            self.method.name = n;
        }
        self
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("config serialises")
    }

    /// Checks settings that do not depend on the data (total steps are checked by the trainer).
    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            bail!("key `batch_size`/`eval_batch_size`: must be at least 1");
        }
        if self.max_seq_length < 8 {
            bail!("key `max_seq_length` = {}: too short for a sequence with special tokens", self.max_seq_length);
        }
        if self.optim.lr <= 0.0 {
            bail!("key `optim.lr` = {}: must be positive", self.optim.lr);
        }
        if self.eval_steps < 1 {
            bail!("key `eval_steps` = {}: must be at least 1", self.eval_steps);
        }
        if self.log_steps < 1 {
            bail!("key `log_steps` = {}: must be at least 1", self.log_steps);
        }
        if self.save_steps.is_some_and(|s| s < 1) {
            bail!("key `save_steps`: must be at least 1");
        }
        if self.save_total_limit < 1 {
            bail!("key `save_total_limit` = {}: keep at least one checkpoint", self.save_total_limit);
        }
        if self.epochs <= 0.0 && self.max_steps.is_none() {
            bail!("key `epochs` = {}: must be positive (or set max_steps)", self.epochs);
        }
        crate::device::parse_device_name(&self.device).map_err(|e| anyhow::anyhow!("key `device`: {e}"))?;
        if self.init_adapter.is_some() && self.method.name != crate::peft::method::MethodName::Lora {
            bail!("key `init_adapter`: a PEFT LoRA adapter starts method lora only (method.name is {})", self.method.name.as_str());
        }
        Ok(())
    }
}

/// Flattens a JSON tree to dotted leaves (lists are leaves).
fn flatten(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(v, &path, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn flat(cfg: &RunConfig) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    flatten(&serde_json::to_value(cfg).expect("config serialises"), "", &mut out);
    out
}

/// The canonical text of a configuration (what a run id hashes, what `train --resume` compares): one `key=value` line per dotted
/// key whose value differs from the built-in default, sorted by key, values as compact JSON
/// (shortest round-trip floats). Configurations that mean the same give the same text, and a
/// key added to the configuration later (with a default) changes no existing id.
pub fn canonical_form(cfg: &RunConfig) -> String {
    let defaults = flat(&RunConfig::default());
    let mut text = String::new();
    for (k, v) in flat(cfg) {
        // How often a run logs does not make it another run.
        if NOT_IDENTITY.contains(&k.as_str()) {
            continue;
        }
        if defaults.get(&k) != Some(&v) {
            text.push_str(&k);
            text.push('=');
            text.push_str(&serde_json::to_string(&v).expect("json"));
            text.push('\n');
        }
    }
    text
}

/// Keys that change how a run reports, not what it computes: left out of its id.
pub const NOT_IDENTITY: [&str; 4] = ["log_steps", "save_steps", "save_total_limit", "log.tensorboard"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_nested_keys_and_parse_yaml_scalars() {
        let cfg = RunConfig::from_yaml_str(
            "task: rte\nmethod:\n  name: lora\n",
            &["method.triadapt.ref_rank=8".into(), "optim.lr=1.2e-3".into(), "method.target_layers=[0, 1]".into()],
        )
        .unwrap();
        assert_eq!(cfg.method.triadapt.ref_rank, 8);
        assert_eq!(cfg.optim.lr, 1.2e-3);
        assert_eq!(cfg.method.target_layers, Some(vec![0, 1]));
        assert_eq!(cfg.method.name, MethodName::Lora);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = RunConfig::from_yaml_str("task: rte\n", &["method.triadapt.refrank=3".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("method.triadapt.refrank"), "{err:#}");
        let err = RunConfig::from_yaml_str("task: rte\nlearning_rate: 3\n", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("learning_rate"), "{err:#}");
        let err = RunConfig::from_yaml_str("method:\n  triadapt:\n    ref_rank: two\n", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("method.triadapt.ref_rank"), "{err:#}");
        let err = RunConfig::from_yaml_str("method:\n  name: dora\n", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("method.name"), "{err:#}");
    }

    #[test]
    fn yaml_errors_give_the_line() {
        let err = RunConfig::from_yaml_str("task: rte\n  bad: [\n", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("line"), "{err:#}");
    }

    #[test]
    fn every_key_round_trips_through_set() {
        let keys = all_keys();
        assert!(keys.contains(&"method.triadapt.warmup_steps".to_string()));
        assert!(keys.contains(&"optim.lr".to_string()));
    }
}
