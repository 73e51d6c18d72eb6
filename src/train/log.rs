//! The run's step log: losses (and gradient norms) stay on the device until a log point, then one
//! read writes the window's rows to curve.csv, metrics.jsonl and the TensorBoard event file.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use super::tensorboard::EventFile;

/// One step's row of curve.csv, its loss still on the device.
pub struct PendingRow {
    /// 0-based.
    pub step: i64,
    pub loss: tch::Tensor,
    /// The gradient norm before clipping (None when clipping is off).
    pub grad_norm: Option<tch::Tensor>,
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
    /// Reads the window's losses and gradient norms (one device-to-host read), checks them,
    /// appends the rows to curve.csv and metrics.jsonl (one JSON object per row that ends a log
    /// window or has an evaluation) and, when given, the event file (every row; `adapter_params`
    /// at the window's end), and flushes them. Returns the last loss.
    pub fn flush(
        &mut self,
        curve: &mut csv::Writer<std::fs::File>,
        jsonl: &mut impl std::io::Write,
        mut events: Option<&mut EventFile>,
        adapter_params: i64,
    ) -> Result<f64> {
        if self.rows.is_empty() {
            return Ok(f64::NAN);
        }
        let n = self.rows.len();
        let norms: Vec<tch::Tensor> =
            self.rows.iter().filter_map(|r| r.grad_norm.as_ref().map(|g| g.to_kind(tch::Kind::Float).view([1]))).collect();
        let losses: Vec<tch::Tensor> = self.rows.iter().map(|r| r.loss.to_kind(tch::Kind::Float).view([1])).collect();
        let values = crate::device::read_vec_f64(&tch::Tensor::cat(&losses.into_iter().chain(norms).collect::<Vec<_>>(), 0));
        let (losses, mut norms) = (values[..n].to_vec(), values[n..].iter().copied());
        for (i, (row, loss)) in self.rows.drain(..).zip(losses.iter().copied()).enumerate() {
            let grad_norm = row.grad_norm.as_ref().and_then(|_| norms.next());
            if let Some(ev) = events.as_deref_mut() {
                let mut scalars = vec![
                    ("train/loss".to_string(), loss),
                    ("train/learning_rate".to_string(), row.lr),
                    ("train/total_rank".to_string(), row.total_rank as f64),
                ];
                scalars.extend(grad_norm.map(|g| ("train/grad_norm".to_string(), g)));
                if i + 1 == n {
                    scalars.push(("train/adapter_params".to_string(), adapter_params as f64));
                }
                for (k, v) in row.evaluated.iter().flatten() {
                    scalars.push((format!("eval/{k}"), *v));
                }
                ev.scalars(row.step + 1, &scalars)?;
            }
            if !loss.is_finite() {
                curve.flush()?;
                jsonl.flush()?;
                if let Some(ev) = events.as_deref_mut() {
                    ev.flush()?;
                }
                // Counted from 1, as curve.csv and the progress line count steps.
                bail!("the loss became {loss} at step {}", row.step + 1);
            }
            curve.write_record([
                (row.step + 1).to_string(),
                format!("{loss}"),
                format!("{}", row.lr),
                row.dev_metric.clone(),
                row.total_rank.to_string(),
            ])?;
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
        if let Some(ev) = events {
            ev.flush()?;
        }
        Ok(*losses.last().expect("a row"))
    }
}
