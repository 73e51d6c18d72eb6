//! Which matrices a method adapts: names of the six per-layer matrices and a layer selection.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::model::linear::LAYER_MATRICES;

/// Short names accepted in `target_modules`, each naming one of the six per-layer matrices.
pub const TARGET_NAMES: [(&str, &str); 6] = [
    ("query_proj", "attention.self.query_proj"),
    ("key_proj", "attention.self.key_proj"),
    ("value_proj", "attention.self.value_proj"),
    ("attention.output.dense", "attention.output.dense"),
    ("intermediate.dense", "intermediate.dense"),
    ("output.dense", "output.dense"),
];

/// The matrices to adapt: module names (default: all six, docs/method.md, "Shared options") and optionally a subset
/// of layers (default: every layer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    #[serde(default = "all_targets")]
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub target_layers: Option<Vec<i64>>,
}

fn all_targets() -> Vec<String> {
    TARGET_NAMES.iter().map(|(s, _)| s.to_string()).collect()
}

impl Default for TargetSpec {
    fn default() -> Self {
        TargetSpec { target_modules: all_targets(), target_layers: None }
    }
}

impl TargetSpec {
    /// Rejects unknown module names and out-of-range layers, naming the key.
    pub fn validate(&self, num_layers: i64) -> Result<()> {
        if self.target_modules.is_empty() {
            bail!("key `target_modules`: empty (name at least one of {:?})", TARGET_NAMES.map(|t| t.0));
        }
        for m in &self.target_modules {
            if !TARGET_NAMES.iter().any(|(s, _)| s == m) {
                bail!("key `target_modules`: unknown module {m:?} (expected some of {:?})", TARGET_NAMES.map(|t| t.0));
            }
        }
        if let Some(layers) = &self.target_layers {
            if let Some(bad) = layers.iter().find(|&&l| l < 0 || l >= num_layers) {
                bail!("key `target_layers`: layer {bad} does not exist (the model has {num_layers})");
            }
        }
        Ok(())
    }

    /// Whether the HF module path (e.g. `deberta.encoder.layer.3.attention.self.query_proj`) is
    /// adapted.
    pub fn matches(&self, name: &str) -> bool {
        let Some((layer, within)) = split_layer_path(name) else { return false };
        if let Some(layers) = &self.target_layers {
            if !layers.contains(&layer) {
                return false;
            }
        }
        self.target_modules
            .iter()
            .filter_map(|m| TARGET_NAMES.iter().find(|(s, _)| s == m).map(|(_, full)| *full))
            .any(|full| full == within)
    }
}

/// `deberta.encoder.layer.<i>.<within>` -> (i, within), for the six matrices only.
pub fn split_layer_path(name: &str) -> Option<(i64, &str)> {
    let rest = name.split_once("encoder.layer.")?.1;
    let (idx, within) = rest.split_once('.')?;
    let layer = idx.parse().ok()?;
    LAYER_MATRICES.contains(&within).then_some((layer, within))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_dense_does_not_match_attention_output_dense() {
        let spec = TargetSpec { target_modules: vec!["output.dense".into()], target_layers: None };
        assert!(spec.matches("deberta.encoder.layer.0.output.dense"));
        assert!(!spec.matches("deberta.encoder.layer.0.attention.output.dense"));
        assert!(!spec.matches("pooler.dense"));
    }

    #[test]
    fn layer_selection_and_validation() {
        let spec = TargetSpec { target_modules: vec!["query_proj".into()], target_layers: Some(vec![1]) };
        assert!(spec.matches("deberta.encoder.layer.1.attention.self.query_proj"));
        assert!(!spec.matches("deberta.encoder.layer.0.attention.self.query_proj"));
        assert!(spec.validate(2).is_ok());
        assert!(format!("{}", spec.validate(1).unwrap_err()).contains("target_layers"));
        let bad = TargetSpec { target_modules: vec!["q_proj".into()], target_layers: None };
        assert!(format!("{}", bad.validate(2).unwrap_err()).contains("target_modules"));
    }
}
