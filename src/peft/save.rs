//! The adapter folder format: `adapter_model.safetensors` (adapter tensors as
//! `<module>.<role>`, plus the trained head or, for full fine-tuning, every weight),
//! `adapter_config.json` (method, its config, the rank pattern, the step) and, for resuming,
//! `optimizer.safetensors` (AdamW moments and birth steps) and the controller's own state.
//! Reading and applying live here; writing a trainer's state is `train::checkpoint`'s.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::method::MethodConfig;

pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const OPTIMIZER_STATE: &str = "optimizer.safetensors";

/// adapter_config.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    /// Always "triadapt-adapter" (tells our files from PEFT's).
    pub format: String,
    pub method: MethodConfig,
    /// Final rank of every adapted matrix, by HF module name.
    pub rank_pattern: BTreeMap<String, i64>,
    /// Optimizer steps taken when saved.
    pub step: i64,
    pub total_steps: i64,
    pub trainable_params: i64,
    /// The base model the adapter was trained on, as the config named it: a model directory
    /// (relative to the working directory) or a hub name (merge, export and eval resolve it).
    pub base_model: std::path::PathBuf,
    pub head: crate::model::HeadKind,
    pub num_labels: i64,
    /// The task trained (its class names label a merged checkpoint); absent in older folders.
    #[serde(default)]
    pub task: Option<String>,
}

/// A saved adapter folder, read back.
pub struct SavedAdapter {
    pub config: AdapterConfig,
    pub weights: std::collections::HashMap<String, Tensor>,
}

/// Reads `adapter_config.json` and `adapter_model.safetensors` of an adapter folder (or of a
/// run folder's `adapter/`).
pub fn read_adapter(path: &Path) -> Result<SavedAdapter> {
    let dir = if path.join(ADAPTER_CONFIG).is_file() { path.to_path_buf() } else { path.join("adapter") };
    let cfg_path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&cfg_path)
        .with_context(|| format!("{}: not an adapter folder or run folder (no {ADAPTER_CONFIG})", path.display()))?;
    let config: AdapterConfig = serde_json::from_str(&text).with_context(|| format!("{}: invalid adapter config", cfg_path.display()))?;
    if config.format != "triadapt-adapter" {
        anyhow::bail!("{}: format {:?} is not a triadapt adapter", cfg_path.display(), config.format);
    }
    let weights = Tensor::read_safetensors(dir.join(ADAPTER_WEIGHTS))
        .with_context(|| format!("cannot read {}", dir.join(ADAPTER_WEIGHTS).display()))?
        .into_iter()
        .collect();
    Ok(SavedAdapter { config, weights })
}

/// Puts saved tensors into freshly built adapters (any rank) and into the model's trained
/// variables (the head, or every weight for full fine-tuning). Every expected tensor must be
/// present; errors name the missing one.
pub fn apply_adapter(saved: &SavedAdapter, adapters: &[(String, super::DynAdapter)], vs: &tch::nn::VarStore) -> Result<()> {
    for (module, a) in adapters {
        let mut a = a.lock().expect("adapter lock");
        let roles: Vec<&'static str> = a.params().into_iter().chain(a.buffers()).map(|(r, _)| r).collect();
        for role in roles {
            let key = format!("{module}.{role}");
            let t = saved.weights.get(&key).with_context(|| format!("saved adapter lacks tensor `{key}`"))?;
            a.set_tensor(role, t.shallow_clone()).with_context(|| format!("tensor `{key}`"))?;
        }
    }
    let vars = vs.variables();
    for (name, t) in &saved.weights {
        if let Some(var) = vars.get(name) {
            if var.size() != t.size() {
                anyhow::bail!("saved tensor `{name}` has shape {:?}, the model expects {:?}", t.size(), var.size());
            }
            tch::no_grad(|| var.shallow_clone().copy_(t));
        }
    }
    Ok(())
}
