//! The run's step log: losses stay on the device until a log point, then one read writes the
//! window's rows to curve.csv and metrics.jsonl.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

/// One step's row of curve.csv, its loss still on the device.
pub struct PendingRow {
    /// 0-based.
    pub step: i64,
    pub loss: tch::Tensor,
    pub lr: f64,
    pub dev_metric: String,
    pub total_rank: i64,
    /// The metrics of an evaluation at this step.
    pub evaluated: Option<BTreeMap<String, f64>>,
}

/// The steps since the last log point.
#[derive(Default)]
pub struct LogWindow {
    pub rows: Vec<PendingRow>,
}

impl LogWindow {
    /// Reads the window's losses (one device-to-host read), checks them, appends the rows to
    /// curve.csv and metrics.jsonl (one JSON object per row that ends a log window or has an
    /// evaluation) and flushes both. Returns the last loss.
    pub fn flush(&mut self, curve: &mut csv::Writer<std::fs::File>, jsonl: &mut impl std::io::Write) -> Result<f64> {
        if self.rows.is_empty() {
            return Ok(f64::NAN);
        }
        let losses = crate::device::read_vec_f64(&tch::Tensor::stack(&self.rows.iter().map(|r| r.loss.shallow_clone()).collect::<Vec<_>>(), 0));
        let n = self.rows.len();
        for (i, (row, loss)) in self.rows.drain(..).zip(losses.iter().copied()).enumerate() {
            if !loss.is_finite() {
                curve.flush()?;
                jsonl.flush()?;
                bail!("the loss became {loss} at step {}", row.step);
            }
            curve.write_record([(row.step + 1).to_string(), format!("{loss}"), format!("{}", row.lr), row.dev_metric.clone(), row.total_rank.to_string()])?;
            if i + 1 == n || row.evaluated.is_some() {
                let mut obj = serde_json::json!({ "step": row.step + 1, "loss": loss, "lr": row.lr, "total_rank": row.total_rank });
                if let Some(m) = &row.evaluated {
                    obj["eval"] = serde_json::to_value(m)?;
                }
                writeln!(jsonl, "{obj}")?;
            }
        }
        curve.flush()?;
        jsonl.flush()?;
        Ok(*losses.last().expect("a row"))
    }
}

