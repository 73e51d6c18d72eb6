//! Checkpoints of a run in progress and the run's best adapter.
//!
//! A checkpoint (`<run>/checkpoints/step-<N>/`) holds what continuing exactly needs: the adapter
//! and head tensors, AdamW's moments and birth steps, the rank controller's state (all as
//! `triadapt::peft::save` writes them), and `trainer_state.json` (the step, the examples seen,
//! the metrics so far, the ranks last logged, and the lengths of curve.csv, rank_history.csv and
//! metrics.jsonl at that step). Dropout is reseeded from (seed, step) and the data order from
//! (seed, epoch), so no random-generator state is needed. Each checkpoint is written into a
//! temporary folder and renamed into place: a run killed while saving leaves the previous one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use tch::{Device, Tensor};

use super::result::RunResult;
use super::Trainer;
use crate::config::RunConfig;
use crate::peft::method::MethodConfig;
use crate::peft::save::{read_adapter, AdapterConfig, ADAPTER_CONFIG, ADAPTER_WEIGHTS, OPTIMIZER_STATE};

pub const CHECKPOINTS: &str = "checkpoints";
/// The adapter of the best evaluation so far.
pub const BEST: &str = "best";
pub const STATE_FILE: &str = "trainer_state.json";
/// The files a checkpoint cuts back to their length at that step when a run resumes.
pub const LOG_FILES: [&str; 4] = ["curve.csv", "rank_history.csv", "metrics.jsonl", super::tensorboard::EVENT_FILE];

/// The loop's own state at a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps taken.
    pub step: i64,
    /// Training examples seen (for examples/s).
    pub seen: usize,
    /// Training time before this checkpoint, in seconds (a resumed run adds its own).
    pub wall_seconds: f64,
    /// metrics.json as of this step (best and latest evaluation).
    pub result: RunResult,
    /// The rank of every matrix as last written to rank_history.csv.
    pub last_ranks: BTreeMap<String, i64>,
    /// Byte length of each of [`LOG_FILES`] at this step.
    pub files: BTreeMap<String, u64>,
}

/// Saves a checkpoint of `t` under `run/checkpoints/step-<step>` and keeps only the newest
/// `keep` checkpoints. Returns the checkpoint folder.
pub fn save(run: &Path, t: &Trainer, cfg: &RunConfig, state: &TrainerState, keep: usize) -> Result<PathBuf> {
    let root = run.join(CHECKPOINTS);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let name = format!("step-{:08}", state.step);
    let tmp = root.join(format!(".tmp-{name}"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot clear {}", tmp.display()))?;
    }
    save_adapter(&tmp, t, &cfg.method, state.step, Path::new(&cfg.model), &cfg.task)?;
    std::fs::write(tmp.join(STATE_FILE), serde_json::to_string_pretty(state)?)
        .with_context(|| format!("cannot write {}", tmp.join(STATE_FILE).display()))?;
    let dest = root.join(&name);
    replace_dir(&tmp, &dest)?;
    let mut all = list(run);
    while all.len() > keep.max(1) {
        let old = all.remove(0);
        std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove the old checkpoint {}", old.display()))?;
    }
    Ok(dest)
}

/// Saves `t`'s adapter (and head) as the run's `best/`, replacing the previous best.
pub fn save_best(run: &Path, t: &Trainer, cfg: &RunConfig, step: i64) -> Result<()> {
    let tmp = run.join(".tmp-best");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot clear {}", tmp.display()))?;
    }
    save_adapter(&tmp, t, &cfg.method, step, Path::new(&cfg.model), &cfg.task)?;
    replace_dir(&tmp, &run.join(BEST))
}

/// Moves the finished folder `tmp` to `dest`, replacing what was there (rename is atomic; an
/// existing `dest` is moved aside first and removed after).
fn replace_dir(tmp: &Path, dest: &Path) -> Result<()> {
    let old = dest.with_extension("old");
    if dest.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("cannot clear {}", old.display()))?;
        }
        std::fs::rename(dest, &old).with_context(|| format!("cannot move {} aside", dest.display()))?;
    }
    std::fs::rename(tmp, dest).with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    Ok(())
}

/// The run's complete checkpoints, oldest first.
pub fn list(run: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(run.join(CHECKPOINTS)) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("step-")) && p.join(STATE_FILE).is_file())
        .collect();
    out.sort();
    out
}

/// The newest complete checkpoint of a run folder.
pub fn latest(run: &Path) -> Option<PathBuf> {
    list(run).pop()
}

pub fn load_state(checkpoint: &Path) -> Result<TrainerState> {
    let path = checkpoint.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not a trainer state", path.display()))
}

/// The byte lengths of the run's [`LOG_FILES`] now.
pub fn log_lengths(run: &Path) -> BTreeMap<String, u64> {
    LOG_FILES.iter().map(|f| (f.to_string(), std::fs::metadata(run.join(f)).map(|m| m.len()).unwrap_or(0))).collect()
}

/// Cuts the run's log files back to their lengths at a checkpoint (rows written after it are
/// written again by the resumed run).
pub fn truncate_logs(run: &Path, files: &BTreeMap<String, u64>) -> Result<()> {
    for (name, len) in files {
        let path = run.join(name);
        if *len == 0 && !path.exists() {
            // A log the run does not write (`log.tensorboard: false`).
            continue;
        }
        let f = std::fs::OpenOptions::new().write(true).open(&path).with_context(|| format!("cannot open {} to resume", path.display()))?;
        f.set_len(*len).with_context(|| format!("cannot truncate {}", path.display()))?;
    }
    Ok(())
}

/// Where a checkpoint-aware command reads a run folder's adapter: `best/` (the best evaluation,
/// what the tables report) or `adapter/` (the last step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Which {
    #[default]
    Best,
    Last,
}

/// The adapter folder of `path` for `which`: a run folder's `best/` or `adapter/` (a run
/// without `best/`, e.g. from before it existed, falls back to `adapter/` with a note); any
/// other folder is taken as an adapter folder.
pub fn adapter_dir(path: &Path, which: Which) -> PathBuf {
    let is_run = path.join("adapter").is_dir() || path.join(BEST).is_dir();
    if !is_run {
        return path.to_path_buf();
    }
    match which {
        Which::Best if path.join(BEST).is_dir() => path.join(BEST),
        Which::Best => {
            eprintln!("note: {} has no best/ (no evaluation improved, or an older run): using adapter/ (the last step)", path.display());
            path.join("adapter")
        }
        Which::Last => path.join("adapter"),
    }
}

fn cpu(t: &Tensor) -> Tensor {
    t.detach().to_device(Device::Cpu).contiguous()
}

/// Writes the adapter folder of a trainer at `step` (everything needed to resume exactly).
pub fn save_adapter(dir: &Path, t: &Trainer, method: &MethodConfig, step: i64, base_model: &Path, task: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut weights: Vec<(String, Tensor)> = t
        .adapters()
        .iter()
        .flat_map(|(name, a)| {
            let a = a.lock().expect("adapter lock");
            a.params().into_iter().chain(a.buffers()).map(|(role, x)| (format!("{name}.{role}"), cpu(&x))).collect::<Vec<_>>()
        })
        .collect();
    // The whole head, trained or not: a frozen pooler (`method.train_pooler: false`) keeps its
    // initialisation, which a backbone-only checkpoint draws at random.
    let heads = crate::model::heads::head_prefixes(t.model.kind);
    weights.extend(t.trainable_vars().iter().filter(|(n, _)| !heads.iter().any(|p| n.starts_with(p))).map(|(n, x)| (n.clone(), cpu(x))));
    weights.extend(crate::peft::export::head_tensors(&t.vs, t.model.kind));
    Tensor::write_safetensors(&weights, dir.join(ADAPTER_WEIGHTS)).with_context(|| format!("cannot write {}", dir.display()))?;
    let mut state: Vec<(String, Tensor)> = Vec::new();
    for name in t.opt.names() {
        let [m, v, b] = t.opt.state(name).expect("named parameter");
        state.push((format!("{name}.exp_avg"), cpu(m)));
        state.push((format!("{name}.exp_avg_sq"), cpu(v)));
        state.push((format!("{name}.birth"), cpu(b)));
    }
    state.extend(t.controller.state_tensors().into_iter().map(|(n, x)| (format!("controller.{n}"), cpu(&x))));
    Tensor::write_safetensors(&state, dir.join(OPTIMIZER_STATE))?;
    let config = AdapterConfig {
        format: "triadapt-adapter".into(),
        method: method.clone(),
        rank_pattern: t.controller.ranks().into_iter().collect(),
        step,
        total_steps: t.total_steps,
        trainable_params: t.trainable_count(),
        // As the user gave it (a hub name, or a path as written): a run folder copied to
        // another machine still finds its model there (`commands::adapter::resolve_base_model`).
        base_model: base_model.to_path_buf(),
        head: t.model.kind,
        num_labels: t.model.config.num_labels(),
        task: Some(task.to_string()),
    };
    std::fs::write(dir.join(ADAPTER_CONFIG), serde_json::to_string_pretty(&config)?)?;
    Ok(())
}

/// Restores the optimizer moments and birth steps and the controller state saved with the
/// adapter, so that training continues exactly where it stopped. Returns the saved step.
pub fn resume(t: &mut Trainer, dir: &Path) -> Result<i64> {
    let saved = read_adapter(dir)?;
    let dir = if dir.join(ADAPTER_CONFIG).is_file() { dir.to_path_buf() } else { dir.join("adapter") };
    let state: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(dir.join(OPTIMIZER_STATE))
        .with_context(|| format!("cannot read {}", dir.join(OPTIMIZER_STATE).display()))?
        .into_iter()
        .collect();
    let names: Vec<String> = t.opt.names().map(str::to_string).collect();
    for name in names {
        let get = |k: &str| state.get(&format!("{name}.{k}")).with_context(|| format!("saved optimizer state lacks `{name}.{k}`"));
        t.opt.set_state(&name, get("exp_avg")?, get("exp_avg_sq")?, get("birth")?)?;
    }
    let controller_state: std::collections::HashMap<String, Tensor> =
        state.iter().filter_map(|(k, v)| k.strip_prefix("controller.").map(|k| (k.to_string(), v.shallow_clone()))).collect();
    t.controller.load_state(&controller_state)?;
    Ok(saved.config.step)
}
