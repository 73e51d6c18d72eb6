//! Scoring a model on a task: a run's dev sets at every evaluation (the metrics, the main score
//! that picks the best step, SQuAD's answers for predictions.json), and one split of a task's
//! data for `triadapt eval`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::Device;

use super::data::{dev_name, TaskData};
use super::predict::{gold, predict, score, squad_scores};
use super::Task;
use crate::config::RunConfig;
use crate::data::batch::encode_all;
use crate::data::glue::{self, Split, TaskSpec};
use crate::data::squad::{self, SquadConfig, SquadSplit};
use crate::data::tokenizer::SpmTokenizer;
use crate::model::DebertaModel;

/// What one evaluation gives: every metric, the main score (which picks the best step) and, for
/// SQuAD, the decoded answers by question id.
pub type Evaluation = (BTreeMap<String, f64>, f64, Option<BTreeMap<String, String>>);

impl TaskData {
    /// Evaluates every dev split in batches of `batch_size`; MNLI's metrics get `m_`/`mm_`
    /// prefixes. The main score is the first split's (MNLI: matched); SQuAD's is `f1`.
    pub fn evaluate(
        &self,
        model: &DebertaModel,
        batch_size: usize,
        pad_id: i64,
        squad_cfg: &SquadConfig,
        device: Device,
    ) -> Result<Evaluation> {
        let (task, dev) = match self {
            TaskData::Glue { task, dev, .. } => (*task, dev),
            TaskData::Squad { dev_examples, dev, .. } => {
                let (m, preds) = squad_scores(model, dev_examples, dev, squad_cfg, batch_size, pad_id, device)?;
                let main = *m.get(squad::MAIN_METRIC).context("the SQuAD scores lack f1")?;
                return Ok((m, main, Some(preds.text)));
            }
        };
        let mut all = BTreeMap::new();
        let mut main = None;
        for (name, ex) in dev {
            let preds = predict(model, ex, batch_size, pad_id, device);
            let m = score(task, name, &preds, &gold(ex))?;
            if main.is_none() {
                main = Some(crate::metrics::main_score(task.name, &m)?);
            }
            for (k, v) in m {
                let key = if dev.len() > 1 { format!("{name}_{k}") } else { k };
                all.insert(key, v);
            }
        }
        Ok((all, main.context("the task has no dev split")?, None))
    }
}

/// One split of a task's data, as `triadapt eval --split` names it.
#[derive(Debug, Clone, Copy)]
pub enum TaskSplit {
    Glue(&'static TaskSpec, Split),
    Squad(SquadSplit),
}

/// How `triadapt eval` reads and batches a split: the run folder's settings where it has them,
/// so that its scores come out as in training.
pub struct EvalSettings<'a> {
    pub max_len: usize,
    pub batch_size: usize,
    /// SQuAD's windows and decoding.
    pub squad: &'a SquadConfig,
}

/// A split's scores: the metrics, how many examples (SQuAD: questions) and every prediction
/// (GLUE: class ids or scores; SQuAD: the answer text by question id, "" for no answer).
pub struct SplitScores {
    pub examples: usize,
    pub metrics: BTreeMap<String, f64>,
    pub predictions: serde_json::Value,
}

impl Task {
    /// The split `triadapt eval --split` names: train, validation (or dev), or MNLI's
    /// validation_mismatched.
    pub fn split(&self, name: &str) -> Result<TaskSplit> {
        match *self {
            Task::Glue(spec) => Ok(TaskSplit::Glue(
                spec,
                match name {
                    "train" => Split::Train,
                    "validation" | "validation_matched" | "dev" => Split::Validation,
                    "validation_mismatched" => Split::ValidationMismatched,
                    other => bail!("--split {other:?}: expected train, validation or validation_mismatched"),
                },
            )),
            Task::Squad2 => Ok(TaskSplit::Squad(match name {
                "train" => SquadSplit::Train,
                "validation" | "dev" => SquadSplit::Dev,
                other => bail!("--split {other:?}: SQuAD 2.0 has train and validation (dev)"),
            })),
        }
    }

    /// `triadapt eval`'s data folder: `given` (`--data-dir`), else the run folder's as it
    /// trained (any GLUE run's, since one `data_dir` may hold every GLUE task's folder; a SQuAD
    /// run's for SQuAD), else [`Task::default_data_dir`].
    pub fn eval_data_dir(&self, given: Option<&Path>, run: Option<&RunConfig>) -> Result<PathBuf> {
        match (given, run) {
            (Some(d), _) => Ok(d.to_path_buf()),
            (None, Some(cfg)) if matches!(self, Task::Glue(_)) || cfg.task == self.name() => super::run_data_dir(cfg, Path::new(".")),
            _ => self.default_data_dir().context("--data-dir not given"),
        }
    }
}

impl TaskSplit {
    /// Reads the split from `data` and scores `model` on it: windows and decoding as in
    /// training for SQuAD (where a split without questions is an error).
    pub fn evaluate(
        &self,
        model: &DebertaModel,
        data: &Path,
        tok: &SpmTokenizer,
        settings: &EvalSettings,
        device: Device,
    ) -> Result<SplitScores> {
        match *self {
            TaskSplit::Glue(task, split) => {
                let examples = encode_all(tok, &glue::load_split(data, task, split)?, settings.max_len);
                let preds = predict(model, &examples, settings.batch_size, tok.pad_id(), device);
                let metrics = score(task, dev_name(task, split), &preds, &gold(&examples))?;
                Ok(SplitScores { examples: examples.len(), metrics, predictions: serde_json::to_value(&preds)? })
            }
            TaskSplit::Squad(split) => {
                let examples = squad::load_split(data, split)?;
                if examples.is_empty() {
                    bail!("{}: no questions", squad::split_path(data, split).display());
                }
                let features = squad::build_features(tok, &examples, settings.max_len, settings.squad.doc_stride)?;
                let (metrics, preds) =
                    squad_scores(model, &examples, &features, settings.squad, settings.batch_size, tok.pad_id(), device)?;
                Ok(SplitScores { examples: examples.len(), metrics, predictions: serde_json::to_value(&preds.text)? })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_splits_by_task() {
        let rte = Task::parse("rte").unwrap();
        assert!(matches!(rte.split("dev").unwrap(), TaskSplit::Glue(_, Split::Validation)));
        assert!(matches!(rte.split("validation_mismatched").unwrap(), TaskSplit::Glue(_, Split::ValidationMismatched)));
        assert!(rte.split("test").unwrap_err().to_string().contains("expected train, validation"));
        assert!(matches!(Task::Squad2.split("validation").unwrap(), TaskSplit::Squad(SquadSplit::Dev)));
        assert!(Task::Squad2.split("validation_mismatched").unwrap_err().to_string().contains("SQuAD 2.0 has train"));
    }

    #[test]
    fn eval_reads_a_runs_data_dir_for_its_own_kind_of_task() {
        let given = Path::new("/given");
        let run = |task: &str| RunConfig { task: task.into(), data_dir: Some("/run".into()), ..RunConfig::default() };
        let rte = Task::parse("rte").unwrap();
        assert_eq!(rte.eval_data_dir(Some(given), Some(&run("rte"))).unwrap(), given);
        assert_eq!(rte.eval_data_dir(None, Some(&run("qnli"))).unwrap(), Path::new("/run"));
        assert_eq!(Task::Squad2.eval_data_dir(None, Some(&run("squad2"))).unwrap(), Path::new("/run"));
    }
}
