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
}

fn cpu(t: &Tensor) -> Tensor {
    t.detach().to_device(Device::Cpu).contiguous()
}

/// Writes the adapter folder of a trainer at `step` (everything needed to resume exactly).
pub fn save_adapter(dir: &Path, t: &Trainer, method: &MethodConfig, step: i64) -> Result<()> {
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
    };
    std::fs::write(dir.join(ADAPTER_CONFIG), serde_json::to_string_pretty(&config)?)?;
    Ok(())
}
