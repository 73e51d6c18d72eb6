//! The pieces a task's evaluation is made of: eval-mode predictions in batches, then the task's
//! metrics (GLUE: fractions; SQuAD 2.0: the official script's percentages). [`super::Task`] and
//! [`super::TaskData`] put them together for a run's dev sets and for `triadapt eval`.

use std::collections::BTreeMap;

use anyhow::Result;
use tch::{Device, Kind};

use crate::data::batch::{make_batch, Encoded};
use crate::data::glue::{Label, TaskSpec};
use crate::data::squad::SquadConfig;
use crate::data::squad::{self, QaFeature, QaPredictions, SquadExample};
use crate::model::DebertaModel;

/// Model outputs or gold labels of a dev set, in example order.
pub use crate::metrics::Outputs as Predictions;

/// Runs the model in eval mode (no dropout, no gradients) over `examples`.
pub fn predict(model: &DebertaModel, examples: &[Encoded], batch_size: usize, pad_id: i64, device: Device) -> Predictions {
    let mut classes = Vec::new();
    let mut scores = Vec::new();
    let regression = model.config.num_labels() == 1;
    let indices: Vec<usize> = (0..examples.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let b = make_batch(examples, chunk, pad_id, device);
        let logits = tch::no_grad(|| model.forward_t(&b.input_ids, &b.attention_mask, &b.token_type_ids, false).logits);
        let logits = logits.to_kind(Kind::Float).to_device(Device::Cpu);
        if regression {
            scores.extend(Vec::<f32>::try_from(logits.view([-1])).expect("float logits").into_iter().map(f64::from));
        } else {
            classes.extend(Vec::<i64>::try_from(logits.argmax(-1, false)).expect("int argmax"));
        }
    }
    if regression {
        Predictions::Scores(scores)
    } else {
        Predictions::Classes(classes)
    }
}

/// The gold labels of a dev set, in the shape of the predictions.
pub fn gold(examples: &[Encoded]) -> Predictions {
    if matches!(examples.first().map(|e| e.label), Some(Label::Score(_))) {
        Predictions::Scores(
            examples
                .iter()
                .map(|e| match e.label {
                    Label::Score(s) => s as f64,
                    Label::Class(c) => c as f64,
                })
                .collect(),
        )
    } else {
        Predictions::Classes(
            examples
                .iter()
                .map(|e| match e.label {
                    Label::Class(c) => c,
                    Label::Score(s) => s as i64,
                })
                .collect(),
        )
    }
}

/// The task's metrics on one dev split (`split` is `mm` for MNLI mismatched), keyed by metric
/// name (values are fractions).
pub fn score(task: &TaskSpec, split: &str, preds: &Predictions, labels: &Predictions) -> Result<BTreeMap<String, f64>> {
    let name = if split == "mm" { "mnli_mm" } else { task.name };
    crate::metrics::glue_metrics(name, preds, labels)
}

/// Start and end logits of every QA feature, in eval mode, each row cut to its feature's tokens.
pub fn predict_qa(
    model: &DebertaModel,
    features: &[QaFeature],
    batch_size: usize,
    pad_id: i64,
    device: Device,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut starts = Vec::with_capacity(features.len());
    let mut ends = Vec::with_capacity(features.len());
    let indices: Vec<usize> = (0..features.len()).collect();
    for chunk in indices.chunks(batch_size.max(1)) {
        let b = squad::make_batch(features, chunk, pad_id, device);
        let logits = tch::no_grad(|| model.forward_t(&b.input_ids, &b.attention_mask, &b.token_type_ids, false).logits);
        let logits = logits.to_kind(Kind::Float).to_device(Device::Cpu);
        for (row, &i) in chunk.iter().enumerate() {
            let n = features[i].input_ids.len() as i64;
            let row = logits.get(row as i64).narrow(0, 0, n);
            starts.push(Vec::<f32>::try_from(row.select(1, 0).contiguous()).expect("float logits"));
            ends.push(Vec::<f32>::try_from(row.select(1, 1).contiguous()).expect("float logits"));
        }
    }
    (starts, ends)
}

/// SQuAD 2.0 on a dev set: decoded answers and the official scores under the official names,
/// in percent (see `crate::data::squad`).
pub fn squad_scores(
    model: &DebertaModel,
    examples: &[SquadExample],
    features: &[QaFeature],
    cfg: &SquadConfig,
    batch_size: usize,
    pad_id: i64,
    device: Device,
) -> Result<(BTreeMap<String, f64>, QaPredictions)> {
    let (starts, ends) = predict_qa(model, features, batch_size, pad_id, device);
    let preds = squad::postprocess(examples, features, &starts, &ends, cfg)?;
    let scores = squad::evaluate(&preds.text, examples)?;
    Ok((squad::metrics_map(&scores), preds))
}
