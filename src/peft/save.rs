//! Saving and loading adapters: `adapter_model.safetensors` (adapter tensors as
//! `<module>.<role>`, plus the trained head or, for full fine-tuning, every weight),
//! `adapter_config.json` (method, its config, the rank pattern, the step) and, for resuming,
//! `optimizer.safetensors` (AdamW moments and birth steps) and the controller's own state.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::method::MethodConfig;
use crate::train::Trainer;

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

fn cpu(t: &Tensor) -> Tensor {
    t.detach().to_device(Device::Cpu).contiguous()
}

/// Writes the adapter folder of a trainer at `step` (everything needed to resume exactly).
pub fn save_adapter(dir: &Path, t: &Trainer, method: &MethodConfig, step: i64, base_model: &Path, task: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut weights: Vec<(String, Tensor)> = t.adapters().iter().flat_map(|(name, a)| {
        let a = a.lock().expect("adapter lock");
        a.params().into_iter().chain(a.buffers()).map(|(role, x)| (format!("{name}.{role}"), cpu(&x))).collect::<Vec<_>>()
    }).collect();
    weights.extend(t.trainable_vars().iter().map(|(n, x)| (n.clone(), cpu(x))));
    Tensor::write_safetensors(&weights, dir.join(ADAPTER_WEIGHTS)).with_context(|| format!("cannot write {}", dir.display()))?;
    let mut state: Vec<(String, Tensor)> = Vec::new();
    for name in t.opt.names() {
        let [m, v, b] = t.opt.state(name).expect("named parameter");
        state.push((format!("{name}.exp_avg"), cpu(m)));
        state.push((format!("{name}.exp_avg_sq"), cpu(v)));
        state.push((format!("{name}.birth"), cpu(b)));
    }
    state.extend(t.controller.state_tensors().into_iter().map(|(n, x)| (format!("controller.{n}"), cpu(&x))));
    Tensor::write_safetensors(&state, dir.join(OPTIMIZER_STATE))?;
    let config = AdapterConfig {
        format: "triadapt-adapter".into(),
        method: method.clone(),
        rank_pattern: t.controller.ranks().into_iter().collect(),
        step,
        total_steps: t.total_steps,
        trainable_params: t.trainable_count(),
        // As the user gave it (a hub name, or a path as written): a run folder copied to
        // another machine still finds its model there (`commands::adapter::resolve_base_model`).
        base_model: base_model.to_path_buf(),
        head: t.model.kind,
        num_labels: t.model.config.num_labels(),
        task: Some(task.to_string()),
    };
    std::fs::write(dir.join(ADAPTER_CONFIG), serde_json::to_string_pretty(&config)?)?;
    Ok(())
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
    let text = std::fs::read_to_string(&cfg_path).with_context(|| format!("{}: not an adapter folder or run folder (no {ADAPTER_CONFIG})", path.display()))?;
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

/// Restores the optimizer moments and birth steps and the controller state saved with the
/// adapter, so that training continues exactly where it stopped. Returns the saved step.
pub fn resume(t: &mut Trainer, dir: &Path) -> Result<i64> {
    let saved = read_adapter(dir)?;
    let dir = if dir.join(ADAPTER_CONFIG).is_file() { dir.to_path_buf() } else { dir.join("adapter") };
    let state: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(OPTIMIZER_STATE))
        .with_context(|| format!("cannot read {}", dir.join(OPTIMIZER_STATE).display()))?
        .into_iter()
        .collect();
    let names: Vec<String> = t.opt.names().map(str::to_string).collect();
    for name in names {
        let get = |k: &str| state.get(&format!("{name}.{k}")).with_context(|| format!("saved optimizer state lacks `{name}.{k}`"));
        t.opt.set_state(&name, get("exp_avg")?, get("exp_avg_sq")?, get("birth")?)?;
    }
    let controller_state: std::collections::HashMap<String, Tensor> = state
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("controller.").map(|k| (k.to_string(), v.shallow_clone())))
        .collect();
    t.controller.load_state(&controller_state)?;
    Ok(saved.config.step)
}
