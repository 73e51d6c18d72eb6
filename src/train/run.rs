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

use super::cadence::Cadence;
use super::folder::RunFolder;
use super::log::{LogWindow, PendingRow};
use super::result::{read_result, RunResult, RunStatus};
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
#[derive(Default)]
pub struct RunOptions {
    /// Show a progress bar (a terminal); otherwise log lines on stderr.
    pub progress: bool,
    /// Continue from the run folder's last checkpoint (`train --resume`).
    pub resume: bool,
    /// When to stop at a step boundary as a signal would (given the steps done; the signal
    /// number to report): None listens for SIGTERM, SIGINT and SIGUSR1.
    pub stop: Option<StopCheck>,
}

/// A stop check for [`RunOptions::stop`].
pub type StopCheck = Box<dyn Fn(i64) -> Option<i32>>;

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
/// on SIGTERM, SIGINT or SIGUSR1 (or when `opts.stop` says so) saves a checkpoint at the next
/// step boundary and returns [`super::signals::Interrupted`].
pub fn run(cfg: &RunConfig, base: &Path, out: &Path, opts: RunOptions) -> Result<RunResult> {
    use super::checkpoint;
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
    RunFolder::prepare(out, cfg, from.is_none())?;
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
        Trainer::new(attached, TrainerConfig { optim: cfg.optim.clone(), total_steps: p.total_steps, seed: cfg.seed, bf16: cfg.bf16 })?;

    let (resumed, mut result) = match &from {
        Some(ckpt) => {
            let state = checkpoint::load_state(ckpt)?;
            let saved_step = checkpoint::resume(&mut t, ckpt)?;
            anyhow::ensure!(
                saved_step == state.step,
                "{}: adapter step {saved_step} but trainer state step {}",
                ckpt.display(),
                state.step
            );
            let mut result = state.result.clone();
            result.status = RunStatus::Running;
            result.error = None;
            eprintln!("resuming {} from step {} of {} ({})", out.display(), state.step, p.total_steps, ckpt.display());
            (Some(state), result)
        }
        None => (None, fresh_result(cfg, &p, &t)?),
    };
    set_param_counts(&mut result, &t);
    let mut folder = RunFolder::open(out, cfg.log.tensorboard, resumed.as_ref())?;
    if resumed.is_none() {
        folder.log_ranks(0, &t.controller.ranks())?;
    }
    let signals = |_: i64| super::signals::stop_requested();
    let stop: &dyn Fn(i64) -> Option<i32> = match &opts.stop {
        Some(check) => check.as_ref(),
        None => {
            super::signals::install();
            &signals
        }
    };
    let bar = crate::progress::step_bar(p.total_steps as u64, opts.progress, &format!("{} {}", cfg.task, cfg.method.name.as_str()));
    let (step, seen, wall_before) = resumed.as_ref().map_or((0, 0, 0.0), |s| (s.step, s.seen, s.wall_seconds));
    bar.set_position(step as u64);
    let cadence = Cadence {
        total_steps: p.total_steps,
        eval_steps: cfg.eval_steps,
        log_steps: cfg.log_steps,
        save_steps: cfg.save_steps.unwrap_or((p.steps_per_epoch / 4).max(1)),
    };
    let mut lp = RunLoop {
        cfg,
        p: &p,
        device,
        t,
        folder,
        cadence,
        stop,
        bar,
        step,
        seen,
        result,
        started,
        wall_before,
        last_log: Instant::now(),
        window: LogWindow::default(),
    };
    let outcome = lp.train();
    let (result, interrupted) = lp.finish(outcome)?;
    super::provenance::end(out, info)?;
    if let Some(signal) = interrupted {
        return Err(super::signals::Interrupted { signal, step: result.steps }.into());
    }
    if let Some(err) = &result.error {
        bail!("run failed: {err} (see {})", out.join("metrics.json").display());
    }
    Ok(result)
}

/// metrics.json of a run at step 0.
fn fresh_result(cfg: &RunConfig, p: &Prepared, t: &Trainer) -> Result<RunResult> {
    Ok(RunResult {
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
    })
}

/// The step loop of one run and what it carries from step to step. Its body reads: a batch, a
/// training step, what is due ([`Cadence`]), doing it (evaluation, log line, checkpoint, stop);
/// every file goes through the [`RunFolder`].
struct RunLoop<'a> {
    cfg: &'a RunConfig,
    p: &'a Prepared,
    device: tch::Device,
    t: Trainer,
    folder: RunFolder,
    cadence: Cadence,
    /// Whether to stop at this step boundary (the signal number), given the steps done.
    stop: &'a dyn Fn(i64) -> Option<i32>,
    bar: indicatif::ProgressBar,
    /// Steps done.
    step: i64,
    /// Training examples seen.
    seen: usize,
    result: RunResult,
    started: Instant,
    /// Wall time of the run before this process (a resumed run's earlier attempts).
    wall_before: f64,
    last_log: Instant,
    /// The steps since the last log line, their losses still on the device.
    window: LogWindow,
}

impl RunLoop<'_> {
    /// Epochs of shuffled batches (a resumed run continues inside its epoch) until the last step.
    fn train(&mut self) -> Result<()> {
        let (total, spe) = (self.p.total_steps, self.p.steps_per_epoch.max(1));
        let mut epoch = (self.step / spe) as usize;
        let mut skip = (self.step % spe) as usize;
        while self.step < total {
            let order = epoch_order(self.p.train_len(), self.cfg.seed, epoch);
            for chunk in order.chunks(self.cfg.batch_size).skip(std::mem::take(&mut skip)) {
                if self.step >= total {
                    break;
                }
                let batch = self.p.train_batch(chunk, self.device);
                let stats = self.t.step(&batch, self.step)?;
                self.seen += chunk.len();
                self.after_step(stats, epoch)?;
                self.bar.inc(1);
            }
            epoch += 1;
        }
        Ok(())
    }

    /// Everything after one training step: the ranks, then what the cadence says is due.
    fn after_step(&mut self, stats: StepStats, epoch: usize) -> Result<()> {
        let StepStats { loss, lr, grad_norm } = stats;
        let done = self.step + 1;
        let ranks = self.t.controller.ranks();
        let total_rank: i64 = ranks.iter().map(|(_, r)| r).sum();
        self.folder.log_ranks(done, &ranks)?;
        let evaluate = self.cadence.evaluates(done);
        let dev_metric = if evaluate { format!("{}", self.evaluate(done)?) } else { String::new() };
        let evaluated = evaluate.then(|| self.result.final_metrics.clone());
        self.window.rows.push(PendingRow { step: self.step, loss, grad_norm, lr, dev_metric, total_rank, evaluated });
        self.step = done;
        self.result.steps = done;
        self.result.total_rank = total_rank;
        let secs = self.wall_before + self.started.elapsed().as_secs_f64();
        self.result.wall_seconds = secs;
        self.result.examples_per_second = self.seen as f64 / secs.max(1e-9);
        let stop = (self.stop)(done);
        let due = self.cadence.after(done, stop.is_some(), self.last_log.elapsed().as_secs() as f64);
        if due.log {
            self.log_line(epoch, lr, total_rank, secs)?;
        }
        if due.evaluate || due.save {
            self.folder.write_metrics(&self.result)?;
        }
        if due.save {
            let dir = self.folder.save_checkpoint(&self.t, self.cfg, done, self.seen, &self.result)?;
            if self.bar.is_hidden() {
                eprintln!("checkpoint: {}", dir.display());
            }
        }
        match stop {
            Some(signal) => Err(super::signals::Interrupted { signal, step: done }.into()),
            None => Ok(()),
        }
    }

    /// Evaluates on the dev set after `done` steps in the training precision (as HF Trainer's
    /// with bf16), keeps a new best as best/, and returns the main metric.
    fn evaluate(&mut self, done: i64) -> Result<f64> {
        let (t, p, cfg, device) = (&self.t, self.p, self.cfg, self.device);
        let (metrics, main, answers) = crate::precision::autocast(device, cfg.bf16, || evaluate_all(t, p, cfg, device))?;
        if let Some(answers) = answers {
            self.folder.write_predictions(&answers)?;
        }
        if self.result.best_score.is_none_or(|b| main > b) {
            self.result.best_score = Some(main);
            self.result.best_step = Some(done);
            self.result.best_metrics = metrics.clone();
            self.folder.save_best(&self.t, cfg, done)?;
        }
        self.result.final_metrics = metrics;
        Ok(main)
    }

    /// Writes the log window (one read of its losses) and the progress line.
    fn log_line(&mut self, epoch: usize, lr: f64, total_rank: i64, secs: f64) -> Result<()> {
        self.last_log = Instant::now();
        // The counts change only with growth: refreshed where metrics.json and the checkpoints
        // are written (every one of those is a log point).
        set_param_counts(&mut self.result, &self.t);
        let loss = self.folder.write_log(&mut self.window, self.result.adapter_params)?;
        let (step, total) = (self.step, self.p.total_steps);
        let budget = self.result.rank_budget.map_or(String::new(), |b| format!(" rank {total_rank}/{b}"));
        let eta = secs / step as f64 * (total - step) as f64;
        let speed = self.result.examples_per_second;
        let line = format!(
            "step {step}/{total} epoch {} loss {loss:.4} lr {lr:.2e}{budget} {speed:.1} ex/s eta {}",
            epoch + 1,
            crate::progress::duration_text(eta)
        );
        if self.bar.is_hidden() {
            eprintln!("{line}");
        }
        self.bar.set_message(format!("loss {loss:.4} lr {lr:.2e}{budget} {speed:.1} ex/s"));
        Ok(())
    }

    /// The run's end, whatever `outcome`: the last log rows, rank_pattern.json, adapter/ for a
    /// finished run, and metrics.json with the status (finished, interrupted or failed). Returns
    /// the result and, for an interrupted run, the signal.
    fn finish(mut self, outcome: Result<()>) -> Result<(RunResult, Option<i32>)> {
        self.bar.finish_and_clear();
        let adapter_params = self.result.adapter_params;
        let outcome = self.folder.close_logs(&self.t, &mut self.window, adapter_params, outcome)?;
        let mut result = self.result;
        result.wall_seconds = self.wall_before + self.started.elapsed().as_secs_f64();
        set_param_counts(&mut result, &self.t);
        let interrupted = outcome.as_ref().err().and_then(|e| e.downcast_ref::<super::signals::Interrupted>()).map(|i| i.signal);
        match &outcome {
            Ok(()) => {
                result.status = RunStatus::Finished;
                self.folder.save_final(&self.t, self.cfg, result.steps)?;
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
        self.folder.write_metrics(&result)?;
        Ok((result, interrupted))
    }
}

/// The trainer's parameter counts into metrics.json (they grow with the ranks).
fn set_param_counts(result: &mut RunResult, t: &Trainer) {
    result.trainable_params = t.trainable_count();
    result.adapter_params = t.adapter_param_count();
    result.head_params = t.head_param_count();
}
