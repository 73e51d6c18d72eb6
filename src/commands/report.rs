//! `triadapt heatmap`, `triadapt plot` and `triadapt table`: figures and the GLUE table from a
//! results directory (see `crate::report`).

use std::path::Path;

use anyhow::Result;

use crate::report;

fn print_files(files: &[std::path::PathBuf]) {
    for f in files {
        println!("{}", f.display());
    }
}

/// Writes the rank heatmaps (with their CSV sidecars) and prints the files written.
pub fn heatmap(results: &Path, out: &Path, opts: &report::heatmap::HeatmapOptions) -> Result<()> {
    print_files(&report::heatmap::run(results, out, opts)?);
    Ok(())
}

/// Writes the ablation, rank-growth and training figures (with their CSV sidecars) and prints
/// the files written.
pub fn plot(results: &Path, out: &Path, opts: &report::curves::PlotOptions) -> Result<()> {
    print_files(&report::curves::run(results, out, opts)?);
    Ok(())
}

/// Writes table.md and table.csv (with the published numbers of `reference` beside ours),
/// prints the markdown table, then the files written (stderr).
pub fn table(results: &Path, out: Option<&Path>, reference: Option<&Path>) -> Result<()> {
    let (table, files) = report::table::run(results, out, reference)?;
    print!("{}", table.to_markdown());
    for f in &files {
        eprintln!("wrote {}", f.display());
    }
    Ok(())
}
