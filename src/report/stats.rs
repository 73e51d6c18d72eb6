//! Summary statistics of repeated runs (seeds) and how the table writes them: pure functions,
//! so that every number the table and the figures print can be checked by hand. The table's
//! cells ([`summarize`], [`cell_text`]), the ablation figure's groups (`group_stats`), and the
//! curves' means over runs at each step ([`mean_over_runs`]) and moving means ([`moving_mean`]).

use std::collections::BTreeMap;

/// The summary of a set of values (e.g. one score over the seeds of a setting).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// How many values.
    pub n: usize,
    pub mean: f64,
    /// The sample standard deviation (divisor n - 1); None for a single value.
    pub std: Option<f64>,
    pub min: f64,
    pub max: f64,
}

/// The summary of `values`; None when there are none. Non-finite values are kept (a NaN score
/// makes the mean NaN, so a broken run is not hidden by leaving it out).
pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let std = (n > 1).then(|| (values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(Summary { n, mean, std, min, max })
}

impl Summary {
    /// The same summary in other units (x100 for percent): mean, spread and range scaled.
    pub fn scaled(&self, factor: f64) -> Summary {
        Summary {
            n: self.n,
            mean: self.mean * factor,
            std: self.std.map(|s| s * factor.abs()),
            min: self.min * factor,
            max: self.max * factor,
        }
    }
}

/// Summary statistics of one group's values, as polars' aggregations define them: nulls are
/// left out, `std` is the sample standard deviation (None below two values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GroupStats {
    pub mean: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub std: Option<f64>,
}

pub(crate) fn group_stats(values: impl IntoIterator<Item = Option<f64>>) -> GroupStats {
    let v: Vec<f64> = values.into_iter().flatten().collect();
    match summarize(&v) {
        None => GroupStats { mean: None, min: None, max: None, std: None },
        Some(s) => GroupStats { mean: Some(s.mean), min: Some(s.min), max: Some(s.max), std: s.std },
    }
}

/// The arithmetic mean of `values`; None when there are none.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A line's value at one step, over the runs averaged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanPoint {
    pub step: f64,
    /// Runs with a value at this step.
    pub n: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// The mean, min and max over runs at each step (runs of one setting share their steps; a step
/// only some runs have is averaged over those). Steps in curve.csv are whole numbers.
pub fn mean_over_runs(runs: &[Vec<(f64, f64)>]) -> Vec<MeanPoint> {
    let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for run in runs {
        for &(step, v) in run {
            at.entry(step.round() as i64).or_default().push(v);
        }
    }
    at.into_iter()
        .map(|(step, v)| MeanPoint {
            step: step as f64,
            n: v.len(),
            mean: v.iter().sum::<f64>() / v.len() as f64,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
        .collect()
}

/// Moving mean over `window` points (fewer at the start).
pub fn moving_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let w = window.max(1);
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for i in 0..points.len() {
        sum += points[i].1;
        if i >= w {
            sum -= points[i - w].1;
        }
        let n = (i + 1).min(w);
        out.push((points[i].0, sum / n as f64));
    }
    out
}

/// A mean with its spread as the table prints it, one decimal: `87.9 ± 0.4` (a single value:
/// `87.9`); a non-finite mean is `nan`.
pub fn mean_pm_std(s: &Summary) -> String {
    if !s.mean.is_finite() {
        return "nan".into();
    }
    match s.std {
        Some(sd) if sd.is_finite() => format!("{:.1} ± {:.1}", s.mean, sd),
        _ => format!("{:.1}", s.mean),
    }
}

/// A table cell: `87.9 ± 0.4 (5)`, `87.9 (1)` for one run, `-` for none.
pub fn cell_text(s: Option<&Summary>) -> String {
    match s {
        Some(s) => format!("{} ({})", mean_pm_std(s), s.n),
        None => "-".into(),
    }
}

/// A cell of two scores of one task (MNLI m/mm, QQP acc/F1): `91.0 ± 1.4 / 90.5 ± 0.7 (2)`;
/// the count once where both halves have the same, else both (`(2/1)`); `-` for a missing half.
pub fn pair_text(a: Option<&Summary>, b: Option<&Summary>) -> String {
    let half = |s: Option<&Summary>| s.map_or("-".to_string(), mean_pm_std);
    let n = match (a, b) {
        (None, None) => return "-".into(),
        (Some(a), Some(b)) if a.n == b.n => format!("{}", a.n),
        (a, b) => format!("{}/{}", a.map_or(0, |s| s.n), b.map_or(0, |s| s.n)),
    };
    format!("{} / {} ({n})", half(a), half(b))
}

/// A signed difference with one decimal: `+0.3`, `-1.2`; `-` when either side is missing.
pub fn difference_text(ours: Option<f64>, published: Option<f64>) -> String {
    match (ours, published) {
        (Some(o), Some(p)) if (o - p).is_finite() => format!("{:+.1}", o - p),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn summary_by_hand() {
        // 86, 88, 87, 89, 90: mean 440 / 5 = 88; squared deviations 4 + 0 + 1 + 1 + 4 = 10,
        // sample variance 10 / 4 = 2.5, std sqrt(2.5) = 1.5811388300841898.
        let s = summarize(&[86.0, 88.0, 87.0, 89.0, 90.0]).unwrap();
        assert_eq!((s.n, s.min, s.max), (5, 86.0, 90.0));
        close(s.mean, 88.0);
        close(s.std.unwrap(), 2.5f64.sqrt());
        // Two values 0.90, 0.92: mean 0.91, deviations +-0.01, variance 2e-4 / 1, std 0.01414...
        let s = summarize(&[0.90, 0.92]).unwrap();
        close(s.mean, 0.91);
        close(s.std.unwrap(), 2e-4f64.sqrt());
        // One value: no spread.
        let s = summarize(&[0.5]).unwrap();
        assert_eq!((s.n, s.mean, s.std, s.min, s.max), (1, 0.5, None, 0.5, 0.5));
        assert!(summarize(&[]).is_none());
        // A NaN score is not hidden.
        assert!(summarize(&[0.5, f64::NAN]).unwrap().mean.is_nan());
    }

    #[test]
    fn summary_matches_python_statistics() {
        // Python's statistics.mean / statistics.stdev (and numpy's std with ddof=1) of
        // [0.8713, 0.8801, 0.8658]: 0.8724 and 0.0072131823767321935. By hand: deviations
        // -0.0011, 0.0077, -0.0066; squares sum to 1.0406e-4; / 2 = 5.203e-5; sqrt 0.0072132.
        let s = summarize(&[0.8713, 0.8801, 0.8658]).unwrap();
        close(s.mean, 0.8724);
        assert!((s.std.unwrap() - 0.0072131823767321935).abs() < 1e-15);
    }

    #[test]
    fn means_over_runs_per_step() {
        let m = mean_over_runs(&[vec![(1.0, 1.0), (2.0, 4.0)], vec![(1.0, 3.0), (2.0, 8.0)], vec![(1.0, 2.0)]]);
        assert_eq!(
            m,
            [MeanPoint { step: 1.0, n: 3, mean: 2.0, min: 1.0, max: 3.0 }, MeanPoint { step: 2.0, n: 2, mean: 6.0, min: 4.0, max: 8.0 }]
        );
    }

    #[test]
    fn moving_means_by_hand() {
        let p: Vec<(f64, f64)> = (1..=6).map(|i| (i as f64, i as f64)).collect();
        // Window 3: 1, (1+2)/2, (1+2+3)/3, (2+3+4)/3, (3+4+5)/3, (4+5+6)/3.
        assert_eq!(moving_mean(&p, 3), [(1.0, 1.0), (2.0, 1.5), (3.0, 2.0), (4.0, 3.0), (5.0, 4.0), (6.0, 5.0)]);
        // Window 0 is taken as 1: the points unchanged.
        assert_eq!(moving_mean(&p, 0), p);
    }

    #[test]
    fn means_and_group_stats() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), Some(3.0));
        assert_eq!(mean(&[]), None);
        // Nulls are left out; one value has no spread.
        let g = group_stats([Some(1.0), None, Some(3.0)]);
        assert_eq!((g.mean, g.min, g.max), (Some(2.0), Some(1.0), Some(3.0)));
        assert!((g.std.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(group_stats([Some(0.5)]).std, None);
        assert_eq!(group_stats([None]), GroupStats { mean: None, min: None, max: None, std: None });
    }

    #[test]
    fn cells_as_printed() {
        let five = summarize(&[0.86, 0.88, 0.87, 0.89, 0.90]).unwrap().scaled(100.0);
        // std 1.5811 -> 1.6
        assert_eq!(cell_text(Some(&five)), "88.0 ± 1.6 (5)");
        let one = summarize(&[0.8772]).unwrap().scaled(100.0);
        assert_eq!(cell_text(Some(&one)), "87.7 (1)");
        assert_eq!(cell_text(None), "-");
        let m = summarize(&[0.90, 0.92]).unwrap().scaled(100.0);
        let mm = summarize(&[0.91, 0.91]).unwrap().scaled(100.0);
        // m: 91.0 ± 1.414 -> 1.4; mm: 91.0 ± 0.0
        assert_eq!(pair_text(Some(&m), Some(&mm)), "91.0 ± 1.4 / 91.0 ± 0.0 (2)");
        assert_eq!(pair_text(Some(&m), Some(&one)), "91.0 ± 1.4 / 87.7 (2/1)");
        assert_eq!(pair_text(None, Some(&one)), "- / 87.7 (0/1)");
        assert_eq!(pair_text(None, None), "-");
        assert_eq!(difference_text(Some(88.04), Some(87.7)), "+0.3");
        assert_eq!(difference_text(Some(86.5), Some(87.7)), "-1.2");
        assert_eq!(difference_text(None, Some(87.7)), "-");
    }
}
