//! Every file of a run folder (README "triadapt train": the files) behind one interface: the
//! run loop hands it what happened (ranks after a step, a window of log rows, an evaluation, a
//! checkpoint, the end) and the folder decides where it goes: curve.csv, rank_history.csv,
//! metrics.jsonl, the TensorBoard event file, metrics.json, predictions.json, checkpoints/,
//! best/ and adapter/. A resumed run's logs are cut back to their lengths at the checkpoint
//! and continued, so nothing is duplicated or lost.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::checkpoint::{self, TrainerState};
use super::log::LogWindow;
use super::result::RunResult;
use super::tensorboard::EventFile;
use super::Trainer;
use crate::config::RunConfig;

/// The open files of one run folder.
pub struct RunFolder {
    dir: PathBuf,
    curve: csv::Writer<File>,
    history: csv::Writer<File>,
    jsonl: BufWriter<File>,
    events: Option<EventFile>,
    /// Each matrix's rank as last written (rank_history.csv records changes only).
    last_ranks: BTreeMap<String, i64>,
}

impl RunFolder {
    /// Creates the folder and writes config.yaml. A fresh start (`fresh`) first removes what an
    /// earlier attempt left (checkpoints/, best/, adapter/, run_info.json), so that nothing of
    /// it mixes with this run's files.
    pub fn prepare(dir: &Path, cfg: &RunConfig, fresh: bool) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create run folder {}", dir.display()))?;
        if fresh {
            for stale in [checkpoint::CHECKPOINTS, checkpoint::BEST, "adapter"] {
                if dir.join(stale).exists() {
                    std::fs::remove_dir_all(dir.join(stale)).with_context(|| format!("cannot clear {}", dir.join(stale).display()))?;
                }
            }
            let _ = std::fs::remove_file(dir.join("run_info.json"));
        }
        std::fs::write(dir.join("config.yaml"), cfg.to_yaml())?;
        Ok(())
    }

    /// Opens the logs: new, with their headers, for a fresh run; for a run resumed from a
    /// checkpoint (`resumed`), cut back to the lengths it recorded and appended to.
    pub fn open(dir: &Path, tensorboard: bool, resumed: Option<&TrainerState>) -> Result<Self> {
        if let Some(state) = resumed {
            checkpoint::truncate_logs(dir, &state.files)?;
        }
        let open = |name: &str| -> Result<File> {
            let path = dir.join(name);
            let mut o = std::fs::OpenOptions::new();
            if resumed.is_some() {
                o.append(true)
            } else {
                o.write(true).create(true).truncate(true)
            };
            o.open(&path).with_context(|| format!("cannot open {}", path.display()))
        };
        let mut folder = RunFolder {
            dir: dir.to_path_buf(),
            curve: csv::WriterBuilder::new().from_writer(open("curve.csv")?),
            history: csv::WriterBuilder::new().from_writer(open("rank_history.csv")?),
            jsonl: BufWriter::new(open("metrics.jsonl")?),
            events: if tensorboard { Some(EventFile::open(dir, resumed.is_some())?) } else { None },
            last_ranks: resumed.map(|s| s.last_ranks.clone()).unwrap_or_default(),
        };
        if resumed.is_none() {
            folder.curve.write_record(["step", "loss", "lr", "dev_metric", "total_rank"])?;
            folder.curve.flush()?;
            folder.history.write_record(["step", "module", "rank"])?;
        }
        Ok(folder)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Each matrix's rank where it changed since the last call: a rank_history.csv row and a
    /// `rank/<module>` scalar (the heatmap's numbers, per allocation).
    pub fn log_ranks(&mut self, step: i64, ranks: &[(String, i64)]) -> Result<()> {
        let mut changed = Vec::new();
        for (m, r) in ranks {
            if self.last_ranks.get(m) != Some(r) {
                self.history.write_record([step.to_string(), m.clone(), r.to_string()])?;
                self.last_ranks.insert(m.clone(), *r);
                changed.push((format!("rank/{m}"), *r as f64));
            }
        }
        self.history.flush()?;
        if let Some(ev) = self.events.as_mut() {
            ev.scalars(step, &changed)?;
        }
        Ok(())
    }

    /// Writes the window's rows (curve.csv, metrics.jsonl, events; see [`LogWindow::flush`]) and
    /// returns the last loss.
    pub fn write_log(&mut self, window: &mut LogWindow, adapter_params: i64) -> Result<f64> {
        window.flush(&mut self.curve, &mut self.jsonl, self.events.as_mut(), adapter_params)
    }

    /// SQuAD: the latest evaluation's answers, in the official prediction format.
    pub fn write_predictions(&self, answers: &impl serde::Serialize) -> Result<()> {
        crate::files::write_json(&self.dir.join("predictions.json"), answers)
    }

    pub fn write_metrics(&self, result: &RunResult) -> Result<()> {
        crate::files::write_json(&self.dir.join("metrics.json"), result)
    }

    /// The adapter of a new best evaluation at `step` as best/ (what merge, export-peft and eval
    /// use by default: the reported weights).
    pub fn save_best(&self, t: &Trainer, cfg: &RunConfig, step: i64) -> Result<()> {
        checkpoint::save_best(&self.dir, t, cfg, step)
    }

    /// A checkpoint after `step` steps, with the logs' lengths so a resume can cut them back.
    pub fn save_checkpoint(&mut self, t: &Trainer, cfg: &RunConfig, step: i64, seen: usize, result: &RunResult) -> Result<PathBuf> {
        self.history.flush()?;
        let state = TrainerState {
            step,
            seen,
            wall_seconds: result.wall_seconds,
            result: result.clone(),
            last_ranks: self.last_ranks.clone(),
            files: checkpoint::log_lengths(&self.dir),
        };
        checkpoint::save(&self.dir, t, cfg, &state, cfg.save_total_limit)
    }

    /// The end of a run that stopped, finished or not: the last log rows (`window`, written
    /// even after an error, their losses still worth keeping; an error writing them joins
    /// `outcome`) and rank_pattern.json.
    pub fn close_logs(&mut self, t: &Trainer, window: &mut LogWindow, adapter_params: i64, outcome: Result<()>) -> Result<Result<()>> {
        let outcome = outcome.and_then(|()| self.write_log(window, adapter_params).map(|_| ()));
        self.curve.flush()?;
        let ranks: BTreeMap<String, i64> = t.controller.ranks().into_iter().collect();
        crate::files::write_json(&self.dir.join("rank_pattern.json"), &ranks)?;
        Ok(outcome)
    }

    /// A finished run's end state as adapter/ (optimizer included); the checkpoints are then
    /// done with and removed.
    pub fn save_final(&self, t: &Trainer, cfg: &RunConfig, steps: i64) -> Result<()> {
        checkpoint::save_adapter(&self.dir.join("adapter"), t, &cfg.method, steps, Path::new(&cfg.model), &cfg.task)?;
        let checkpoints = self.dir.join(checkpoint::CHECKPOINTS);
        if checkpoints.exists() {
            std::fs::remove_dir_all(&checkpoints).with_context(|| format!("cannot remove {}", checkpoints.display()))?;
        }
        Ok(())
    }
}
