//! Run ids: the hash of a run's canonical configuration, and the short value texts of tables.

use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

use crate::config::{canonical_form, RunConfig};

/// Hex digits of a run id.
pub const ID_LEN: usize = 12;

/// A run's id: the first 12 hex digits of the SHA-256 of [`canonical_form`].
pub fn run_id(cfg: &RunConfig) -> String {
    let digest = Sha256::digest(canonical_form(cfg).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..ID_LEN].to_string()
}

/// A short text of a YAML value for tables (`2`, `0.001`, `linear`, `[0, 1]`).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => json_text(&serde_json::to_value(other).unwrap_or(serde_json::Value::Null)),
    }
}

pub fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
