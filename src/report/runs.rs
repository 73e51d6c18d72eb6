//! Loading a results directory: its `runs.csv` reduced to the finished runs (every cell kept as
//! text), the fields of a row that the figures and the table need, and the eager polars group-by
//! the ablation figure aggregates with. The one module that reads `runs.csv`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use polars::prelude::*;

/// Columns every `runs.csv` must have.
const REQUIRED: [&str; 2] = ["task", "method"];

/// A results directory's `runs.csv`, reduced to finished runs. Every column is kept as text
/// (exactly as written), so swept values keep their spelling; numbers are parsed where used.
pub struct Runs {
    /// The results directory.
    pub dir: PathBuf,
    /// Its folder name (figures go to `<out>/<name>/`).
    pub name: String,
    /// The finished rows, all columns as strings.
    pub df: DataFrame,
    /// The swept keys: the columns between `seed` and `status`, in file order.
    pub swept: Vec<String>,
    /// Rows left out because their status is not `finished`.
    pub skipped: usize,
}

/// The fields of one row the figures need.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// Row index in `Runs::df`.
    pub row: usize,
    pub run_id: String,
    pub task: String,
    pub method: String,
    pub seed: Option<i64>,
    pub best_score: Option<f64>,
    pub main_metric: Option<String>,
    pub rank_budget: Option<f64>,
    /// The final total rank (`total_rank` column).
    pub total_rank: Option<f64>,
    /// The run folder, resolved (see `Runs::resolve_run_dir`); None when the row names none.
    pub run_dir: Option<PathBuf>,
}

impl Runs {
    /// Reads `<dir>/runs.csv` (or `dir` itself when it is the CSV file).
    pub fn load(dir: &Path) -> Result<Runs> {
        let (dir, csv) = if dir.is_file() {
            (dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")), dir.to_path_buf())
        } else {
            (dir.to_path_buf(), dir.join("runs.csv"))
        };
        if !csv.is_file() {
            bail!("{} not found (a results directory holds the runs.csv a sweep writes)", csv.display());
        }
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .try_into_reader_with_file_path(Some(csv.clone()))
            .and_then(|r| r.finish())
            .with_context(|| format!("{}: not a readable CSV file", csv.display()))?;
        let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
        for need in REQUIRED {
            if !names.iter().any(|n| n == need) {
                bail!("{}: missing column {need:?} (has {})", csv.display(), names.join(", "));
            }
        }
        let swept = match (names.iter().position(|n| n == "seed"), names.iter().position(|n| n == "status")) {
            (Some(a), Some(b)) if a < b => names[a + 1..b].to_vec(),
            _ => Vec::new(),
        };
        let total = df.height();
        let df = if names.iter().any(|n| n == "status") {
            let status = str_values(&df, "status")?;
            let mask: BooleanChunked = status
                .iter()
                .map(|s| s.as_deref().is_some_and(|s| s.trim().eq_ignore_ascii_case(crate::train::result::RunStatus::Finished.as_str())))
                .collect();
            df.filter(&mask)?
        } else {
            df
        };
        let skipped = total - df.height();
        if df.height() == 0 {
            bail!("{}: no finished runs ({total} rows, none with status `finished`)", csv.display());
        }
        let abs = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
        let name = abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "results".into());
        Ok(Runs { dir, name, df, swept, skipped })
    }

    /// Whether `runs.csv` has the column.
    pub fn has(&self, column: &str) -> bool {
        self.df.get_column_names().iter().any(|c| c.as_str() == column)
    }

    /// A column as text (None for empty cells); an error names the columns there are.
    pub fn strings(&self, column: &str) -> Result<Vec<Option<String>>> {
        if !self.has(column) {
            bail!("runs.csv has no column {column:?} (has {})", self.column_list());
        }
        str_values(&self.df, column)
    }

    /// A column parsed as numbers (None for empty or non-numeric cells).
    pub fn floats(&self, column: &str) -> Result<Vec<Option<f64>>> {
        Ok(self.strings(column)?.into_iter().map(|s| s.and_then(|s| parse_f64(&s))).collect())
    }

    fn optional_strings(&self, column: &str) -> Vec<Option<String>> {
        self.strings(column).unwrap_or_else(|_| vec![None; self.df.height()])
    }

    pub fn column_list(&self) -> String {
        self.df.get_column_names().iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// The tasks in order of first appearance.
    pub fn tasks(&self) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for t in self.strings("task")?.into_iter().flatten() {
            if !out.contains(&t) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// One record per finished row.
    pub fn records(&self) -> Result<Vec<RunRecord>> {
        let task = self.strings("task")?;
        let method = self.strings("method")?;
        let run_id = self.optional_strings("run_id");
        let seed = self.optional_strings("seed");
        let best = self.optional_strings("best_score");
        let main = self.optional_strings("main_metric");
        let budget = self.optional_strings("rank_budget");
        let total = self.optional_strings("total_rank");
        let run_dir = self.optional_strings("run_dir");
        Ok((0..self.df.height())
            .map(|i| RunRecord {
                row: i,
                run_id: run_id[i].clone().unwrap_or_else(|| format!("row {}", i + 1)),
                task: task[i].clone().unwrap_or_default(),
                method: method[i].clone().unwrap_or_default(),
                seed: seed[i].as_deref().and_then(parse_f64).map(|v| v as i64),
                best_score: best[i].as_deref().and_then(parse_f64),
                main_metric: main[i].clone(),
                rank_budget: budget[i].as_deref().and_then(parse_f64),
                total_rank: total[i].as_deref().and_then(parse_f64),
                run_dir: run_dir[i].as_deref().map(|d| self.resolve_run_dir(d)),
            })
            .collect())
    }

    /// A `run_dir` cell as a path: absolute as it is; relative to the results directory, else
    /// (when that does not exist but the path does) relative to the working directory.
    pub fn resolve_run_dir(&self, cell: &str) -> PathBuf {
        let p = PathBuf::from(cell);
        if p.is_absolute() {
            return p;
        }
        let under = self.dir.join(&p);
        if !under.exists() && p.exists() {
            return p;
        }
        under
    }
}

/// Eager polars group-by: the groups of the rows of `df` where `mask` holds, by `keys` in order
/// of first appearance. Returns the key columns (one row per group) and each group's row indices
/// into `df`. Eager on purpose: it keeps polars' lazy engine (most of a clean build) out.
pub(crate) fn group_rows(df: &DataFrame, mask: &[bool], keys: &[String]) -> Result<(DataFrame, Vec<Vec<usize>>)> {
    let kept: Vec<usize> = (0..df.height()).filter(|&i| mask[i]).collect();
    let filtered = df.filter(&BooleanChunked::from_slice("__mask".into(), mask))?;
    let gb = filtered.group_by_stable(keys.iter().map(String::as_str))?;
    let key_frame = DataFrame::new(gb.keys())?;
    let rows = gb
        .get_groups()
        .iter()
        .map(|g| match g {
            GroupsIndicator::Idx((_, idx)) => idx.iter().map(|&i| kept[i as usize]).collect(),
            GroupsIndicator::Slice([first, len]) => (first..first + len).map(|i| kept[i as usize]).collect(),
        })
        .collect();
    Ok((key_frame, rows))
}

pub(crate) fn str_values(df: &DataFrame, column: &str) -> Result<Vec<Option<String>>> {
    let c = df.column(column)?.cast(&DataType::String)?;
    let s = c.str()?;
    Ok(s.into_iter().map(|v| v.map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)).collect())
}

/// Parses a cell as a number: finite values only (`nan`, `inf` and text are None).
pub fn parse_f64(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The run that stands for its method where a figure draws one run per method: the highest
/// `best_score` (runs without one come last), ties broken by the lowest seed, then file order.
pub fn representative<'a>(runs: &[&'a RunRecord]) -> Option<&'a RunRecord> {
    let mut best: Option<&RunRecord> = None;
    for &r in runs {
        best = match best {
            None => Some(r),
            Some(b) => {
                let key = |x: &RunRecord| (x.best_score.unwrap_or(f64::NEG_INFINITY), -(x.seed.unwrap_or(i64::MAX) as f64));
                let (kr, kb) = (key(r), key(b));
                if kr.0 > kb.0 || (kr.0 == kb.0 && kr.1 > kb.1) {
                    Some(r)
                } else {
                    Some(b)
                }
            }
        };
    }
    best
}
