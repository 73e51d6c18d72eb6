//! The primitive scores behind HF's GLUE metric, as sklearn and scipy compute them: accuracy,
//! F1, Matthews correlation, Pearson and Spearman correlation.

use std::collections::BTreeMap;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_util::close;

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
}
