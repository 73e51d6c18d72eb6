//! `triadapt eval`: the task metrics of a run folder (its adapter on its base model) or of an
//! HF model directory with a trained head, on a split of a GLUE task, as JSON.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tch::Device;

use crate::config::RunConfig;
use crate::data::batch::encode_all;
use crate::data::glue::{self, Split};
use crate::data::tokenizer::SpmTokenizer;
use crate::model::{HeadKind, ModelDir, PlainLinearFactory};
use crate::train::eval::{gold, predict, score, Predictions};

pub struct EvalArgs<'a> {
    pub model: &'a Path,
    pub task: &'a str,
    pub split: &'a str,
    pub data_dir: Option<&'a Path>,
    pub max_len: Option<usize>,
    pub batch_size: usize,
    pub device: Device,
    pub with_predictions: bool,
}

#[derive(Serialize)]
pub struct EvalReport {
    pub task: String,
    pub split: String,
    pub examples: usize,
    pub metrics: std::collections::BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<Predictions>,
}

fn split_of(name: &str) -> Result<Split> {
    Ok(match name {
        "train" => Split::Train,
        "validation" | "validation_matched" | "dev" => Split::Validation,
        "validation_mismatched" => Split::ValidationMismatched,
        other => bail!("--split {other:?}: expected train, validation or validation_mismatched"),
    })
}

pub fn run(args: &EvalArgs) -> Result<EvalReport> {
    let task = glue::task(args.task)?;
    let split = split_of(args.split)?;
    let is_adapter = args.model.join("adapter").is_dir() || args.model.join(crate::peft::save::ADAPTER_CONFIG).is_file();
    // A run folder also tells where its data were and how long its sequences were.
    let run_cfg = match args.model.join("config.yaml") {
        p if p.is_file() => Some(RunConfig::load(&p, &[])?),
        _ => None,
    };
    let data: PathBuf = match (args.data_dir, &run_cfg) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(cfg)) => crate::train::run::resolve_data(cfg, Path::new("."))?,
        (None, None) => crate::data::fetch::resolve_glue_dir(task.name).context("--data-dir not given")?,
    };
    let max_len = args.max_len.or(run_cfg.as_ref().map(|c| c.max_seq_length)).unwrap_or(512);
    let (model, spm, _keep) = if is_adapter {
        let a = super::adapter::load_adapted(args.model, args.device)?;
        if a.saved.config.num_labels != task.num_labels() {
            bail!("{}: the adapter's head has {} labels, task {} has {}", args.model.display(), a.saved.config.num_labels, task.name, task.num_labels());
        }
        (a.model, a.model_dir.spm_path(), Some(a.vs))
    } else {
        let dir = ModelDir::open(args.model)?;
        if dir.config.num_labels() != task.num_labels() {
            bail!("{}: config.json has {} labels, task {} has {}", args.model.display(), dir.config.num_labels(), task.name, task.num_labels());
        }
        let (vs, model, report) = dir.load(HeadKind::Cls, &PlainLinearFactory, args.device)?;
        if !report.initialised.is_empty() {
            bail!("{}: the checkpoint has no classification head ({} missing): evaluate a fine-tuned model or a run folder", args.model.display(), report.initialised.join(", "));
        }
        (model, dir.spm_path(), Some(vs))
    };
    let tok = SpmTokenizer::from_file(&spm)?;
    let examples = encode_all(&tok, &glue::load_split(&data, task, split)?, max_len);
    let preds = predict(&model, &examples, args.batch_size, tok.pad_id(), args.device);
    let name = if split == Split::ValidationMismatched { "mm" } else { "validation" };
    let metrics = score(task, name, &preds, &gold(&examples))?;
    Ok(EvalReport { task: task.name.into(), split: args.split.into(), examples: examples.len(), metrics, predictions: args.with_predictions.then_some(preds) })
}
