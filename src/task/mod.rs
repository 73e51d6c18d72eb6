//! What a run fine-tunes on: one of the eight GLUE tasks or SQuAD 2.0, parsed once from the
//! `task` string of a config or of `triadapt eval --task`. Everything that differs between
//! tasks is asked of a [`Task`] (its head, labels, main metric, where its data is, how it is
//! read, batched and scored), so the rest of the crate never matches on task names.
//!
//! `data.rs` reads a run's train and dev data ([`TaskData`]) and makes its batches; `eval.rs`
//! scores a model on them, or on one split for `triadapt eval`; `predict.rs` holds the
//! eval-mode predictions both are built from.

pub mod data;
pub mod eval;
pub mod predict;

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

pub use data::TaskData;
pub use eval::{EvalSettings, Evaluation, SplitScores, TaskSplit};

use crate::config::RunConfig;
use crate::data::glue::{self, TaskSpec};
use crate::data::{hub, squad};
use crate::model::HeadKind;

/// A task a run trains and evaluates on.
#[derive(Debug, Clone, Copy)]
pub enum Task {
    /// A GLUE task: sentence (pair) classification, or regression for STS-B.
    Glue(&'static TaskSpec),
    /// SQuAD 2.0: extractive question answering with unanswerable questions.
    Squad2,
}

impl Task {
    /// The task called `name` (`rte`, ..., `squad2`); the error lists every name.
    pub fn parse(name: &str) -> Result<Task> {
        if name == squad::TASK {
            return Ok(Task::Squad2);
        }
        match glue::task(name) {
            Some(spec) => Ok(Task::Glue(spec)),
            None => bail!("unknown task {name:?} (expected one of {}, or {})", glue::TASKS.map(|t| t.name).join(", "), squad::TASK),
        }
    }

    /// A config's `task`, with the error naming the key.
    pub fn of_config(cfg: &RunConfig) -> Result<Task> {
        Task::parse(&cfg.task).map_err(|e| anyhow::anyhow!("key `task`: {e}"))
    }

    /// The name configs, run folders and runs.csv use.
    pub fn name(&self) -> &'static str {
        match self {
            Task::Glue(spec) => spec.name,
            Task::Squad2 => squad::TASK,
        }
    }

    /// The paper's name of the task (`sst2` -> `SST-2`).
    pub fn label(&self) -> &'static str {
        match self {
            Task::Glue(spec) => spec.label,
            Task::Squad2 => "SQuAD 2.0",
        }
    }

    /// Whether the task's scores are percentages (SQuAD's official script reports them so)
    /// rather than GLUE's fractions.
    pub fn scores_in_percent(&self) -> bool {
        matches!(self, Task::Squad2)
    }

    /// The head the task trains: a classifier, or start/end logits for SQuAD.
    pub fn head(&self) -> HeadKind {
        match self {
            Task::Glue(_) => HeadKind::Cls,
            Task::Squad2 => HeadKind::Qa,
        }
    }

    /// The head's outputs: classes (1 for STS-B's score); SQuAD's two are start and end.
    pub fn num_labels(&self) -> i64 {
        match self {
            Task::Glue(spec) => spec.num_labels(),
            Task::Squad2 => 2,
        }
    }

    /// The metric that picks the best evaluation.
    pub fn main_metric(&self) -> Result<&'static str> {
        match self {
            Task::Glue(spec) => crate::metrics::main_metric(spec.name),
            Task::Squad2 => Ok(squad::MAIN_METRIC),
        }
    }

    /// Where the task's data is when no folder is given: the Hugging Face cache's GLUE parquet
    /// files, or triadapt's own cache for SQuAD (neither is downloaded here).
    pub fn default_data_dir(&self) -> Result<PathBuf> {
        match self {
            Task::Glue(spec) => hub::resolve_glue_dir(spec.name),
            Task::Squad2 => hub::resolve_squad_dir(),
        }
    }

    /// `triadapt eval`'s truncation length when no run folder gives one: 512, or HF run_qa's 384
    /// for SQuAD.
    pub fn fallback_max_len(&self) -> usize {
        match self {
            Task::Glue(_) => 512,
            Task::Squad2 => 384,
        }
    }
}

/// Where a run's data is: its `data_dir` (a relative one under `base`), else its task's
/// [`Task::default_data_dir`].
pub fn run_data_dir(cfg: &RunConfig, base: &Path) -> Result<PathBuf> {
    match &cfg.data_dir {
        Some(d) if d.is_absolute() => Ok(d.clone()),
        Some(d) => Ok(base.join(d)),
        None => Task::parse(&cfg.task).and_then(|t| t.default_data_dir()).map_err(|e| anyhow::anyhow!("key `data_dir`: {e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_ones_list_every_task() {
        for spec in &glue::TASKS {
            let t = Task::parse(spec.name).unwrap();
            assert_eq!((t.name(), t.head(), t.num_labels()), (spec.name, HeadKind::Cls, spec.num_labels()));
        }
        let sq = Task::parse("squad2").unwrap();
        assert_eq!((sq.name(), sq.head(), sq.num_labels(), sq.main_metric().unwrap()), ("squad2", HeadKind::Qa, 2, "f1"));
        assert_eq!(Task::parse("cola").unwrap().main_metric().unwrap(), "matthews_correlation");
        let err = Task::parse("wnli").unwrap_err().to_string();
        assert_eq!(err, "unknown task \"wnli\" (expected one of cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, or squad2)");
        let cfg = RunConfig { task: "wnli".into(), ..RunConfig::default() };
        assert!(Task::of_config(&cfg).unwrap_err().to_string().starts_with("key `task`: unknown task \"wnli\""));
    }
}
