//! A run's data, read once before the first step: the training rows and the dev sets of its
//! task, tokenized, and the training batches made from them.

use std::path::Path;

use anyhow::{bail, Result};

use super::Task;
use crate::config::RunConfig;
use crate::data::batch::{encode_all, make_batch, Batch, Encoded};
use crate::data::glue::{self, Split, TaskSpec};
use crate::data::squad::{self, QaFeature, SquadExample, SquadSplit};
use crate::data::tokenizer::SpmTokenizer;

/// A task's training and dev data, ready for batching.
pub enum TaskData {
    Glue {
        task: &'static TaskSpec,
        train: Vec<Encoded>,
        /// (split name, examples): `validation`, or `m`/`mm` for MNLI.
        dev: Vec<(String, Vec<Encoded>)>,
    },
    /// SQuAD 2.0: training windows, and the dev questions with their windows.
    Squad { train: Vec<QaFeature>, dev_examples: Vec<SquadExample>, dev: Vec<QaFeature> },
}

impl TaskData {
    /// Training rows (examples; SQuAD: windows).
    pub fn train_len(&self) -> usize {
        match self {
            TaskData::Glue { train, .. } => train.len(),
            TaskData::Squad { train, .. } => train.len(),
        }
    }

    /// The padded training batch of the rows at `indices`.
    pub fn train_batch(&self, indices: &[usize], pad_id: i64, device: tch::Device) -> Batch {
        match self {
            TaskData::Glue { train, .. } => make_batch(train, indices, pad_id, device),
            TaskData::Squad { train, .. } => squad::make_batch(train, indices, pad_id, device),
        }
    }
}

impl Task {
    /// Reads and tokenizes the task's train and dev data from `data`, cut to the config's
    /// `max_train_examples`/`max_eval_examples`; an empty split is an error naming its file.
    pub fn load(&self, cfg: &RunConfig, data: &Path, tokenizer: &SpmTokenizer) -> Result<TaskData> {
        match *self {
            Task::Glue(task) => load_glue(cfg, task, data, tokenizer),
            Task::Squad2 => load_squad(cfg, data, tokenizer),
        }
    }
}

/// How a dev split's metrics are prefixed: `m`/`mm` where the task has two (MNLI), else
/// `validation` (no prefix).
pub fn dev_name(task: &TaskSpec, split: Split) -> &'static str {
    match split {
        Split::Validation if task.dev_splits().len() > 1 => "m",
        Split::ValidationMismatched => "mm",
        _ => "validation",
    }
}

fn load_glue(cfg: &RunConfig, task: &'static TaskSpec, data: &Path, tokenizer: &SpmTokenizer) -> Result<TaskData> {
    let mut train = glue::load_split(data, task, Split::Train)?;
    if let Some(n) = cfg.max_train_examples {
        train.truncate(n);
    }
    if train.is_empty() {
        bail!("{}: the training split is empty", data.display());
    }
    let train = encode_all(tokenizer, &train, cfg.max_seq_length);
    let mut dev = Vec::new();
    for &split in task.dev_splits() {
        let mut ex = glue::load_split(data, task, split)?;
        if let Some(n) = cfg.max_eval_examples {
            ex.truncate(n);
        }
        dev.push((dev_name(task, split).to_string(), encode_all(tokenizer, &ex, cfg.max_seq_length)));
    }
    Ok(TaskData::Glue { task, train, dev })
}

fn load_squad(cfg: &RunConfig, data: &Path, tokenizer: &SpmTokenizer) -> Result<TaskData> {
    let sq = &cfg.squad;
    if sq.doc_stride >= cfg.max_seq_length {
        bail!("key `squad.doc_stride` = {}: must be smaller than max_seq_length ({})", sq.doc_stride, cfg.max_seq_length);
    }
    if sq.n_best == 0 || sq.max_answer_length == 0 {
        bail!("keys `squad.n_best`/`squad.max_answer_length`: must be at least 1");
    }
    let mut train = squad::load_split(data, SquadSplit::Train)?;
    if let Some(n) = cfg.max_train_examples {
        train.truncate(n);
    }
    if train.is_empty() {
        bail!("{}: the training file has no questions", squad::split_path(data, SquadSplit::Train).display());
    }
    let mut train = squad::build_features(tokenizer, &train, cfg.max_seq_length, sq.doc_stride)?;
    for f in &mut train {
        // Offsets only serve decoding; training windows need their labels alone.
        f.offsets = Vec::new();
    }
    let mut dev_examples = squad::load_split(data, SquadSplit::Dev)?;
    if let Some(n) = cfg.max_eval_examples {
        dev_examples.truncate(n);
    }
    if dev_examples.is_empty() {
        bail!("{}: the dev file has no questions", squad::split_path(data, SquadSplit::Dev).display());
    }
    let dev = squad::build_features(tokenizer, &dev_examples, cfg.max_seq_length, sq.doc_stride)?;
    Ok(TaskData::Squad { train, dev_examples, dev })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_splits_are_named_as_their_metric_prefixes() {
        let mnli = glue::task("mnli").unwrap();
        let names: Vec<&str> = mnli.dev_splits().iter().map(|&s| dev_name(mnli, s)).collect();
        assert_eq!(names, ["m", "mm"]);
        assert_eq!(dev_name(glue::task("rte").unwrap(), Split::Validation), "validation");
    }
}
