//! One complete run (`triadapt train`): data, model, method, the step loop with evaluation and a
//! progress bar, and the run folder. Files are written as the run goes (curve and rank history
//! rows are flushed, metrics.json is rewritten at every evaluation), so a run that dies leaves
//! everything up to its last evaluation, and a NaN loss ends the run with `status: failed`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::eval::{gold, predict, score};
use super::{Trainer, StepStats};
use crate::config::RunConfig;
use crate::data::batch::{encode_all, epoch_order, make_batch, Encoded};
use crate::data::glue::{self, Split, TaskSpec};
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
    /// The metric that picks the best evaluation (e.g. `accuracy`).
    pub main_metric: String,
    pub best_step: Option<i64>,
    pub best_score: Option<f64>,
    /// Every metric at the best evaluation (MNLI: `m_` and `mm_` prefixes).
    pub best_metrics: BTreeMap<String, f64>,
    pub final_metrics: BTreeMap<String, f64>,
    pub steps: i64,
    pub total_steps: i64,
    pub trainable_params: i64,
    pub total_rank: i64,
    pub rank_budget: Option<i64>,
    pub wall_seconds: f64,
    pub examples_per_second: f64,
}

/// Where the model and the task's data are, resolving names through the fetch cache.
fn resolve_model(cfg: &RunConfig, base: &Path) -> Result<PathBuf> {
    let p = base.join(&cfg.model);
    if p.is_dir() {
        return Ok(p);
    }
    let p = PathBuf::from(&cfg.model);
    if p.is_dir() {
        return Ok(p);
    }
    bail!("key `model`: {:?} is not a model directory (run `triadapt fetch model {}` or give a path)", cfg.model, cfg.model)
}

fn resolve_data(cfg: &RunConfig, base: &Path) -> Result<PathBuf> {
    match &cfg.data_dir {
        Some(d) if d.is_absolute() => Ok(d.clone()),
        Some(d) => Ok(base.join(d)),
        None => bail!("key `data_dir`: not set (point it at the task's GLUE TSV or parquet folder, or run `triadapt fetch glue {}`)", cfg.task),
    }
}

/// Everything a run needs before its first step.
pub struct Prepared {
    pub task: &'static TaskSpec,
    pub tokenizer: SpmTokenizer,
    pub train: Vec<Encoded>,
    /// (split name, examples): `validation`, or `m`/`mm` for MNLI.
    pub dev: Vec<(String, Vec<Encoded>)>,
    pub model_dir: ModelDir,
    pub total_steps: i64,
    pub steps_per_epoch: i64,
}

/// Reads the data and the model directory; `base` resolves relative paths (the config's folder
/// or the working directory).
pub fn prepare(cfg: &RunConfig, base: &Path) -> Result<Prepared> {
    cfg.validate()?;
    let task = glue::task(&cfg.task).map_err(|e| anyhow::anyhow!("key `task`: {e}"))?;
    let data = resolve_data(cfg, base)?;
    let mut model_dir = ModelDir::open(&resolve_model(cfg, base)?)?;
    model_dir.config.num_labels = Some(task.num_labels());
    model_dir.config.id2label = None;
    if let Some(p) = cfg.cls_dropout {
        model_dir.config.cls_dropout = Some(p);
    }
    let tokenizer = SpmTokenizer::from_file(&model_dir.spm_path())?;
    let mut train = glue::load_split(&data, task, Split::Train)?;
    if let Some(n) = cfg.max_train_examples {
        train.truncate(n);
    }
    if train.is_empty() {
        bail!("{}: the training split is empty", data.display());
    }
    let train = encode_all(&tokenizer, &train, cfg.max_seq_length);
    let mut dev = Vec::new();
    for &split in task.dev_splits() {
        let mut ex = glue::load_split(&data, task, split)?;
        if let Some(n) = cfg.max_eval_examples {
            ex.truncate(n);
        }
        let name = match (task.name, split) {
            ("mnli", Split::Validation) => "m",
            ("mnli", _) => "mm",
            _ => "validation",
        };
        dev.push((name.to_string(), encode_all(&tokenizer, &ex, cfg.max_seq_length)));
    }
    let steps_per_epoch = train.len().div_ceil(cfg.batch_size) as i64;
    let total_steps = cfg.max_steps.unwrap_or_else(|| (steps_per_epoch as f64 * cfg.epochs).ceil() as i64);
    cfg.method.validate(model_dir.config.num_hidden_layers, total_steps)?;
    Ok(Prepared { task, tokenizer, train, dev, model_dir, total_steps, steps_per_epoch })
}

/// Evaluates every dev split; MNLI's metrics get `m_`/`mm_` prefixes. Returns the metrics and
/// the main score of the first split (MNLI: matched), which picks the best step.
fn evaluate_all(t: &Trainer, p: &Prepared, cfg: &RunConfig, device: tch::Device) -> Result<(BTreeMap<String, f64>, f64)> {
    let mut all = BTreeMap::new();
    let mut main = None;
    for (name, ex) in &p.dev {
        let preds = predict(&t.model, ex, cfg.eval_batch_size, p.tokenizer.pad_id(), device);
        let m = score(p.task, name, &preds, &gold(ex))?;
        if main.is_none() {
            main = Some(crate::metrics::main_score(p.task.name, &m)?);
        }
        for (k, v) in m {
            let key = if p.dev.len() > 1 { format!("{name}_{k}") } else { k };
            all.insert(key, v);
        }
    }
    Ok((all, main.context("the task has no dev split")?))
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
    tch::manual_seed(cfg.seed);
    let setup = MethodSetup::new(&cfg.method);
    let (vs, model, _report) = p.model_dir.load(HeadKind::Cls, setup.factory(), device)?;
    let adapters = setup.adapters();
    let controller = setup.into_controller(&cfg.method, p.total_steps);
    let mut t = Trainer::new(vs, model, controller, adapters, cfg.method.name, cfg.optim.clone(), cfg.method.lr_policy, p.total_steps, cfg.seed)?;

    let mut result = RunResult {
        status: "running".into(),
        error: None,
        task: cfg.task.clone(),
        method: cfg.method.name.as_str().into(),
        main_metric: crate::metrics::main_metric(p.task.name)?.into(),
        best_step: None,
        best_score: None,
        best_metrics: BTreeMap::new(),
        final_metrics: BTreeMap::new(),
        steps: 0,
        total_steps: p.total_steps,
        trainable_params: t.trainable_count(),
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
            let order = epoch_order(p.train.len(), cfg.seed, epoch);
            for chunk in order.chunks(cfg.batch_size) {
                if step >= p.total_steps {
                    break;
                }
                let batch = make_batch(&p.train, chunk, p.tokenizer.pad_id(), device);
                let StepStats { loss, lr, .. } = t.step(&batch, step)?;
                seen += chunk.len();
                let ranks = t.controller.ranks();
                let total_rank: i64 = ranks.iter().map(|(_, r)| r).sum();
                log_ranks(step + 1, &ranks, &mut history)?;
                let eval_now = (step + 1) % cfg.eval_steps == 0 || step + 1 == p.total_steps;
                let mut dev_metric = String::new();
                if eval_now {
                    let (metrics, main) = evaluate_all(&t, &p, cfg, device)?;
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
            crate::peft::save::save_adapter(&out.join("adapter"), &t, &cfg.method, result.steps, &p.model_dir.dir)?;
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
