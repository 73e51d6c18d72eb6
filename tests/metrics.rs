//! Metrics against their references (fixture from scripts/metrics_oracle.py): sklearn's
//! accuracy / F1 / Matthews, scipy's Pearson / Spearman, HF's GLUE metric, and a faithful
//! re-implementation of the official SQuAD v2.0 evaluation.
//!
//! Tolerance 1e-12 everywhere. Accuracy, F1, Matthews and the SQuAD scores perform the same
//! float operations as the references and come out bit-identical; the correlations differ from
//! scipy only in summation order (numpy's pairwise sums, BLAS norms), about 1e-16.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use triadapt::metrics::*;

const TOL: f64 = 1e-12;

#[derive(Deserialize)]
struct Fixture {
    classification: Vec<ClassCase>,
    regression: Vec<RegCase>,
    glue: Vec<GlueCase>,
    squad_pairs: Vec<SquadPair>,
    squad_eval: Vec<SquadEvalCase>,
}

#[derive(Deserialize)]
struct ClassCase {
    name: String,
    preds: Vec<i64>,
    labels: Vec<i64>,
    positive: i64,
    accuracy: f64,
    f1: f64,
    matthews_corrcoef: f64,
}

#[derive(Deserialize)]
struct RegCase {
    name: String,
    x: Vec<f64>,
    y: Vec<f64>,
    /// None where scipy returns NaN.
    pearson: Option<f64>,
    spearman: Option<f64>,
}

#[derive(Deserialize)]
struct GlueCase {
    task: String,
    preds: Outputs,
    labels: Outputs,
    metrics: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
struct SquadPair {
    gold: String,
    pred: String,
    normalized_gold: String,
    normalized_pred: String,
    gold_tokens: Vec<String>,
    exact: f64,
    f1: f64,
}

#[derive(Deserialize)]
struct SquadEvalCase {
    name: String,
    gold: Vec<SquadGold>,
    preds: BTreeMap<String, String>,
    na_probs: Option<BTreeMap<String, f64>>,
    na_prob_thresh: f64,
    scores: SquadScores,
}

fn fixture() -> Fixture {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics/cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn check(what: &str, ours: f64, reference: f64) {
    assert!((ours - reference).abs() <= TOL, "{what}: ours {ours}, reference {reference}");
}

fn check_opt(what: &str, ours: f64, reference: Option<f64>) {
    match reference {
        Some(r) => check(what, ours, r),
        None => assert!(ours.is_nan(), "{what}: ours {ours}, reference NaN"),
    }
}

#[test]
fn classification_matches_sklearn() {
    let f = fixture();
    assert!(f.classification.len() >= 10);
    for c in &f.classification {
        check(&format!("{} accuracy", c.name), accuracy(&c.preds, &c.labels), c.accuracy);
        check(&format!("{} f1", c.name), f1(&c.preds, &c.labels, c.positive), c.f1);
        check(&format!("{} mcc", c.name), matthews_corrcoef(&c.preds, &c.labels), c.matthews_corrcoef);
    }
}

#[test]
fn correlations_match_scipy() {
    let f = fixture();
    assert!(f.regression.len() >= 6);
    for c in &f.regression {
        check_opt(&format!("{} pearson", c.name), pearson(&c.x, &c.y), c.pearson);
        check_opt(&format!("{} spearman", c.name), spearman(&c.x, &c.y), c.spearman);
    }
}

#[test]
fn glue_metrics_match_hf() {
    for c in &fixture().glue {
        let ours = glue_metrics(&c.task, &c.preds, &c.labels).unwrap();
        assert_eq!(ours.keys().collect::<Vec<_>>(), c.metrics.keys().collect::<Vec<_>>(), "{} metric names", c.task);
        for (k, &v) in &c.metrics {
            check(&format!("{} {k}", c.task), ours[k], v);
        }
    }
}

#[test]
fn squad_answer_scores_match_official() {
    let f = fixture();
    for c in &f.squad_pairs {
        let what = format!("gold {:?} pred {:?}", c.gold, c.pred);
        assert_eq!(normalize_answer(&c.gold), c.normalized_gold, "{what}: normalised gold");
        assert_eq!(normalize_answer(&c.pred), c.normalized_pred, "{what}: normalised pred");
        assert_eq!(get_tokens(&c.gold), c.gold_tokens, "{what}: gold tokens");
        assert_eq!(compute_exact(&c.gold, &c.pred), c.exact, "{what}: exact");
        check(&format!("{what}: f1"), compute_f1(&c.gold, &c.pred), c.f1);
    }
}

#[test]
fn squad_eval_matches_official() {
    for c in &fixture().squad_eval {
        let ours = squad_v2_eval(&c.preds, &c.gold, c.na_probs.as_ref(), c.na_prob_thresh).unwrap();
        let r = &c.scores;
        let n = &c.name;
        check(&format!("{n} exact"), ours.exact, r.exact);
        check(&format!("{n} f1"), ours.f1, r.f1);
        assert_eq!((ours.total, ours.has_ans_total, ours.no_ans_total), (r.total, r.has_ans_total, r.no_ans_total), "{n} totals");
        for (what, o, e) in [
            ("HasAns_exact", ours.has_ans_exact, r.has_ans_exact),
            ("HasAns_f1", ours.has_ans_f1, r.has_ans_f1),
            ("NoAns_exact", ours.no_ans_exact, r.no_ans_exact),
            ("NoAns_f1", ours.no_ans_f1, r.no_ans_f1),
        ] {
            match (o, e) {
                (Some(o), Some(e)) => check(&format!("{n} {what}"), o, e),
                (None, None) => {}
                _ => panic!("{n} {what}: ours {o:?}, official {e:?}"),
            }
        }
    }
}
