//! Evaluation metrics (spec section 5): the classification and correlation scores behind HF's
//! GLUE metric, each task's named metrics and main score, the "All Avg" aggregate, and the
//! official SQuAD v2.0 evaluation (`evaluate-v2.0.py`).
//!
//! Everything is a pure function on plain data so that results can be checked against the
//! reference implementations (sklearn, scipy, the official SQuAD script): see
//! `tests/metrics.rs` and `tests/fixtures/metrics/README.md`.
//!
//! Units: GLUE metrics and "All Avg" are fractions in [0, 1] (correlations in [-1, 1]); tables
//! multiply by 100. SQuAD scores are percentages, because the official script reports them so.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Primitive scores
// ---------------------------------------------------------------------------------------------

/// Fraction of positions where `preds[i] == labels[i]` (sklearn `accuracy_score`). NaN for empty
/// input, as sklearn returns.
///
/// # Panics
/// If the lengths differ (a caller bug, not a data condition).
pub fn accuracy(preds: &[i64], labels: &[i64]) -> f64 {
    assert_eq!(preds.len(), labels.len(), "accuracy: preds and labels differ in length");
    let correct = preds.iter().zip(labels).filter(|(p, l)| p == l).count();
    correct as f64 / preds.len() as f64
}

/// F1 of the class `positive` against all others: 2 tp / (2 tp + fp + fn), computed as sklearn
/// does (`2.0 * tp / (true_sum + pred_sum)`, bit-identical). 0.0 when `positive` occurs in
/// neither preds nor labels (sklearn's zero-division result). Equals sklearn's
/// `f1_score(labels, preds, pos_label=positive)` on binary data and its one-vs-rest per-class
/// F1 on multiclass data (where sklearn's `average="binary"` would refuse).
///
/// # Panics
/// If the lengths differ.
pub fn f1(preds: &[i64], labels: &[i64], positive: i64) -> f64 {
    assert_eq!(preds.len(), labels.len(), "f1: preds and labels differ in length");
    let tp = preds.iter().zip(labels).filter(|&(&p, &l)| p == positive && l == positive).count();
    let true_sum = labels.iter().filter(|&&l| l == positive).count();
    let pred_sum = preds.iter().filter(|&&p| p == positive).count();
    let denom = true_sum as f64 + pred_sum as f64;
    if denom == 0.0 {
        return 0.0;
    }
    2.0 * tp as f64 / denom
}

/// Matthews correlation coefficient, sklearn's multiclass formula (Gorodkin's R_K):
/// `(c n - t.p) / sqrt((n^2 - p.p)(n^2 - t.t))` with t, p the per-class true / predicted counts
/// and c the number correct. 0.0 when the denominator is 0 (e.g. a constant prediction), as
/// sklearn returns; 0.0 for empty input. All intermediate values are integers held exactly in
/// f64, so the result is bit-identical to sklearn's.
///
/// # Panics
/// If the lengths differ.
pub fn matthews_corrcoef(preds: &[i64], labels: &[i64]) -> f64 {
    assert_eq!(preds.len(), labels.len(), "matthews_corrcoef: preds and labels differ in length");
    // class -> (true count, predicted count)
    let mut counts: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    let mut n_correct = 0u64;
    for (&p, &l) in preds.iter().zip(labels) {
        counts.entry(l).or_default().0 += 1;
        counts.entry(p).or_default().1 += 1;
        n_correct += u64::from(p == l);
    }
    let n = preds.len() as f64;
    let (mut tp_dot, mut pp_dot, mut tt_dot) = (0.0f64, 0.0f64, 0.0f64);
    for &(t, p) in counts.values() {
        tp_dot += t as f64 * p as f64;
        pp_dot += p as f64 * p as f64;
        tt_dot += t as f64 * t as f64;
    }
    let cov_ytyp = n_correct as f64 * n - tp_dot;
    let cov_ypyp = n * n - pp_dot;
    let cov_ytyt = n * n - tt_dot;
    let denom = cov_ypyp * cov_ytyt;
    if denom == 0.0 {
        return 0.0;
    }
    cov_ytyp / denom.sqrt()
}

/// Pearson's r (scipy `pearsonr(x, y).statistic`), clipped to [-1, 1] as scipy does. NaN when
/// either input is constant (scipy warns and returns NaN), when fewer than 2 points are given
/// (scipy raises), or when an input holds NaN. Two-pass formula; agrees with scipy to ~1e-15.
///
/// # Panics
/// If the lengths differ.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "pearson: x and y differ in length");
    if x.len() < 2 || is_constant(x) || is_constant(y) {
        return f64::NAN;
    }
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0f64, 0.0f64, 0.0f64);
    for (&a, &b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)
}

/// Spearman's rho (scipy `spearmanr(x, y).statistic`): Pearson's r of the average ranks (ties
/// share the mean of the ranks they span). NaN for constant input, fewer than 2 points or any
/// NaN, as scipy returns.
///
/// # Panics
/// If the lengths differ.
pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "spearman: x and y differ in length");
    if x.len() < 2 || x.iter().chain(y).any(|v| v.is_nan()) || is_constant(x) || is_constant(y) {
        return f64::NAN;
    }
    pearson(&rank_average(x), &rank_average(y))
}

/// 1-based ranks with ties given the average of the ranks they span (scipy
/// `rankdata(method="average")`). Values must not be NaN (they would be ranked last).
pub fn rank_average(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && x[order[end]] == x[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Whether every value equals the first (scipy's constant-input test).
fn is_constant(x: &[f64]) -> bool {
    x.iter().all(|&v| v == x[0])
}

// ---------------------------------------------------------------------------------------------
// GLUE task metrics
// ---------------------------------------------------------------------------------------------

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
pub const GLUE_TASKS: [&str; 9] =
    ["cola", "mnli", "mnli_mm", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb"];

/// The named metrics HF's `glue` metric returns for `task`, plus `combined_score` (their mean,
/// as transformers' `run_glue.py` adds) where there are two:
/// cola {matthews_correlation}; sst2, mnli, mnli_mm, qnli, rte {accuracy};
/// mrpc, qqp {accuracy, f1 (positive class 1), combined_score};
/// stsb {pearson, spearmanr, combined_score}.
/// Fractions, not percentages. Errors on an unknown task, on class/score outputs that do not fit
/// the task, and on empty or length-mismatched inputs.
pub fn glue_metrics(task: &str, preds: &Outputs, labels: &Outputs) -> Result<BTreeMap<String, f64>> {
    check_task(task)?;
    ensure!(
        preds.len() == labels.len(),
        "{task}: {} predictions for {} labels",
        preds.len(),
        labels.len()
    );
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
    ensure!(
        GLUE_TASKS.contains(&task),
        "unknown GLUE task `{task}` (expected one of {})",
        GLUE_TASKS.join(", ")
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// "All Avg"
// ---------------------------------------------------------------------------------------------

/// Keys `all_average` reads, one per published column: MNLI matched / mismatched accuracy,
/// SST-2 accuracy, CoLA Mcc, QQP accuracy and F1, QNLI accuracy, RTE accuracy, MRPC accuracy,
/// STS-B Pearson and Spearman. All fractions.
pub const ALL_AVG_KEYS: [&str; 11] = [
    "mnli_m",
    "mnli_mm",
    "sst2",
    "cola",
    "qqp_acc",
    "qqp_f1",
    "qnli",
    "rte",
    "mrpc",
    "stsb_pearson",
    "stsb_spearman",
];

/// Spec section 5's "All Avg": the mean over the 8 GLUE tasks of one score each, where MNLI is
/// mean(m, mm), QQP is mean(acc, F1), STS-B is mean(Pearson, Spearman) ("Corr"), MRPC is acc,
/// CoLA is Mcc and the others are acc. Summed in the order MNLI, SST-2, CoLA, QQP, QNLI, RTE,
/// MRPC, STS-B, then divided by 8. Reads the keys in `ALL_AVG_KEYS` (fractions; other keys are
/// ignored) and errors naming every missing key, or a key whose value is not finite.
pub fn all_average(scores: &BTreeMap<String, f64>) -> Result<f64> {
    let missing: Vec<&str> =
        ALL_AVG_KEYS.iter().copied().filter(|k| !scores.contains_key(*k)).collect();
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

// ---------------------------------------------------------------------------------------------
// SQuAD v2.0 (the official evaluate-v2.0.py)
// ---------------------------------------------------------------------------------------------

/// The official script's default `--na-prob-thresh`.
pub const SQUAD_NA_PROB_THRESH: f64 = 1.0;

/// Python's `str.isspace` (what `str.split()` splits on): Unicode White_Space plus the ASCII
/// separators U+001C..U+001F, which Python counts and Rust's `char::is_whitespace` does not.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python 3's `\w` on `str`, approximated by `char::is_alphanumeric() || '_'`. Python's `\w` is
/// letters (L*), numbers (N*) and `_`; Rust's alphabetic also admits Other_Alphabetic marks
/// (Mn/Mc such as U+0345, Hebrew points, Indic vowel signs) and circled letters (So), and newer
/// Unicode versions assign more characters. Only an article glued to such a character without a
/// separator is affected (Python would remove it, we keep it).
fn is_py_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replace every maximal run of word characters equal to `a`, `an` or `the` by one space: exactly
/// what Python's `re.sub(r'\b(a|an|the)\b', ' ', text)` does, since a match must start and end
/// at word boundaries.
fn remove_articles(text: &str) -> String {
    fn flush(out: &mut String, run: &str) {
        if matches!(run, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut run_start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if is_py_word(c) {
            run_start.get_or_insert(i);
        } else {
            if let Some(s) = run_start.take() {
                flush(&mut out, &text[s..i]);
            }
            out.push(c);
        }
    }
    if let Some(s) = run_start {
        flush(&mut out, &text[s..]);
    }
    out
}

/// The official `normalize_answer`: lower-case (full Unicode lowering, like Python's
/// `str.lower`, final sigma included), drop ASCII punctuation (`string.punctuation`; Unicode
/// punctuation such as `’`, `—`, `¿` stays), replace the whole words a/an/the by a space, and
/// collapse whitespace (Python's definition) to single spaces. Unicode-version differences
/// between Python's and Rust's case tables affect only recently added characters.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punc: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = remove_articles(&no_punc);
    no_articles.split(is_py_space).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The official `get_tokens`: the normalised answer split on whitespace; empty for "".
pub fn get_tokens(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    normalize_answer(s).split(is_py_space).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// The official `compute_exact`: 1.0 if the normalised strings are equal, else 0.0.
pub fn compute_exact(gold: &str, pred: &str) -> f64 {
    f64::from(u8::from(normalize_answer(gold) == normalize_answer(pred)))
}

/// The official `compute_f1`: token-overlap F1 with multiset intersection. If either side has no
/// tokens (a no-answer), 1.0 when both have none, else 0.0. Same float operations as the script.
pub fn compute_f1(gold: &str, pred: &str) -> f64 {
    let gold_toks = get_tokens(gold);
    let pred_toks = get_tokens(pred);
    if gold_toks.is_empty() || pred_toks.is_empty() {
        return f64::from(u8::from(gold_toks == pred_toks));
    }
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold_toks {
        *gold_counts.entry(t).or_default() += 1;
    }
    let mut num_same = 0usize;
    for t in &pred_toks {
        if let Some(c) = gold_counts.get_mut(t.as_str()) {
            if *c > 0 {
                *c -= 1;
                num_same += 1;
            }
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = 1.0 * num_same as f64 / pred_toks.len() as f64;
    let recall = 1.0 * num_same as f64 / gold_toks.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// One SQuAD v2.0 dev question: its id and gold answer texts (empty for unanswerable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SquadGold {
    pub id: String,
    pub answers: Vec<String>,
}

/// The official script's output, in percent; serialised with its key names. The HasAns / NoAns
/// scores are `None` (and omitted) when the dev set has no question of that kind, as the script
/// omits them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SquadScores {
    pub exact: f64,
    pub f1: f64,
    pub total: usize,
    #[serde(rename = "HasAns_exact", skip_serializing_if = "Option::is_none")]
    pub has_ans_exact: Option<f64>,
    #[serde(rename = "HasAns_f1", skip_serializing_if = "Option::is_none")]
    pub has_ans_f1: Option<f64>,
    #[serde(rename = "HasAns_total")]
    pub has_ans_total: usize,
    #[serde(rename = "NoAns_exact", skip_serializing_if = "Option::is_none")]
    pub no_ans_exact: Option<f64>,
    #[serde(rename = "NoAns_f1", skip_serializing_if = "Option::is_none")]
    pub no_ans_f1: Option<f64>,
    #[serde(rename = "NoAns_total")]
    pub no_ans_total: usize,
}

/// The official SQuAD v2.0 evaluation. Per question: the gold answers are those whose
/// normalised text is non-empty (`[""]` if none), EM and F1 are maxima over them; then, as
/// `apply_no_ans_threshold`, if the question's no-answer probability exceeds `na_prob_thresh`
/// both scores become 1 for an unanswerable question and 0 for an answerable one. Without
/// `na_probs` every probability is 0.0, as the script assumes (so with the default threshold 1.0
/// the raw scores stand). "Answerable" means the raw answer list is non-empty, as the script's
/// `qid_to_has_ans`. Scores are summed in `gold` order and reported as `100 * sum / count`.
///
/// Where the script would crash or silently drop questions this errors instead: empty `gold`,
/// duplicate ids, a question without a prediction (the script skips it for the totals, then
/// fails in the HasAns/NoAns breakdown), or `na_probs` lacking a question. Predictions for ids
/// not in `gold` are ignored, as by the script.
pub fn squad_v2_eval(
    preds: &BTreeMap<String, String>,
    gold: &[SquadGold],
    na_probs: Option<&BTreeMap<String, f64>>,
    na_prob_thresh: f64,
) -> Result<SquadScores> {
    ensure!(!gold.is_empty(), "SQuAD evaluation: no gold questions");
    let mut seen = HashSet::new();
    let mut missing = Vec::new();
    for g in gold {
        ensure!(seen.insert(g.id.as_str()), "SQuAD evaluation: duplicate question id `{}`", g.id);
        if !preds.contains_key(&g.id) {
            missing.push(g.id.as_str());
        }
    }
    ensure!(
        missing.is_empty(),
        "SQuAD evaluation: {} question(s) without a prediction, e.g. `{}`",
        missing.len(),
        missing[..missing.len().min(5)].join("`, `")
    );

    // (exact, f1) sums over all / answerable / unanswerable questions, and the two counts.
    let (mut all, mut has, mut no) = ((0.0f64, 0.0f64), (0.0f64, 0.0f64), (0.0f64, 0.0f64));
    let (mut n_has, mut n_no) = (0usize, 0usize);
    for g in gold {
        let pred = &preds[&g.id];
        let has_ans = !g.answers.is_empty();
        let mut golds: Vec<&str> =
            g.answers.iter().map(String::as_str).filter(|a| !normalize_answer(a).is_empty()).collect();
        if golds.is_empty() {
            golds.push("");
        }
        let mut exact = golds.iter().map(|a| compute_exact(a, pred)).fold(f64::NEG_INFINITY, f64::max);
        let mut f1 = golds.iter().map(|a| compute_f1(a, pred)).fold(f64::NEG_INFINITY, f64::max);
        let na_prob = match na_probs {
            None => 0.0,
            Some(m) => match m.get(&g.id) {
                Some(&p) => p,
                None => bail!("SQuAD evaluation: no no-answer probability for `{}`", g.id),
            },
        };
        if na_prob > na_prob_thresh {
            let v = if has_ans { 0.0 } else { 1.0 };
            exact = v;
            f1 = v;
        }
        all.0 += exact;
        all.1 += f1;
        if has_ans {
            has.0 += exact;
            has.1 += f1;
            n_has += 1;
        } else {
            no.0 += exact;
            no.1 += f1;
            n_no += 1;
        }
    }
    let pct = |sum: f64, n: usize| 100.0 * sum / n as f64;
    let sub = |sum: f64, n: usize| (n > 0).then(|| pct(sum, n));
    Ok(SquadScores {
        exact: pct(all.0, gold.len()),
        f1: pct(all.1, gold.len()),
        total: gold.len(),
        has_ans_exact: sub(has.0, n_has),
        has_ans_f1: sub(has.1, n_has),
        has_ans_total: n_has,
        no_ans_exact: sub(no.0, n_no),
        no_ans_f1: sub(no.1, n_no),
        no_ans_total: n_no,
    })
}

// ---------------------------------------------------------------------------------------------
// Tests: small hand-computed cases (the sklearn/scipy/official-script oracle is tests/metrics.rs)
// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
    }

    #[test]
    fn accuracy_counts_matches() {
        // 3 of 4 equal.
        assert_eq!(accuracy(&[1, 0, 1, 1], &[1, 0, 0, 1]), 0.75);
        assert!(accuracy(&[], &[]).is_nan());
    }

    #[test]
    fn f1_binary_and_zero_division() {
        // preds [1,1,0,1,0], labels [1,0,0,1,1]: tp=2, fp=1, fn=1 -> 2*2/(2*2+1+1) = 4/6.
        close(f1(&[1, 1, 0, 1, 0], &[1, 0, 0, 1, 1], 1), 4.0 / 6.0);
        // Positive class 0: tp=1 (index 2), fp=1 (index 4), fn=1 (index 1) -> 2/4.
        close(f1(&[1, 1, 0, 1, 0], &[1, 0, 0, 1, 1], 0), 0.5);
        // No positives anywhere: sklearn's zero-division value 0.0.
        assert_eq!(f1(&[0, 0], &[0, 0], 1), 0.0);
        // Never predicted positive: tp=0 -> 0.
        assert_eq!(f1(&[0, 0, 0], &[1, 0, 1], 1), 0.0);
        // Multiclass, one-vs-rest for class 2: tp=1, fp=1, fn=1 -> 0.5.
        close(f1(&[2, 2, 0, 1], &[2, 1, 2, 1], 2), 0.5);
    }

    #[test]
    fn matthews_binary_multiclass_degenerate() {
        // sklearn's doc example: y_true [1,1,1,-1], y_pred [1,-1,1,1].
        // n=4, c=2, t=(1 for -1, 3 for 1), p=(1, 3): cov_tp = 2*4 - (1+9) = -2,
        // cov_pp = cov_tt = 16 - 10 = 6 -> -2/6 = -1/3.
        close(matthews_corrcoef(&[1, -1, 1, 1], &[1, 1, 1, -1]), -1.0 / 3.0);
        // 3 classes, labels [0,1,2,0,1,2], preds [0,2,2,0,1,1]: c=4, t=p=(2,2,2):
        // cov_tp = 4*6 - 12 = 12, cov_pp = cov_tt = 36 - 12 = 24 -> 12/24 = 0.5.
        close(matthews_corrcoef(&[0, 2, 2, 0, 1, 1], &[0, 1, 2, 0, 1, 2]), 0.5);
        // Constant prediction: cov_pp = n^2 - n^2 = 0 -> 0.0.
        assert_eq!(matthews_corrcoef(&[1, 1, 1], &[0, 1, 1]), 0.0);
        assert_eq!(matthews_corrcoef(&[], &[]), 0.0);
        close(matthews_corrcoef(&[0, 1, 0, 1], &[0, 1, 0, 1]), 1.0);
        close(matthews_corrcoef(&[1, 0, 1, 0], &[0, 1, 0, 1]), -1.0);
    }

    #[test]
    fn pearson_hand_values() {
        // x=[1,2,3], y=[1,3,2]: dx=(-1,0,1), dy=(-1,1,0): sxy=1, sxx=syy=2 -> 0.5.
        close(pearson(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]), 0.5);
        close(pearson(&[1.0, 2.0], &[5.0, 3.0]), -1.0);
        // Affine maps keep |r| = 1.
        close(pearson(&[0.5, 1.5, 4.0, 7.0], &[2.0, 4.0, 9.0, 15.0]), 1.0);
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
        assert!(pearson(&[1.0], &[2.0]).is_nan());
    }

    #[test]
    fn spearman_average_ranks_for_ties() {
        assert_eq!(rank_average(&[10.0, 20.0, 10.0, 30.0]), vec![1.5, 3.0, 1.5, 4.0]);
        assert_eq!(rank_average(&[3.0, 1.0, 2.0]), vec![3.0, 1.0, 2.0]);
        // x=[1,2,2,3] -> ranks (1,2.5,2.5,4), mean 2.5, d=(-1.5,0,0,1.5), sxx=4.5;
        // y=[1,3,2,4] -> ranks (1,3,2,4), d=(-1.5,0.5,-0.5,1.5), syy=5;
        // sxy = 2.25 + 2.25 = 4.5 -> 4.5 / sqrt(4.5*5) = sqrt(0.9).
        close(spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]), 0.9f64.sqrt());
        // Monotone but non-linear: rho = 1.
        close(spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 1000.0]), 1.0);
        assert!(spearman(&[2.0, 2.0], &[1.0, 2.0]).is_nan());
        assert!(spearman(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]).is_nan());
    }

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

    #[test]
    fn normalize_answer_like_the_official_script() {
        assert_eq!(normalize_answer("The Cat!"), "cat");
        assert_eq!(normalize_answer("  A  man,  an apple and THE   pear. "), "man apple and pear");
        // Articles only as whole words.
        assert_eq!(normalize_answer("theatre another anthem"), "theatre another anthem");
        // Punctuation goes before articles: "the-cat" -> "thecat" stays one word.
        assert_eq!(normalize_answer("the-cat"), "thecat");
        // '_' is punctuation (removed), and a word character for \b.
        assert_eq!(normalize_answer("a_the"), "athe");
        // Unicode punctuation is kept but is not a word character, so articles next to it go.
        assert_eq!(normalize_answer("the—end ¿a?"), "—end ¿");
        assert_eq!(normalize_answer("l’the"), "l’");
        // Python's whitespace includes U+001F and NBSP.
        assert_eq!(normalize_answer("the\u{1f}cat\u{a0}dog"), "cat dog");
        assert_eq!(normalize_answer("ΟΔΟΣ"), "οδος");
        assert_eq!(get_tokens(""), Vec::<String>::new());
        assert_eq!(get_tokens("the"), Vec::<String>::new());
        assert_eq!(get_tokens("The big dog"), ["big", "dog"]);
    }

    #[test]
    fn exact_and_f1_hand_cases() {
        assert_eq!(compute_exact("cat", "The Cat!"), 1.0);
        assert_eq!(compute_exact("cat", "cats"), 0.0);
        // pred "the big red dog" -> [big, red, dog]; gold "red dog" -> [red, dog]: common 2,
        // precision 2/3, recall 1 -> 2*(2/3)/(5/3) = 0.8.
        close(compute_f1("red dog", "the big red dog"), 0.8);
        // Multiset overlap: gold [dog, dog, cat], pred [dog, dog, dog]: common = min(2, 3) = 2
        // dogs, p = 2/3, r = 2/3 -> 2/3.
        close(compute_f1("dog dog cat", "dog dog dog"), 2.0 / 3.0);
        assert_eq!(compute_f1("red dog", "blue cat"), 0.0);
        // No-answer: both empty -> 1, one empty -> 0.
        assert_eq!(compute_f1("", ""), 1.0);
        assert_eq!(compute_f1("", "x"), 0.0);
        assert_eq!(compute_f1("x", ""), 0.0);
        // An answer that normalises to nothing counts as no-answer.
        assert_eq!(compute_f1("the", ""), 1.0);
    }

    fn gold(id: &str, answers: &[&str]) -> SquadGold {
        SquadGold { id: id.into(), answers: answers.iter().map(|s| s.to_string()).collect() }
    }

    fn preds(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn squad_eval_breakdown() {
        let g = vec![
            gold("q1", &["red dog", "a big red dog"]), // max over golds
            gold("q2", &["Paris"]),
            gold("q3", &[]), // unanswerable
            gold("q4", &[]),
        ];
        let p = preds(&[
            ("q1", "the big red dog"), // gold 2 normalises to "big red dog": EM 1, F1 1
            ("q2", "in Paris"),        // EM 0, F1: p=1/2, r=1 -> 2/3
            ("q3", ""),                // EM 1, F1 1
            ("q4", "x"),               // EM 0, F1 0
            ("extra", "ignored"),
        ]);
        let s = squad_v2_eval(&p, &g, None, SQUAD_NA_PROB_THRESH).unwrap();
        // exact = 100 * (1+0+1+0)/4 = 50; f1 = 100 * (1 + 2/3 + 1 + 0)/4 = 66.67.
        close(s.exact, 50.0);
        close(s.f1, 100.0 * (1.0 + 2.0 / 3.0 + 1.0) / 4.0);
        assert_eq!((s.total, s.has_ans_total, s.no_ans_total), (4, 2, 2));
        close(s.has_ans_exact.unwrap(), 50.0);
        close(s.has_ans_f1.unwrap(), 100.0 * (1.0 + 2.0 / 3.0) / 2.0);
        close(s.no_ans_exact.unwrap(), 50.0);
        close(s.no_ans_f1.unwrap(), 50.0);

        // na probabilities over 0.5 force no-answer: q2 (answerable) -> 0, q4 -> 1.
        let na = map(&[("q1", 0.1), ("q2", 0.9), ("q3", 0.2), ("q4", 0.6)]);
        let s = squad_v2_eval(&p, &g, Some(&na), 0.5).unwrap();
        close(s.exact, 75.0);
        close(s.f1, 75.0);
        close(s.has_ans_f1.unwrap(), 50.0);
        close(s.no_ans_f1.unwrap(), 100.0);
        // Equal to the threshold is not above it.
        let na = map(&[("q1", 0.5), ("q2", 0.5), ("q3", 0.5), ("q4", 0.5)]);
        close(squad_v2_eval(&p, &g, Some(&na), 0.5).unwrap().exact, 50.0);

        // Only answerable questions: NoAns scores absent, and omitted from JSON.
        let s = squad_v2_eval(&p, &g[..2], None, 1.0).unwrap();
        assert_eq!(s.no_ans_exact, None);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"HasAns_exact\":50.0") && !json.contains("NoAns_exact"), "{json}");
        let back: SquadScores = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);

        // Answers that normalise to nothing: gold [""], but still an answerable question.
        let s = squad_v2_eval(&preds(&[("q", "")]), &[gold("q", &["The"])], None, 1.0).unwrap();
        assert_eq!((s.exact, s.has_ans_total), (100.0, 1));
    }

    #[test]
    fn squad_eval_errors() {
        let g = vec![gold("q1", &["x"]), gold("q2", &[])];
        let err = squad_v2_eval(&preds(&[("q1", "x")]), &g, None, 1.0).unwrap_err().to_string();
        assert!(err.contains("q2"), "{err}");
        let p = preds(&[("q1", "x"), ("q2", "")]);
        let na = map(&[("q1", 0.0)]);
        assert!(squad_v2_eval(&p, &g, Some(&na), 1.0).unwrap_err().to_string().contains("q2"));
        let dup = vec![gold("q1", &["x"]), gold("q1", &[])];
        assert!(squad_v2_eval(&p, &dup, None, 1.0).unwrap_err().to_string().contains("duplicate"));
        assert!(squad_v2_eval(&p, &[], None, 1.0).is_err());
    }
}
