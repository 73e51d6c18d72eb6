//! `triadapt eval`: the task metrics of a run folder (its adapter on its base model) or of an
//! HF model directory with a trained head, on a split of a GLUE task or of SQuAD 2.0, as JSON.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Serialize;
use tch::Device;

use crate::config::{RunConfig, SquadConfig};
use crate::data::tokenizer::SpmTokenizer;
use crate::model::DebertaModel;
use crate::model::{HeadKind, ModelDir, PlainLinearFactory};
use crate::task::{EvalSettings, Task};

/// `triadapt eval`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct EvalArgs {
    /// A run folder, an adapter folder, or an HF model directory with a trained head
    /// (classification for GLUE, question answering for squad2).
    #[arg(long)]
    pub model: PathBuf,
    /// GLUE task (mnli, sst2, cola, qqp, qnli, rte, mrpc, stsb) or squad2 (SQuAD 2.0: the
    /// official exact/F1 scores; windows and decoding take the run's squad.* settings).
    #[arg(long)]
    pub task: String,
    /// train, validation, or validation_mismatched (MNLI).
    #[arg(long, default_value = "validation")]
    pub split: String,
    /// The task's data folder (default: the run's data_dir, else the cache).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Truncation length (default: the run's max_seq_length, else 512; squad2: 384).
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Evaluation batch size (default: the run's eval_batch_size, so that a run folder's
    /// scores come out as in training; else 64).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Also print every prediction (class ids or scores; squad2: answer text by question id).
    #[arg(long)]
    pub predictions: bool,
    // A run folder's best evaluation (`best/`) or last step (`adapter/`), and `--base-model`.
    #[command(flatten)]
    pub from: super::adapter::AdapterArgs,
}

#[derive(Serialize)]
pub struct EvalReport {
    pub task: String,
    pub split: String,
    pub examples: usize,
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// GLUE: class ids or scores; SQuAD: the answer text by question id ("" for no answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predictions: Option<serde_json::Value>,
}

/// The model to evaluate with the head `head`, and what it needs alive: the run folder's
/// config (if `model` is one), the tokenizer model path and the variable store.
struct Loaded {
    run_cfg: Option<RunConfig>,
    model: DebertaModel,
    spm: PathBuf,
    _vs: tch::nn::VarStore,
}

fn load(path: &Path, which: crate::train::checkpoint::Which, base_model: Option<&Path>, task: Task, device: Device) -> Result<Loaded> {
    let (head, num_labels) = (task.head(), task.num_labels());
    let task = task.name();
    let is_adapter = super::adapter::is_adapter_or_run(path);
    // A run folder also tells where its data were and how long its sequences were.
    let run_cfg = match path.join("config.yaml") {
        p if p.is_file() => Some(RunConfig::load(&p, &[])?),
        _ => None,
    };
    if is_adapter {
        let a = super::adapter::load_adapted(path, which, base_model, device)?;
        if a.head != head {
            bail!("{}: the adapter was trained with a {:?} head, task {task} needs {head:?}", path.display(), a.head);
        }
        if head == HeadKind::Cls && a.num_labels != num_labels {
            bail!("{}: the adapter's head has {} labels, task {task} has {num_labels}", path.display(), a.num_labels);
        }
        return Ok(Loaded { run_cfg, model: a.model, spm: a.model_dir.spm_path(), _vs: a.vs });
    }
    let mut dir = ModelDir::open(&super::adapter::resolve_base_model(path)?)?;
    if head == HeadKind::Cls && dir.config.num_labels() != num_labels {
        bail!("{}: config.json has {} labels, task {task} has {num_labels}", path.display(), dir.config.num_labels());
    }
    if head == HeadKind::Qa {
        dir.config.num_labels = Some(2);
    }
    let (vs, model, report) = dir.load(head, &PlainLinearFactory, device)?;
    if !report.initialised.is_empty() {
        let what = if head == HeadKind::Qa { "question-answering" } else { "classification" };
        bail!(
            "{}: the checkpoint has no {what} head ({} missing): evaluate a fine-tuned model or a run folder",
            path.display(),
            report.initialised.join(", ")
        );
    }
    Ok(Loaded { run_cfg, model, spm: dir.spm_path(), _vs: vs })
}

/// Batches as in training: padding and product shapes then match the run's own evaluation.
fn batch_size(args: &EvalArgs, l: &Loaded) -> usize {
    args.batch_size.or(l.run_cfg.as_ref().map(|c| c.eval_batch_size)).unwrap_or(64)
}

/// Scores the model on the task's split; GLUE and SQuAD 2.0 differ only inside [`Task`].
pub fn run(args: &EvalArgs) -> Result<EvalReport> {
    let device = crate::device::parse_device(&args.device)?;
    let task = Task::parse(&args.task)?;
    let split = task.split(&args.split)?;
    let (which, base_model) = (args.from.checkpoint, args.from.base_model.as_deref());
    let l = load(&args.model, which, base_model, task, device)?;
    let data = task.eval_data_dir(args.data_dir.as_deref(), l.run_cfg.as_ref())?;
    // A run folder's own settings, so that its scores come out as in training.
    let max_len = args.max_len.or(l.run_cfg.as_ref().map(|c| c.max_seq_length)).unwrap_or(task.fallback_max_len());
    let squad: SquadConfig = l.run_cfg.as_ref().map(|c| c.squad.clone()).unwrap_or_default();
    let tok = SpmTokenizer::from_file(&l.spm)?;
    let settings = EvalSettings { max_len, batch_size: batch_size(args, &l), squad: &squad };
    let scores = split.evaluate(&l.model, &data, &tok, &settings, device)?;
    let predictions = if args.predictions { Some(scores.predictions) } else { None };
    Ok(EvalReport { task: task.name().into(), split: args.split.clone(), examples: scores.examples, metrics: scores.metrics, predictions })
}
