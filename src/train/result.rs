//! `metrics.json`: a run's outcome, and the status every part of the tool reads it by.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where a run stands, as written in metrics.json and runs.csv (lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Planned by a sweep, not started.
    Pending,
    Running,
    Finished,
    Failed,
    /// Stopped by a signal after saving a checkpoint (`train --resume` continues it).
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Finished => "finished",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// metrics.json: the outcome of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub status: RunStatus,
    pub error: Option<String>,
    pub task: String,
    pub method: String,
    /// The metric that picks the best evaluation (e.g. `accuracy`; `f1` for squad2).
    pub main_metric: String,
    pub best_step: Option<i64>,
    pub best_score: Option<f64>,
    /// Every metric at the best evaluation (MNLI: `m_` and `mm_` prefixes). GLUE metrics are
    /// fractions; squad2's are the official evaluate-v2.0.py's, in percent: `exact`, `f1`,
    /// `HasAns_exact`, `HasAns_f1`, `NoAns_exact`, `NoAns_f1` and the counts `total`,
    /// `HasAns_total`, `NoAns_total`.
    pub best_metrics: BTreeMap<String, f64>,
    pub final_metrics: BTreeMap<String, f64>,
    pub steps: i64,
    pub total_steps: i64,
    /// Everything the optimizer updates (adapters and head).
    pub trainable_params: i64,
    /// The adapters' trainable parameters (the backbone's for full fine-tuning): the GLUE
    /// table's #Params, as the papers count it.
    #[serde(default)]
    pub adapter_params: i64,
    /// The task head's trainable parameters (pooler and classifier), reported apart.
    #[serde(default)]
    pub head_params: i64,
    pub total_rank: i64,
    pub rank_budget: Option<i64>,
    pub wall_seconds: f64,
    pub examples_per_second: f64,
}

/// A run folder's metrics.json, if readable.
pub fn read_result(out: &Path) -> Option<RunResult> {
    std::fs::read_to_string(out.join("metrics.json")).ok().and_then(|t| serde_json::from_str(&t).ok())
}
