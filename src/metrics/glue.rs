//! Each GLUE task's named metrics and main score, and the papers' "All Avg" aggregate.

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

use super::scores::*;

/// A model's outputs or the gold labels of one GLUE dev set: class ids for classification
/// tasks, real scores for STS-B (regression).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outputs {
    Classes(Vec<i64>),
    Scores(Vec<f64>),
}

impl Outputs {
    fn len(&self) -> usize {
        match self {
            Outputs::Classes(v) => v.len(),
            Outputs::Scores(v) => v.len(),
        }
    }
}

/// Task names `glue_metrics` accepts. `mnli` is the matched dev set, `mnli_mm` the mismatched.
pub const GLUE_TASKS: [&str; 9] = ["cola", "mnli", "mnli_mm", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"];

/// The named metrics HF's `glue` metric returns for `task`, plus `combined_score` (their mean,
/// as transformers' `run_glue.py` adds) where there are two:
/// cola {matthews_correlation}; sst2, mnli, mnli_mm, qnli, rte {accuracy};
/// mrpc, qqp {accuracy, f1 (positive class 1), combined_score};
/// stsb {pearson, spearmanr, combined_score}.
/// Fractions, not percentages. Errors on an unknown task, on class/score outputs that do not fit
/// the task, and on empty or length-mismatched inputs.
pub fn glue_metrics(task: &str, preds: &Outputs, labels: &Outputs) -> Result<BTreeMap<String, f64>> {
    check_task(task)?;
    ensure!(preds.len() == labels.len(), "{task}: {} predictions for {} labels", preds.len(), labels.len());
    ensure!(preds.len() > 0, "{task}: no examples to score");
    let mut out = BTreeMap::new();
    match (task, preds, labels) {
        ("stsb", Outputs::Scores(p), Outputs::Scores(l)) => {
            let (r, rho) = (pearson(p, l), spearman(p, l));
            out.insert("pearson".to_string(), r);
            out.insert("spearmanr".to_string(), rho);
            out.insert("combined_score".to_string(), (r + rho) / 2.0);
        }
        ("stsb", _, _) => bail!("stsb is a regression task: predictions and labels must be scores"),
        (_, Outputs::Classes(p), Outputs::Classes(l)) => match task {
            "cola" => {
                out.insert("matthews_correlation".to_string(), matthews_corrcoef(p, l));
            }
            "mrpc" | "qqp" => {
                let (acc, f) = (accuracy(p, l), f1(p, l, 1));
                out.insert("accuracy".to_string(), acc);
                out.insert("f1".to_string(), f);
                out.insert("combined_score".to_string(), (acc + f) / 2.0);
            }
            _ => {
                out.insert("accuracy".to_string(), accuracy(p, l));
            }
        },
        _ => bail!("{task} is a classification task: predictions and labels must be classes"),
    }
    Ok(out)
}

/// The key of `glue_metrics`' map that is the task's main score: the one used to pick the best
/// dev checkpoint and reported in the paper's table. cola -> matthews_correlation (Mcc);
/// stsb -> combined_score (mean of Pearson and Spearman, the paper's "Corr"); every other task,
/// MRPC and QQP included, -> accuracy (the paper's MRPC and QQP columns are accuracy; F1 is
/// still recorded). For MNLI the matched set (`mnli`) selects the checkpoint and `mnli_mm` is
/// read at the same step.
pub fn main_metric(task: &str) -> Result<&'static str> {
    check_task(task)?;
    Ok(match task {
        "cola" => "matthews_correlation",
        "stsb" => "combined_score",
        _ => "accuracy",
    })
}

/// The main score (see `main_metric`) out of a `glue_metrics` map.
pub fn main_score(task: &str, metrics: &BTreeMap<String, f64>) -> Result<f64> {
    let key = main_metric(task)?;
    match metrics.get(key) {
        Some(&v) => Ok(v),
        None => bail!("{task}: metrics lack its main score `{key}`"),
    }
}

fn check_task(task: &str) -> Result<()> {
    ensure!(GLUE_TASKS.contains(&task), "unknown GLUE task `{task}` (expected one of {})", GLUE_TASKS.join(", "));
    Ok(())
}

// "All Avg"
// ---------------------------------------------------------------------------------------------

/// Keys `all_average` reads, one per published column: MNLI matched / mismatched accuracy,
/// SST-2 accuracy, CoLA Mcc, QQP accuracy and F1, QNLI accuracy, RTE accuracy, MRPC accuracy,
/// STS-B Pearson and Spearman. All fractions.
pub const ALL_AVG_KEYS: [&str; 11] =
    ["mnli_m", "mnli_mm", "sst2", "cola", "qqp_acc", "qqp_f1", "qnli", "rte", "mrpc", "stsb_pearson", "stsb_spearman"];

/// The GLUE table's "All Avg" (README, "triadapt table"): the mean over the 8 GLUE tasks of one score each, where MNLI is
/// mean(m, mm), QQP is mean(acc, F1), STS-B is mean(Pearson, Spearman) ("Corr"), MRPC is acc,
/// CoLA is Mcc and the others are acc. Summed in the order MNLI, SST-2, CoLA, QQP, QNLI, RTE,
/// MRPC, STS-B, then divided by 8. Reads the keys in `ALL_AVG_KEYS` (fractions; other keys are
/// ignored) and errors naming every missing key, or a key whose value is not finite.
pub fn all_average(scores: &BTreeMap<String, f64>) -> Result<f64> {
    let missing: Vec<&str> = ALL_AVG_KEYS.iter().copied().filter(|k| !scores.contains_key(*k)).collect();
    ensure!(missing.is_empty(), "All Avg needs scores for: {}", missing.join(", "));
    let get = |k: &str| -> Result<f64> {
        let v = scores[k];
        ensure!(v.is_finite(), "All Avg: score `{k}` is not finite ({v})");
        Ok(v)
    };
    let tasks = [
        (get("mnli_m")? + get("mnli_mm")?) / 2.0,
        get("sst2")?,
        get("cola")?,
        (get("qqp_acc")? + get("qqp_f1")?) / 2.0,
        get("qnli")?,
        get("rte")?,
        get("mrpc")?,
        (get("stsb_pearson")? + get("stsb_spearman")?) / 2.0,
    ];
    Ok(tasks.iter().sum::<f64>() / tasks.len() as f64)
}

/// The `all_average` entries one task's `glue_metrics` map contributes, so that the table code
/// can merge the maps of all tasks: mnli -> mnli_m, mnli_mm -> mnli_mm, qqp -> qqp_acc and
/// qqp_f1, stsb -> stsb_pearson and stsb_spearman, cola -> cola (Mcc), others -> task (accuracy).
pub fn all_average_inputs(task: &str, metrics: &BTreeMap<String, f64>) -> Result<BTreeMap<String, f64>> {
    check_task(task)?;
    let pairs: &[(&str, &str)] = match task {
        "mnli" => &[("mnli_m", "accuracy")],
        "qqp" => &[("qqp_acc", "accuracy"), ("qqp_f1", "f1")],
        "stsb" => &[("stsb_pearson", "pearson"), ("stsb_spearman", "spearmanr")],
        "cola" => &[("cola", "matthews_correlation")],
        _ => &[("", "accuracy")],
    };
    let mut out = BTreeMap::new();
    for &(key, metric) in pairs {
        let key = if key.is_empty() { task } else { key };
        match metrics.get(metric) {
            Some(&v) => out.insert(key.to_string(), v),
            None => bail!("{task}: metrics lack `{metric}`"),
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_util::{close, map};

    #[test]
    fn glue_metric_names_and_main_scores() {
        let c = |v: &[i64]| Outputs::Classes(v.to_vec());
        let m = glue_metrics("cola", &c(&[1, -1, 1, 1]), &c(&[1, 1, 1, -1])).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["matthews_correlation"]);
        close(m["matthews_correlation"], -1.0 / 3.0);

        // mrpc: acc 3/5, f1 = 4/6 (see f1_binary_and_zero_division), combined = mean.
        let m = glue_metrics("mrpc", &c(&[1, 1, 0, 1, 0]), &c(&[1, 0, 0, 1, 1])).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["accuracy", "combined_score", "f1"]);
        close(m["accuracy"], 0.6);
        close(m["f1"], 4.0 / 6.0);
        close(m["combined_score"], (0.6 + 4.0 / 6.0) / 2.0);
        close(main_score("mrpc", &m).unwrap(), 0.6);

        for task in ["sst2", "mnli", "mnli_mm", "qnli", "rte"] {
            let m = glue_metrics(task, &c(&[0, 1, 2, 2]), &c(&[0, 1, 2, 1])).unwrap();
            assert_eq!(m.keys().collect::<Vec<_>>(), ["accuracy"]);
            close(main_score(task, &m).unwrap(), 0.75);
        }

        let s = |v: &[f64]| Outputs::Scores(v.to_vec());
        let m = glue_metrics("stsb", &s(&[1.0, 2.0, 2.0, 3.0]), &s(&[1.0, 3.0, 2.0, 4.0])).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["combined_score", "pearson", "spearmanr"]);
        // pearson: dx=(-1,0,0,1), dy=(-1.5,0.5,-0.5,1.5): sxy=3, sxx=2, syy=5 -> 3/sqrt(10).
        close(m["pearson"], 3.0 / 10f64.sqrt());
        close(m["spearmanr"], 0.9f64.sqrt());
        close(main_score("stsb", &m).unwrap(), (3.0 / 10f64.sqrt() + 0.9f64.sqrt()) / 2.0);

        assert_eq!(main_metric("cola").unwrap(), "matthews_correlation");
        assert_eq!(main_metric("qqp").unwrap(), "accuracy");
        assert!(glue_metrics("wnli", &c(&[1]), &c(&[1])).unwrap_err().to_string().contains("wnli"));
        assert!(glue_metrics("stsb", &c(&[1]), &c(&[1])).is_err());
        assert!(glue_metrics("rte", &s(&[1.0]), &s(&[1.0])).is_err());
        assert!(glue_metrics("rte", &c(&[1, 0]), &c(&[1])).is_err());
        assert!(glue_metrics("rte", &c(&[]), &c(&[])).is_err());
    }

    #[test]
    fn all_average_hand_value_and_missing_keys() {
        let scores = map(&[
            ("mnli_m", 0.90),
            ("mnli_mm", 0.92),
            ("sst2", 0.95),
            ("cola", 0.70),
            ("qqp_acc", 0.91),
            ("qqp_f1", 0.89),
            ("qnli", 0.94),
            ("rte", 0.88),
            ("mrpc", 0.90),
            ("stsb_pearson", 0.92),
            ("stsb_spearman", 0.90),
            ("mrpc_f1", 0.0), // ignored
        ]);
        // Task scores 0.91, 0.95, 0.70, 0.90, 0.94, 0.88, 0.90, 0.91: sum 7.09 -> 0.88625.
        close(all_average(&scores).unwrap(), 0.88625);

        let mut partial = scores.clone();
        partial.remove("qqp_f1");
        partial.remove("rte");
        let err = all_average(&partial).unwrap_err().to_string();
        assert!(err.contains("qqp_f1") && err.contains("rte"), "{err}");
        let mut nan = scores.clone();
        nan.insert("stsb_pearson".into(), f64::NAN);
        assert!(all_average(&nan).unwrap_err().to_string().contains("stsb_pearson"));

        // The same average assembled from per-task glue_metrics maps.
        let mut merged = BTreeMap::new();
        let per_task = [
            ("mnli", map(&[("accuracy", 0.90)])),
            ("mnli_mm", map(&[("accuracy", 0.92)])),
            ("sst2", map(&[("accuracy", 0.95)])),
            ("cola", map(&[("matthews_correlation", 0.70)])),
            ("qqp", map(&[("accuracy", 0.91), ("f1", 0.89), ("combined_score", 0.90)])),
            ("qnli", map(&[("accuracy", 0.94)])),
            ("rte", map(&[("accuracy", 0.88)])),
            ("mrpc", map(&[("accuracy", 0.90), ("f1", 0.5), ("combined_score", 0.7)])),
            ("stsb", map(&[("pearson", 0.92), ("spearmanr", 0.90), ("combined_score", 0.91)])),
        ];
        for (task, m) in &per_task {
            merged.extend(all_average_inputs(task, m).unwrap());
        }
        assert_eq!(merged.keys().count(), ALL_AVG_KEYS.len());
        close(all_average(&merged).unwrap(), 0.88625);
        assert!(all_average_inputs("qqp", &map(&[("accuracy", 0.9)])).is_err());
    }
}
