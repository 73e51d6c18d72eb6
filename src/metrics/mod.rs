//! Evaluation metrics, the scores of the paper's GLUE and SQuAD 2.0 tables: the classification
//! and correlation scores behind HF's GLUE metric, each task's named metrics and main score, the
//! "All Avg" aggregate, and the official SQuAD v2.0 evaluation (`evaluate-v2.0.py`).
//!
//! Everything is a pure function on plain data so that results can be checked against the
//! reference implementations (sklearn, scipy, the official SQuAD script): see
//! `tests/metrics.rs` and `tests/fixtures/metrics/README.md`.
//!
//! Units: GLUE metrics and "All Avg" are fractions in [0, 1] (correlations in [-1, 1]); tables
//! multiply by 100. SQuAD scores are percentages, because the official script reports them so.

pub mod glue;
pub mod scores;
pub mod squad;

pub use glue::*;
pub use scores::*;
pub use squad::*;

/// Helpers of the hand-computed unit tests of every metrics file.
#[cfg(test)]
mod test_util {
    use std::collections::BTreeMap;

    pub fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} != {b}");
    }

    pub fn map(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
    }
}
