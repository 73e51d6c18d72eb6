//! The eight GLUE tasks, read from either layout researchers have: the original GLUE TSV folders
//! (`train.tsv`, `dev.tsv`, MNLI's `dev_matched.tsv`/`dev_mismatched.tsv`) or the hub's parquet
//! files (`nyu-mll/glue`: `train-*.parquet`, `validation*.parquet`). Labels follow the hub's
//! `ClassLabel` order; a malformed row is an error naming the file and line (or row).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// A label: a class id, or a similarity score for STS-B.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Label {
    Class(i64),
    Score(f32),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Label,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    /// The dev set (MNLI: matched).
    Validation,
    /// MNLI's mismatched dev set.
    ValidationMismatched,
}

/// How a task's columns and labels look in both layouts.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec {
    pub name: &'static str,
    /// The paper's name of the task (figures and tables).
    pub label: &'static str,
    /// Class names in label-id order; empty for regression (STS-B).
    pub classes: &'static [&'static str],
    /// TSV: (text_a column, text_b column, label column); `None` header means CoLA's headerless file.
    pub tsv_columns: Option<(&'static str, Option<&'static str>, &'static str)>,
    /// Parquet: (text_a, text_b) column names; the label column is `label`.
    pub parquet_columns: (&'static str, Option<&'static str>),
    /// MNLI: the dev set is the matched one (`dev_matched.tsv`, `validation_matched-*`), with a
    /// mismatched one beside it (`dev_mismatched.tsv`, `validation_mismatched-*`).
    pub matched_dev: bool,
}

impl TaskSpec {
    pub fn num_labels(&self) -> i64 {
        if self.classes.is_empty() {
            1
        } else {
            self.classes.len() as i64
        }
    }

    pub fn is_regression(&self) -> bool {
        self.classes.is_empty()
    }

    /// The dev splits evaluated for this task (MNLI has two).
    pub fn dev_splits(&self) -> &'static [Split] {
        if self.matched_dev {
            &[Split::Validation, Split::ValidationMismatched]
        } else {
            &[Split::Validation]
        }
    }
}

pub const TASKS: [TaskSpec; 8] = [
    TaskSpec {
        name: "cola",
        label: "CoLA",
        classes: &["unacceptable", "acceptable"],
        tsv_columns: None,
        parquet_columns: ("sentence", None),
        matched_dev: false,
    },
    TaskSpec {
        name: "sst2",
        label: "SST-2",
        classes: &["negative", "positive"],
        tsv_columns: Some(("sentence", None, "label")),
        parquet_columns: ("sentence", None),
        matched_dev: false,
    },
    TaskSpec {
        name: "mrpc",
        label: "MRPC",
        classes: &["not_equivalent", "equivalent"],
        tsv_columns: Some(("#1 String", Some("#2 String"), "Quality")),
        parquet_columns: ("sentence1", Some("sentence2")),
        matched_dev: false,
    },
    TaskSpec {
        name: "qqp",
        label: "QQP",
        classes: &["not_duplicate", "duplicate"],
        tsv_columns: Some(("question1", Some("question2"), "is_duplicate")),
        parquet_columns: ("question1", Some("question2")),
        matched_dev: false,
    },
    TaskSpec {
        name: "stsb",
        label: "STS-B",
        classes: &[],
        tsv_columns: Some(("sentence1", Some("sentence2"), "score")),
        parquet_columns: ("sentence1", Some("sentence2")),
        matched_dev: false,
    },
    TaskSpec {
        name: "mnli",
        label: "MNLI",
        classes: &["entailment", "neutral", "contradiction"],
        tsv_columns: Some(("sentence1", Some("sentence2"), "gold_label")),
        parquet_columns: ("premise", Some("hypothesis")),
        matched_dev: true,
    },
    TaskSpec {
        name: "qnli",
        label: "QNLI",
        classes: &["entailment", "not_entailment"],
        tsv_columns: Some(("question", Some("sentence"), "label")),
        parquet_columns: ("question", Some("sentence")),
        matched_dev: false,
    },
    TaskSpec {
        name: "rte",
        label: "RTE",
        classes: &["entailment", "not_entailment"],
        tsv_columns: Some(("sentence1", Some("sentence2"), "label")),
        parquet_columns: ("sentence1", Some("sentence2")),
        matched_dev: false,
    },
];

/// The table row of the GLUE task `name` (None for any other name).
pub fn task(name: &str) -> Option<&'static TaskSpec> {
    TASKS.iter().find(|t| t.name == name)
}

/// Reads a label written as a class id ("1") or a class name ("entailment"), or a score.
fn parse_label(spec: &TaskSpec, raw: &str) -> Result<Label> {
    let raw = raw.trim();
    if spec.is_regression() {
        let v: f32 = raw.parse().map_err(|_| anyhow::anyhow!("label {raw:?} is not a number"))?;
        return Ok(Label::Score(v));
    }
    if let Some(i) = spec.classes.iter().position(|c| *c == raw) {
        return Ok(Label::Class(i as i64));
    }
    match raw.parse::<i64>() {
        Ok(i) if (0..spec.num_labels()).contains(&i) => Ok(Label::Class(i)),
        _ => bail!("label {raw:?} is not one of {:?} (or their ids 0..{})", spec.classes, spec.num_labels() - 1),
    }
}

fn tsv_file(dir: &Path, spec: &TaskSpec, split: Split) -> PathBuf {
    let name = match split {
        Split::Train => "train.tsv",
        Split::Validation if spec.matched_dev => "dev_matched.tsv",
        Split::ValidationMismatched => "dev_mismatched.tsv",
        Split::Validation => "dev.tsv",
    };
    dir.join(name)
}

/// Reads one GLUE TSV file (tab-separated, no quoting, as the GLUE distribution).
pub fn read_tsv(path: &Path, spec: &TaskSpec) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    // CoLA has no header: source, label, original label, sentence.
    let (ia, ib, il, width) = match spec.tsv_columns {
        None => (3usize, None, 1usize, 4usize),
        Some((a, b, l)) => {
            let (_, header) = lines.next().with_context(|| format!("{}: empty file", path.display()))?;
            let cols: Vec<&str> = header.split('\t').collect();
            let find = |name: &str| {
                cols.iter()
                    .position(|c| c.trim() == name)
                    .with_context(|| format!("{}:1: missing column {name:?} (header has {:?})", path.display(), cols))
            };
            (find(a)?, b.map(find).transpose()?, find(l)?, cols.len())
        }
    };
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let fields: Vec<&str> = line.split('\t').collect();
        let needed = [Some(ia), ib, Some(il)].into_iter().flatten().max().unwrap_or(0) + 1;
        if fields.len() < needed {
            bail!("{}: {} fields, expected {} (the header has {width})", at(), fields.len(), needed);
        }
        let label = parse_label(spec, fields[il]).with_context(at)?;
        out.push(Example { text_a: fields[ia].to_string(), text_b: ib.map(|j| fields[j].to_string()), label });
    }
    Ok(out)
}

/// The parquet files of a split: `<split>-*.parquet` (MNLI dev: `validation_matched-*`).
fn parquet_files(dir: &Path, spec: &TaskSpec, split: Split) -> Result<Vec<PathBuf>> {
    let prefix = match split {
        Split::Train => "train-",
        Split::Validation if spec.matched_dev => "validation_matched-",
        Split::ValidationMismatched => "validation_mismatched-",
        Split::Validation => "validation-",
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.starts_with(prefix) && n.ends_with(".parquet")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads hub parquet files with polars; errors name the file and the row.
pub fn read_parquet(files: &[PathBuf], spec: &TaskSpec) -> Result<Vec<Example>> {
    use polars::prelude::*;
    let mut out = Vec::new();
    for path in files {
        let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let df = ParquetReader::new(file).finish().with_context(|| format!("{}: not a readable parquet file", path.display()))?;
        let column = |name: &str| -> Result<Column> {
            df.column(name)
                .cloned()
                .map_err(|_| anyhow::anyhow!("{}: missing column {name:?} (has {:?})", path.display(), df.get_column_names()))
        };
        let text = |name: &str| -> Result<Vec<Option<String>>> {
            let c = column(name)?;
            let s = c.str().map_err(|_| anyhow::anyhow!("{}: column {name:?} is not text", path.display()))?;
            Ok(s.into_iter().map(|v| v.map(str::to_string)).collect())
        };
        let (ca, cb) = spec.parquet_columns;
        let a = text(ca)?;
        let b = cb.map(text).transpose()?;
        let labels =
            column("label")?.cast(&DataType::Float64).with_context(|| format!("{}: column \"label\" is not numeric", path.display()))?;
        let labels: Vec<Option<f64>> = labels.f64().expect("cast to f64").into_iter().collect();
        for (row, (text_a, label)) in a.into_iter().zip(labels).enumerate() {
            let at = || format!("{} row {row}", path.display());
            let text_a = text_a.with_context(|| format!("{}: {ca:?} is null", at()))?;
            let text_b = match &b {
                Some(col) => Some(col[row].clone().with_context(|| format!("{}: second text is null", at()))?),
                None => None,
            };
            let label = label.with_context(|| format!("{}: label is null", at()))?;
            let label = if spec.is_regression() {
                Label::Score(label as f32)
            } else {
                parse_label(spec, &format!("{}", label as i64)).with_context(|| format!("{}: label {label}", at()))?
            };
            out.push(Example { text_a, text_b, label });
        }
    }
    Ok(out)
}

/// Loads a split from `dir` in whichever layout it holds (parquet preferred); also accepts a
/// hub checkout whose files sit in `dir/<task>/`.
pub fn load_split(dir: &Path, spec: &TaskSpec, split: Split) -> Result<Vec<Example>> {
    for d in [dir.to_path_buf(), dir.join(spec.name)] {
        if !d.is_dir() {
            continue;
        }
        let files = parquet_files(&d, spec, split)?;
        if !files.is_empty() {
            return read_parquet(&files, spec);
        }
        let tsv = tsv_file(&d, spec, split);
        if tsv.is_file() {
            return read_tsv(&tsv, spec);
        }
    }
    if !dir.is_dir() {
        bail!("{} data directory {} does not exist (run `triadapt fetch glue {}` or set data_dir)", spec.name, dir.display(), spec.name);
    }
    bail!(
        "{}: no {:?} data for {} (looked for {} and the hub's parquet files)",
        dir.display(),
        split,
        spec.name,
        tsv_file(dir, spec, split).file_name().unwrap().to_string_lossy()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_by_name_or_id() {
        let rte = task("rte").unwrap();
        assert_eq!(parse_label(rte, "not_entailment").unwrap(), Label::Class(1));
        assert_eq!(parse_label(rte, "0").unwrap(), Label::Class(0));
        assert!(parse_label(rte, "2").is_err());
        assert!(parse_label(rte, "maybe").is_err());
        assert_eq!(parse_label(task("stsb").unwrap(), "3.8").unwrap(), Label::Score(3.8));
        assert!(task("wnli").is_none());
    }

    #[test]
    fn only_mnli_has_matched_and_mismatched_dev_files() {
        let (d, mnli, rte) = (Path::new("d"), task("mnli").unwrap(), task("rte").unwrap());
        assert_eq!(tsv_file(d, mnli, Split::Validation), d.join("dev_matched.tsv"));
        assert_eq!(tsv_file(d, mnli, Split::ValidationMismatched), d.join("dev_mismatched.tsv"));
        assert_eq!(tsv_file(d, rte, Split::Validation), d.join("dev.tsv"));
        assert_eq!(mnli.dev_splits(), [Split::Validation, Split::ValidationMismatched]);
        assert_eq!(TASKS.iter().filter(|t| t.matched_dev).count(), 1);
    }
}
