//! One complete run (`triadapt train`): data, model, method, the step loop with evaluation and a
//! progress bar, and the run folder. Files are written as the run goes (curve and rank history
//! rows are flushed, metrics.json is rewritten at every evaluation), so a run that dies leaves
//! everything up to its last evaluation, and a NaN loss ends the run with `status: failed`.
//! GLUE tasks train a classification head; `squad2` a span (QA) head on windows of the context,
//! and its evaluations also write `predictions.json` (see `crate::data::squad`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::eval::{gold, predict, score, squad_scores};
use super::{Batch, Trainer, StepStats};
use crate::config::RunConfig;
use crate::data::batch::{encode_all, epoch_order, make_batch, Encoded};
use crate::data::glue::{self, Split, TaskSpec};
use crate::data::squad::{self, QaFeature, SquadExample, SquadSplit};
use crate::data::tokenizer::SpmTokenizer;
use crate::model::{HeadKind, ModelDir};
use crate::peft::method::MethodSetup;

/// metrics.json: the outcome of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// running, finished or failed.
    pub status: String,
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

/// Where the model and the task's data are: paths relative to `base`, else the fetch cache.
pub fn resolve_model(cfg: &RunConfig, base: &Path) -> Result<PathBuf> {
    let p = base.join(&cfg.model);
    if p.is_dir() {
        return Ok(p);
    }
    crate::data::fetch::resolve_model(&cfg.model).map_err(|e| anyhow::anyhow!("key `model`: {e:#}"))
}

pub fn resolve_data(cfg: &RunConfig, base: &Path) -> Result<PathBuf> {
    match &cfg.data_dir {
        Some(d) if d.is_absolute() => Ok(d.clone()),
        Some(d) => Ok(base.join(d)),
        None if cfg.task == "squad2" => crate::data::fetch::resolve_squad_dir().map_err(|e| anyhow::anyhow!("key `data_dir`: {e:#}")),
        None => crate::data::fetch::resolve_glue_dir(&cfg.task).map_err(|e| anyhow::anyhow!("key `data_dir`: {e:#}")),
    }
}

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

/// Everything a run needs before its first step.
pub struct Prepared {
    pub data: TaskData,
    pub tokenizer: SpmTokenizer,
    pub model_dir: ModelDir,
    pub total_steps: i64,
    pub steps_per_epoch: i64,
}

impl Prepared {
    /// The task's name (`rte`, ..., `squad2`).
    pub fn task_name(&self) -> &'static str {
        match &self.data {
            TaskData::Glue { task, .. } => task.name,
            TaskData::Squad { .. } => squad::TASK,
        }
    }

    /// The head the task trains.
    pub fn head(&self) -> HeadKind {
        match &self.data {
            TaskData::Glue { .. } => HeadKind::Cls,
            TaskData::Squad { .. } => HeadKind::Qa,
        }
    }

    /// The metric that picks the best evaluation.
    pub fn main_metric(&self) -> Result<&'static str> {
        match &self.data {
            TaskData::Glue { task, .. } => crate::metrics::main_metric(task.name),
            TaskData::Squad { .. } => Ok(squad::MAIN_METRIC),
        }
    }

    /// Training rows (examples; SQuAD: windows).
    pub fn train_len(&self) -> usize {
        match &self.data {
            TaskData::Glue { train, .. } => train.len(),
            TaskData::Squad { train, .. } => train.len(),
        }
    }

    /// The padded training batch of the rows at `indices`.
    pub fn train_batch(&self, indices: &[usize], device: tch::Device) -> Batch {
        match &self.data {
            TaskData::Glue { train, .. } => make_batch(train, indices, self.tokenizer.pad_id(), device),
            TaskData::Squad { train, .. } => squad::make_batch(train, indices, self.tokenizer.pad_id(), device),
        }
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
        let name = match (task.name, split) {
            ("mnli", Split::Validation) => "m",
            ("mnli", _) => "mm",
            _ => "validation",
        };
        dev.push((name.to_string(), encode_all(tokenizer, &ex, cfg.max_seq_length)));
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

/// Reads the data and the model directory; `base` resolves relative paths (the config's folder
/// or the working directory).
pub fn prepare(cfg: &RunConfig, base: &Path) -> Result<Prepared> {
    cfg.validate()?;
    let glue_task = if cfg.task == squad::TASK { None } else { Some(glue::task(&cfg.task).map_err(|e| anyhow::anyhow!("key `task`: {e}"))?) };
    let data = resolve_data(cfg, base)?;
    let mut model_dir = ModelDir::open(&resolve_model(cfg, base)?)?;
    model_dir.config.num_labels = Some(glue_task.map_or(2, |t| t.num_labels()));
    model_dir.config.id2label = None;
    if let Some(p) = cfg.cls_dropout {
        model_dir.config.cls_dropout = Some(p);
    }
    let tokenizer = SpmTokenizer::from_file(&model_dir.spm_path())?;
    let data = match glue_task {
        Some(task) => load_glue(cfg, task, &data, &tokenizer)?,
        None => load_squad(cfg, &data, &tokenizer)?,
    };
    let mut p = Prepared { data, tokenizer, model_dir, total_steps: 0, steps_per_epoch: 0 };
    p.steps_per_epoch = p.train_len().div_ceil(cfg.batch_size) as i64;
    p.total_steps = cfg.max_steps.unwrap_or_else(|| (p.steps_per_epoch as f64 * cfg.epochs).ceil() as i64);
    cfg.method.validate(p.model_dir.config.num_hidden_layers, p.total_steps)?;
    Ok(p)
}

/// What one evaluation gives: every metric, the main score (which picks the best step) and, for
/// SQuAD, the decoded answers by question id.
type Evaluation = (BTreeMap<String, f64>, f64, Option<BTreeMap<String, String>>);

/// Evaluates every dev split; MNLI's metrics get `m_`/`mm_` prefixes. The main score is the
/// first split's (MNLI: matched); SQuAD's is `f1`.
fn evaluate_all(t: &Trainer, p: &Prepared, cfg: &RunConfig, device: tch::Device) -> Result<Evaluation> {
    let (task, dev) = match &p.data {
        TaskData::Glue { task, dev, .. } => (*task, dev),
        TaskData::Squad { dev_examples, dev, .. } => {
            let (m, preds) = squad_scores(&t.model, dev_examples, dev, &cfg.squad, cfg.eval_batch_size, p.tokenizer.pad_id(), device)?;
            let main = *m.get(squad::MAIN_METRIC).context("the SQuAD scores lack f1")?;
            return Ok((m, main, Some(preds.text)));
        }
    };
    let mut all = BTreeMap::new();
    let mut main = None;
    for (name, ex) in dev {
        let preds = predict(&t.model, ex, cfg.eval_batch_size, p.tokenizer.pad_id(), device);
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

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Trains one configuration and writes its run folder `out`.
pub fn run(cfg: &RunConfig, base: &Path, out: &Path, progress: bool) -> Result<RunResult> {
    let started = Instant::now();
    let p = prepare(cfg, base)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create run folder {}", out.display()))?;
    std::fs::write(out.join("config.yaml"), cfg.to_yaml())?;
    let device = crate::device::parse_device(&cfg.device)?;
    if cfg.bf16 {
        crate::precision::enable_bf16(device).context("key `bf16`")?;
    }
    tch::manual_seed(cfg.seed);
    let setup = MethodSetup::new(&cfg.method);
    let (vs, model, _report) = p.model_dir.load(p.head(), setup.factory(), device)?;
    let adapters = setup.adapters();
    let controller = setup.into_controller(&cfg.method, p.total_steps);
    let mut t = Trainer::new(vs, model, controller, adapters, cfg.method.name, cfg.optim.clone(), cfg.method.lr_policy, p.total_steps, cfg.seed)?;
    t.bf16 = cfg.bf16;

    let mut result = RunResult {
        status: "running".into(),
        error: None,
        task: cfg.task.clone(),
        method: cfg.method.name.as_str().into(),
        main_metric: p.main_metric()?.into(),
        best_step: None,
        best_score: None,
        best_metrics: BTreeMap::new(),
        final_metrics: BTreeMap::new(),
        steps: 0,
        total_steps: p.total_steps,
        trainable_params: t.trainable_count(),
        adapter_params: t.adapter_param_count(),
        head_params: t.head_param_count(),
        total_rank: 0,
        rank_budget: t.controller.budget(),
        wall_seconds: 0.0,
        examples_per_second: 0.0,
    };
    let mut curve = csv::Writer::from_path(out.join("curve.csv"))?;
    curve.write_record(["step", "loss", "lr", "dev_metric", "total_rank"])?;
    let mut history = csv::Writer::from_path(out.join("rank_history.csv"))?;
    history.write_record(["step", "module", "rank"])?;
    let mut last_ranks: BTreeMap<String, i64> = BTreeMap::new();
    let mut log_ranks = |step: i64, ranks: &[(String, i64)], w: &mut csv::Writer<std::fs::File>| -> Result<()> {
        for (m, r) in ranks {
            if last_ranks.get(m) != Some(r) {
                w.write_record([step.to_string(), m.clone(), r.to_string()])?;
                last_ranks.insert(m.clone(), *r);
            }
        }
        w.flush()?;
        Ok(())
    };
    log_ranks(0, &t.controller.ranks(), &mut history)?;

    let bar = crate::progress::step_bar(p.total_steps as u64, progress, &format!("{} {}", cfg.task, cfg.method.name.as_str()));
    let mut seen = 0usize;
    let outcome: Result<()> = (|| {
        let mut step = 0i64;
        let mut epoch = 0usize;
        while step < p.total_steps {
            let order = epoch_order(p.train_len(), cfg.seed, epoch);
            for chunk in order.chunks(cfg.batch_size) {
                if step >= p.total_steps {
                    break;
                }
                let batch = p.train_batch(chunk, device);
                let StepStats { loss, lr, .. } = t.step(&batch, step)?;
                seen += chunk.len();
                let ranks = t.controller.ranks();
                let total_rank: i64 = ranks.iter().map(|(_, r)| r).sum();
                log_ranks(step + 1, &ranks, &mut history)?;
                let eval_now = (step + 1) % cfg.eval_steps == 0 || step + 1 == p.total_steps;
                let mut dev_metric = String::new();
                if eval_now {
                    // Evaluation in the training precision, as HF Trainer's with bf16.
                    let (metrics, main, answers) = crate::precision::autocast(device, cfg.bf16, || evaluate_all(&t, &p, cfg, device))?;
                    if let Some(answers) = answers {
                        // SQuAD: the latest evaluation's answers, in the official prediction format.
                        write_json(&out.join("predictions.json"), &answers)?;
                    }
                    dev_metric = format!("{main}");
                    if result.best_score.is_none_or(|b| main > b) {
                        result.best_score = Some(main);
                        result.best_step = Some(step + 1);
                        result.best_metrics = metrics.clone();
                    }
                    result.final_metrics = metrics;
                }
                curve.write_record([(step + 1).to_string(), format!("{loss}"), format!("{lr}"), dev_metric, total_rank.to_string()])?;
                step += 1;
                result.steps = step;
                result.total_rank = total_rank;
                result.trainable_params = t.trainable_count();
                result.adapter_params = t.adapter_param_count();
                result.head_params = t.head_param_count();
                let secs = started.elapsed().as_secs_f64();
                result.wall_seconds = secs;
                result.examples_per_second = seen as f64 / secs.max(1e-9);
                if eval_now {
                    curve.flush()?;
                    write_json(&out.join("metrics.json"), &result)?;
                }
                let budget = result.rank_budget.map_or(String::new(), |b| format!(" rank {total_rank}/{b}"));
                bar.set_message(format!("loss {loss:.4} lr {lr:.2e}{budget} {:.1} ex/s", result.examples_per_second));
                bar.inc(1);
            }
            epoch += 1;
        }
        Ok(())
    })();
    bar.finish_and_clear();
    curve.flush()?;
    result.wall_seconds = started.elapsed().as_secs_f64();
    let ranks: BTreeMap<String, i64> = t.controller.ranks().into_iter().collect();
    write_json(&out.join("rank_pattern.json"), &ranks)?;
    match outcome {
        Ok(()) => {
            result.status = "finished".into();
            crate::peft::save::save_adapter(&out.join("adapter"), &t, &cfg.method, result.steps, &p.model_dir.dir, &cfg.task)?;
        }
        Err(e) => {
            result.status = "failed".into();
            result.error = Some(format!("{e:#}"));
        }
    }
    write_json(&out.join("metrics.json"), &result)?;
    if let Some(err) = &result.error {
        bail!("run failed: {err} (see {})", out.join("metrics.json").display());
    }
    Ok(result)
}
