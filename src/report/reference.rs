//! Published numbers to read our table against (`triadapt table --reference FILE`).
//!
//! The file is a CSV with the header `method,budget,task,score` (any column order; lines
//! starting with `#` are comments, e.g. the source of the numbers):
//! - `method`: a method name (`triadapt`) or its paper name (`TriAdaptLoRA`), any case;
//! - `budget`: the reference rank r of the paper's block (`2`, `8`), empty for a row without a
//!   rank budget (full fine-tuning);
//! - `task`: one of [`SCORE_KEYS`] (MNLI's and QQP's two scores apart, STS-B its Corr);
//! - `score`: as the paper prints it, x100 (`90.3`).
//!
//! Errors name the file and line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::peft::method::MethodName;

/// The scores a table row has, in column order: MNLI matched/mismatched, SST-2, CoLA, QQP
/// accuracy/F1, QNLI, RTE, MRPC, STS-B Corr (mean of Pearson and Spearman), All Avg.
pub const SCORE_KEYS: [&str; 11] = ["mnli_m", "mnli_mm", "sst2", "cola", "qqp_acc", "qqp_f1", "qnli", "rte", "mrpc", "stsb", "all_avg"];

/// One published number.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The method as runs.csv names it (`triadapt`) where known, else the file's text, lower case.
    pub method: String,
    /// The reference rank r; None: no rank budget.
    pub budget: Option<f64>,
    /// One of `SCORE_KEYS`.
    pub task: String,
    /// x100, as published.
    pub score: f64,
    /// Line in the file (1-based).
    pub line: u64,
}

#[derive(Debug, Clone)]
pub struct Reference {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

/// runs.csv's name of a method written as `triadapt` or `TriAdaptLoRA` (any case); other names
/// lower-cased.
pub fn canonical_method(text: &str) -> String {
    let t = text.trim();
    MethodName::ALL
        .iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(t) || m.label().eq_ignore_ascii_case(t))
        .map_or_else(|| t.to_lowercase(), |m| m.as_str().to_string())
}

fn same_budget(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => (x - y).abs() < 1e-9,
        _ => false,
    }
}

impl Reference {
    /// Reads and checks a reference file.
    pub fn load(path: &Path) -> Result<Reference> {
        let file = path.display();
        let text = std::fs::read_to_string(path).with_context(|| format!("--reference {file}: cannot read the file"))?;
        let mut reader = csv::ReaderBuilder::new().comment(Some(b'#')).trim(csv::Trim::All).from_reader(text.as_bytes());
        let header: Vec<String> = reader.headers().with_context(|| format!("{file}: not a CSV file"))?.iter().map(str::to_string).collect();
        let col = |name: &str| -> Result<usize> {
            header.iter().position(|h| h == name).ok_or_else(|| {
                anyhow::anyhow!(
                    "{file}: the header must name the columns method, budget, task, score; it has no {name:?} (has {})",
                    header.join(", ")
                )
            })
        };
        let (cm, cb, ct, cs) = (col("method")?, col("budget")?, col("task")?, col("score")?);
        let mut entries: Vec<Entry> = Vec::new();
        for rec in reader.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map_or(String::new(), |p| format!(", line {}", p.line()));
                anyhow::anyhow!("{file}{line}: not a valid CSV row ({e})")
            })?;
            let line = rec.position().map_or(0, |p| p.line());
            let at = format!("{file}, line {line}");
            let get = |i: usize| rec.get(i).unwrap_or("").trim();
            let method = get(cm);
            if method.is_empty() {
                bail!("{at}: empty `method` (a method such as TriAdaptLoRA or lora)");
            }
            let budget = match get(cb) {
                "" | "-" => None,
                b => match b.parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 => Some(v),
                    _ => {
                        bail!("{at}: `budget` {b:?}: the reference rank r of the paper's block (e.g. 2 or 8), or empty for no rank budget")
                    }
                },
            };
            let task = get(ct);
            if !SCORE_KEYS.contains(&task) {
                bail!("{at}: `task` {task:?}: one of {}", SCORE_KEYS.join(", "));
            }
            let score = match get(cs).parse::<f64>() {
                Ok(v) if v.is_finite() && (-100.0..=100.0).contains(&v) => v,
                _ => bail!("{at}: `score` {:?}: a number as the paper prints it (x100, e.g. 90.3)", get(cs)),
            };
            let method = canonical_method(method);
            if let Some(first) = entries.iter().find(|e| e.method == method && e.task == task && same_budget(e.budget, budget)) {
                bail!("{at}: {method}, budget {}, {task} is given twice (first on line {})", get(cb), first.line);
            }
            entries.push(Entry { method, budget, task: task.to_string(), score, line });
        }
        if entries.is_empty() {
            bail!("{file}: no rows under the header method,budget,task,score");
        }
        Ok(Reference { path: path.to_path_buf(), entries })
    }

    /// The published scores of a method at a budget, by score key.
    pub fn scores(&self, method: &str, budget: Option<f64>) -> BTreeMap<String, f64> {
        self.entries.iter().filter(|e| e.method == method && same_budget(e.budget, budget)).map(|e| (e.task.clone(), e.score)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Reference> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("published.csv");
        std::fs::write(&p, text).unwrap();
        Reference::load(&p)
    }

    #[test]
    fn reads_methods_budgets_and_comments() {
        let r =
            load("# made up for this test\nmethod,budget,task,score\nTriAdaptLoRA,2,rte,88.5\nlora,8,mnli_m,90.1\nFull FT,,all_avg,88.2\n")
                .unwrap();
        assert_eq!(r.entries.len(), 3);
        assert_eq!(r.entries[0], Entry { method: "triadapt".into(), budget: Some(2.0), task: "rte".into(), score: 88.5, line: 3 });
        assert_eq!(r.scores("lora", Some(8.0)), BTreeMap::from([("mnli_m".to_string(), 90.1)]));
        assert_eq!(r.scores("full", None), BTreeMap::from([("all_avg".to_string(), 88.2)]));
        assert!(r.scores("lora", Some(2.0)).is_empty());
        assert_eq!(canonical_method("bitfit"), "bitfit");
    }

    #[test]
    fn malformed_files_name_file_and_line() {
        let err = |t: &str| load(t).unwrap_err().to_string();
        let e = err("method,budget,task\nlora,2,rte\n");
        assert!(e.contains("published.csv") && e.contains("no \"score\""), "{e}");
        let e = err("method,budget,task,score\nlora,2,rte,88.0\nlora,2,qqp,88.0\n");
        assert!(e.contains("line 3") && e.contains("\"qqp\"") && e.contains("qqp_acc"), "{e}");
        let e = err("method,budget,task,score\nlora,two,rte,88.0\n");
        assert!(e.contains("published.csv, line 2") && e.contains("\"two\""), "{e}");
        let e = err("method,budget,task,score\nlora,2,rte,0.88x\n");
        assert!(e.contains("line 2") && e.contains("`score`"), "{e}");
        let e = err("method,budget,task,score\nlora,2,rte,88\nLoRA,2,rte,87\n");
        assert!(e.contains("line 3") && e.contains("first on line 2"), "{e}");
        let e = err("method,budget,task,score\n,2,rte,88\n");
        assert!(e.contains("line 2") && e.contains("empty `method`"), "{e}");
        let e = err("method,budget,task,score\nlora,2,rte\n");
        assert!(e.contains("published.csv") && e.contains("line 2"), "{e}");
        assert!(err("method,budget,task,score\n").contains("no rows"));
    }
}
