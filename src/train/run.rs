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

use super::log::{LogWindow, PendingRow};
use super::result::{read_result, RunResult, RunStatus};
use super::tensorboard::EventFile;
use super::{StepStats, Trainer, TrainerConfig};
use crate::config::RunConfig;
use crate::data::batch::{epoch_order, Batch};
use crate::data::hub::{self, ResolvedModel};
use crate::data::tokenizer::SpmTokenizer;
use crate::model::{HeadKind, ModelDir};
// Re-exported where it used to live, for code written against `train::run`.
pub use crate::task::TaskData;
use crate::task::{Evaluation, Task};

/// Where the model is: a path relative to `base`, else the Hugging Face cache (a hub name,
/// `owner/name[@revision]`; the commit is recorded). The task's data: [`Task`].
pub fn resolve_model(cfg: &RunConfig, base: &Path) -> Result<ResolvedModel> {
    let p = base.join(&cfg.model);
    if p.is_dir() {
        return Ok(ResolvedModel { dir: p, commit: None });
    }
    hub::resolve_model(&cfg.model).map_err(|e| anyhow::anyhow!("key `model`: {e:#}"))
}

/// Everything a run needs before its first step.
pub struct Prepared {
    /// The config's task, parsed.
    pub task: Task,
    pub data: TaskData,
    pub tokenizer: SpmTokenizer,
    pub model_dir: ModelDir,
    /// The hub commit the model's files came from (None for a model directory).
    pub model_commit: Option<String>,
    pub total_steps: i64,
    pub steps_per_epoch: i64,
}

impl Prepared {
    /// The task's name (`rte`, ..., `squad2`).
    pub fn task_name(&self) -> &'static str {
        self.task.name()
    }

    /// The head the task trains.
    pub fn head(&self) -> HeadKind {
        self.task.head()
    }

    /// The metric that picks the best evaluation.
    pub fn main_metric(&self) -> Result<&'static str> {
        self.task.main_metric()
    }

    /// Training rows (examples; SQuAD: windows).
    pub fn train_len(&self) -> usize {
        self.data.train_len()
    }

    /// The padded training batch of the rows at `indices`.
    pub fn train_batch(&self, indices: &[usize], device: tch::Device) -> Batch {
        self.data.train_batch(indices, self.tokenizer.pad_id(), device)
    }
}

/// Reads the data and the model directory; `base` resolves relative paths (the config's folder
/// or the working directory).
pub fn prepare(cfg: &RunConfig, base: &Path) -> Result<Prepared> {
    cfg.validate()?;
    let task = Task::of_config(cfg)?;
    let data = crate::task::run_data_dir(cfg, base)?;
    let model = resolve_model(cfg, base)?;
    let mut model_dir = ModelDir::open(&model.dir)?;
    model_dir.config.num_labels = Some(task.num_labels());
    model_dir.config.id2label = None;
    if let Some(p) = cfg.cls_dropout {
        model_dir.config.cls_dropout = Some(p);
    }
    let tokenizer = SpmTokenizer::from_file(&model_dir.spm_path())?;
    let data = task.load(cfg, &data, &tokenizer)?;
    let mut p = Prepared { task, data, tokenizer, model_dir, model_commit: model.commit, total_steps: 0, steps_per_epoch: 0 };
    p.steps_per_epoch = p.train_len().div_ceil(cfg.batch_size) as i64;
    p.total_steps = cfg.max_steps.unwrap_or_else(|| (p.steps_per_epoch as f64 * cfg.epochs).ceil() as i64);
    cfg.method.validate(p.model_dir.config.num_hidden_layers, p.total_steps)?;
    Ok(p)
}

/// Evaluates every dev split of the run's task (see [`TaskData::evaluate`]) with the config's
/// `eval_batch_size` and `squad.*` decoding.
fn evaluate_all(t: &Trainer, p: &Prepared, cfg: &RunConfig, device: tch::Device) -> Result<Evaluation> {
    p.data.evaluate(&t.model, cfg.eval_batch_size, p.tokenizer.pad_id(), &cfg.squad, device)
}

/// How [`run`] starts and reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Show a progress bar (a terminal); otherwise log lines on stderr.
    pub progress: bool,
    /// Continue from the run folder's last checkpoint (`train --resume`).
    pub resume: bool,
}

/// The dotted keys whose values differ between two configs, with both values. Left out: the
/// keys that are no part of a run's identity (`config::NOT_IDENTITY`: how it logs and saves;
/// `canonical_form` drops them) and the device, which a resumed run may change.
pub fn config_differences(old: &RunConfig, new: &RunConfig) -> Vec<String> {
    let flat = |c: &RunConfig| -> BTreeMap<String, String> {
        crate::config::canonical_form(c).lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    let (a, b) = (flat(old), flat(new));
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| k.as_str() != "device")
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} -> {}", a.get(k).map_or("(default)", String::as_str), b.get(k).map_or("(default)", String::as_str)))
        .collect()
}

/// Where `train --resume` continues from: the newest checkpoint of `out`, after checking that
/// the run folder's config.yaml is the same run. None when there is no checkpoint.
fn resume_point(cfg: &RunConfig, out: &Path) -> Result<Option<PathBuf>> {
    let stored_path = out.join("config.yaml");
    if !stored_path.is_file() {
        return Ok(None);
    }
    let stored = RunConfig::load(&stored_path, &[]).with_context(|| format!("--resume: cannot read {}", stored_path.display()))?;
    let diff = config_differences(&stored, cfg);
    if !diff.is_empty() {
        bail!(
            "--resume: {} was trained with another configuration ({}); resume with the same config, or train into a new folder",
            out.display(),
            diff.join("; ")
        );
    }
    if stored.device != cfg.device {
        eprintln!("note: resuming on {} (the run started on {})", cfg.device, stored.device);
    }
    Ok(super::checkpoint::latest(out))
}

/// Trains one configuration and writes its run folder `out` (README "triadapt train": the
/// files). Saves a checkpoint every `save_steps` and the best evaluation's adapter as `best/`;
/// on SIGTERM, SIGINT or SIGUSR1 saves a checkpoint at the next step boundary and returns
/// [`super::signals::Interrupted`].
pub fn run(cfg: &RunConfig, base: &Path, out: &Path, opts: RunOptions) -> Result<RunResult> {
    use super::checkpoint::{self, TrainerState};
    let started = Instant::now();
    let p = prepare(cfg, base)?;
    let device = crate::device::parse_device(&cfg.device)?;
    let from = if opts.resume { resume_point(cfg, out)? } else { None };
    if opts.resume {
        if let Some(done) = read_result(out).filter(|r| r.status == RunStatus::Finished) {
            eprintln!("{}: the run has finished already (metrics.json): nothing to resume", out.display());
            return Ok(done);
        }
        if from.is_none() {
            eprintln!("note: {} has no checkpoint: training from step 0", out.display());
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create run folder {}", out.display()))?;
    if from.is_none() {
        // A fresh start: nothing of an earlier attempt may mix with this run's files.
        for stale in [checkpoint::CHECKPOINTS, checkpoint::BEST, "adapter"] {
            if out.join(stale).exists() {
                std::fs::remove_dir_all(out.join(stale)).with_context(|| format!("cannot clear {}", out.join(stale).display()))?;
            }
        }
        let _ = std::fs::remove_file(out.join("run_info.json"));
    }
    std::fs::write(out.join("config.yaml"), cfg.to_yaml())?;
    let info = super::provenance::start(out, device, &cfg.model, p.model_commit.as_deref())?;
    if cfg.bf16 {
        crate::precision::enable_bf16(device).context("key `bf16`")?;
    }
    crate::precision::set_tf32(cfg.tf32).context("key `tf32`")?;
    tch::manual_seed(cfg.seed);
    let attached = crate::peft::attach(&p.model_dir, p.head(), &cfg.method, device)?;
    if let (Some(dir), None) = (&cfg.init_adapter, &from) {
        let peft = crate::peft::import::read_peft_lora(dir).context("key `init_adapter`")?;
        crate::peft::import::start_from_peft(&attached.setup, &peft, &attached.vs)
            .with_context(|| format!("key `init_adapter`: {}", dir.display()))?;
    }
    if let Some(ckpt) = &from {
        crate::peft::save::apply_adapter(&crate::peft::save::read_adapter(ckpt)?, &attached.adapters, &attached.vs)
            .with_context(|| format!("resuming from {}", ckpt.display()))?;
    }
    let mut t =
        Trainer::new(attached, &cfg.method, TrainerConfig { optim: cfg.optim.clone(), total_steps: p.total_steps, seed: cfg.seed })?;
    t.bf16 = cfg.bf16;

    let fresh_result = RunResult {
        status: RunStatus::Running,
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
        trainable_params: 0,
        adapter_params: 0,
        head_params: 0,
        total_rank: 0,
        rank_budget: t.controller.budget(),
        wall_seconds: 0.0,
        examples_per_second: 0.0,
    };
    let (mut step, mut seen, mut result, mut last_ranks, wall_before) = match &from {
        Some(ckpt) => {
            let state = checkpoint::load_state(ckpt)?;
            let saved_step = super::checkpoint::resume(&mut t, ckpt)?;
            anyhow::ensure!(
                saved_step == state.step,
                "{}: adapter step {saved_step} but trainer state step {}",
                ckpt.display(),
                state.step
            );
            checkpoint::truncate_logs(out, &state.files)?;
            let mut result = state.result;
            result.status = RunStatus::Running;
            result.error = None;
            eprintln!("resuming {} from step {} of {} ({})", out.display(), state.step, p.total_steps, ckpt.display());
            (state.step, state.seen, result, state.last_ranks, state.wall_seconds)
        }
        None => (0, 0, fresh_result, BTreeMap::new(), 0.0),
    };
    set_param_counts(&mut result, &t);
    let open = |name: &str| -> Result<std::fs::File> {
        let path = out.join(name);
        let mut o = std::fs::OpenOptions::new();
        if from.is_some() {
            o.append(true)
        } else {
            o.write(true).create(true).truncate(true)
        };
        o.open(&path).with_context(|| format!("cannot open {}", path.display()))
    };
    let mut curve = csv::WriterBuilder::new().from_writer(open("curve.csv")?);
    let mut history = csv::WriterBuilder::new().from_writer(open("rank_history.csv")?);
    let mut jsonl = std::io::BufWriter::new(open("metrics.jsonl")?);
    let mut events = if cfg.log.tensorboard { Some(EventFile::open(out, from.is_some())?) } else { None };
    if from.is_none() {
        curve.write_record(["step", "loss", "lr", "dev_metric", "total_rank"])?;
        curve.flush()?;
        history.write_record(["step", "module", "rank"])?;
    }
    // Each matrix's rank where it changed: a rank_history.csv row and a `rank/<module>` scalar
    // (the heatmap's numbers, per allocation).
    let log_ranks = |step: i64,
                     ranks: &[(String, i64)],
                     w: &mut csv::Writer<std::fs::File>,
                     events: Option<&mut EventFile>,
                     last: &mut BTreeMap<String, i64>|
     -> Result<()> {
        let mut changed = Vec::new();
        for (m, r) in ranks {
            if last.get(m) != Some(r) {
                w.write_record([step.to_string(), m.clone(), r.to_string()])?;
                last.insert(m.clone(), *r);
                changed.push((format!("rank/{m}"), *r as f64));
            }
        }
        w.flush()?;
        if let Some(ev) = events {
            ev.scalars(step, &changed)?;
        }
        Ok(())
    };
    if from.is_none() {
        log_ranks(0, &t.controller.ranks(), &mut history, events.as_mut(), &mut last_ranks)?;
    }
    let save_steps = cfg.save_steps.unwrap_or((p.steps_per_epoch / 4).max(1));

    super::signals::install();
    let bar = crate::progress::step_bar(p.total_steps as u64, opts.progress, &format!("{} {}", cfg.task, cfg.method.name.as_str()));
    bar.set_position(step as u64);
    let mut log = LogWindow::default();
    let mut last_log = Instant::now();
    let outcome: Result<()> = (|| {
        let spe = p.steps_per_epoch.max(1);
        let mut epoch = (step / spe) as usize;
        let mut skip = (step % spe) as usize;
        while step < p.total_steps {
            let order = epoch_order(p.train_len(), cfg.seed, epoch);
            for chunk in order.chunks(cfg.batch_size).skip(std::mem::take(&mut skip)) {
                if step >= p.total_steps {
                    break;
                }
                let batch = p.train_batch(chunk, device);
                let StepStats { loss, lr, grad_norm } = t.step(&batch, step)?;
                seen += chunk.len();
                let ranks = t.controller.ranks();
                let total_rank: i64 = ranks.iter().map(|(_, r)| r).sum();
                log_ranks(step + 1, &ranks, &mut history, events.as_mut(), &mut last_ranks)?;
                let eval_now = (step + 1) % cfg.eval_steps == 0 || step + 1 == p.total_steps;
                let mut dev_metric = String::new();
                if eval_now {
                    // Evaluation in the training precision, as HF Trainer's with bf16.
                    let (metrics, main, answers) = crate::precision::autocast(device, cfg.bf16, || evaluate_all(&t, &p, cfg, device))?;
                    if let Some(answers) = answers {
                        // SQuAD: the latest evaluation's answers, in the official prediction format.
                        crate::files::write_json(&out.join("predictions.json"), &answers)?;
                    }
                    dev_metric = format!("{main}");
                    if result.best_score.is_none_or(|b| main > b) {
                        result.best_score = Some(main);
                        result.best_step = Some(step + 1);
                        result.best_metrics = metrics.clone();
                        // What merge, export-peft and eval use by default: the reported weights.
                        checkpoint::save_best(out, &t, cfg, step + 1)?;
                    }
                    result.final_metrics = metrics;
                }
                let evaluated = eval_now.then(|| result.final_metrics.clone());
                log.rows.push(PendingRow { step, loss, grad_norm, lr, dev_metric, total_rank, evaluated });
                step += 1;
                result.steps = step;
                result.total_rank = total_rank;
                let secs = wall_before + started.elapsed().as_secs_f64();
                result.wall_seconds = secs;
                result.examples_per_second = seen as f64 / secs.max(1e-9);
                let stop = super::signals::stop_requested();
                let save_now = stop.is_some() || (step % save_steps == 0 && step < p.total_steps);
                // The losses stay on the device until a log point: one read for the window.
                let log_now =
                    save_now || eval_now || step % cfg.log_steps == 0 || step == p.total_steps || last_log.elapsed().as_secs() >= 60;
                if log_now {
                    last_log = Instant::now();
                    // The counts change only with growth: refreshed where metrics.json and the
                    // checkpoints are written (every one of those is a log point).
                    set_param_counts(&mut result, &t);
                    let loss = log.flush(&mut curve, &mut jsonl, events.as_mut(), result.adapter_params)?;
                    let budget = result.rank_budget.map_or(String::new(), |b| format!(" rank {total_rank}/{b}"));
                    let eta = secs / step as f64 * (p.total_steps - step) as f64;
                    let line = format!(
                        "step {step}/{} epoch {} loss {loss:.4} lr {lr:.2e}{budget} {:.1} ex/s eta {}",
                        p.total_steps,
                        epoch + 1,
                        result.examples_per_second,
                        crate::progress::duration_text(eta)
                    );
                    if bar.is_hidden() {
                        eprintln!("{line}");
                    }
                    bar.set_message(format!("loss {loss:.4} lr {lr:.2e}{budget} {:.1} ex/s", result.examples_per_second));
                }
                if eval_now || save_now {
                    crate::files::write_json(&out.join("metrics.json"), &result)?;
                }
                if save_now {
                    history.flush()?;
                    let state = TrainerState {
                        step,
                        seen,
                        wall_seconds: secs,
                        result: result.clone(),
                        last_ranks: last_ranks.clone(),
                        files: checkpoint::log_lengths(out),
                    };
                    let dir = checkpoint::save(out, &t, cfg, &state, cfg.save_total_limit)?;
                    if bar.is_hidden() {
                        eprintln!("checkpoint: {}", dir.display());
                    }
                }
                if let Some(signal) = stop {
                    return Err(super::signals::Interrupted { signal, step }.into());
                }
                bar.inc(1);
            }
            epoch += 1;
        }
        Ok(())
    })();
    bar.finish_and_clear();
    // Rows of a window cut short by an error (their losses are still worth keeping).
    let outcome = outcome.and_then(|()| log.flush(&mut curve, &mut jsonl, events.as_mut(), result.adapter_params).map(|_| ()));
    curve.flush()?;
    result.wall_seconds = wall_before + started.elapsed().as_secs_f64();
    set_param_counts(&mut result, &t);
    let ranks: BTreeMap<String, i64> = t.controller.ranks().into_iter().collect();
    crate::files::write_json(&out.join("rank_pattern.json"), &ranks)?;
    let interrupted = outcome.as_ref().err().and_then(|e| e.downcast_ref::<super::signals::Interrupted>()).map(|i| (i.signal, i.step));
    match &outcome {
        Ok(()) => {
            result.status = RunStatus::Finished;
            super::checkpoint::save_adapter(&out.join("adapter"), &t, &cfg.method, result.steps, Path::new(&cfg.model), &cfg.task)?;
            // adapter/ is the end state (optimizer included): the checkpoints are done with.
            if out.join(checkpoint::CHECKPOINTS).exists() {
                std::fs::remove_dir_all(out.join(checkpoint::CHECKPOINTS))
                    .with_context(|| format!("cannot remove {}", out.join(checkpoint::CHECKPOINTS).display()))?;
            }
        }
        Err(e) if interrupted.is_some() => {
            result.status = RunStatus::Interrupted;
            result.error = Some(format!("{e:#}"));
        }
        Err(e) => {
            result.status = RunStatus::Failed;
            result.error = Some(format!("{e:#}"));
        }
    }
    crate::files::write_json(&out.join("metrics.json"), &result)?;
    super::provenance::end(out, info)?;
    if let Some((signal, step)) = interrupted {
        return Err(super::signals::Interrupted { signal, step }.into());
    }
    if let Some(err) = &result.error {
        bail!("run failed: {err} (see {})", out.join("metrics.json").display());
    }
    Ok(result)
}

/// The trainer's parameter counts into metrics.json (they grow with the ranks).
fn set_param_counts(result: &mut RunResult, t: &Trainer) {
    result.trainable_params = t.trainable_count();
    result.adapter_params = t.adapter_param_count();
    result.head_params = t.head_param_count();
}
