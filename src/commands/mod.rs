//! One module per subcommand. Each owns its flags as a clap `Args` struct (`TrainArgs`, ...);
//! `cli.rs` parses the command line into them and hands each command its struct whole
//! (`main.rs` only maps the outcome to an exit status).
pub mod adapter;
pub mod bench;
pub mod completions;
pub mod env;
pub mod eval;
pub mod fetch;
pub mod predict;
pub mod report;
pub mod sweep;
pub mod tokenize;
pub mod train;

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};

/// Reads a JSON-lines file into values of `T`; errors name the file and the line.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read line", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value = serde_json::from_str(&line).with_context(|| format!("{}:{}: invalid input line", path.display(), i + 1))?;
        out.push(value);
    }
    Ok(out)
}
