//! `triadapt fetch`: download a hub model or GLUE tasks into the Hugging Face cache, or SQuAD 2.0
//! into triadapt's, and print where they are (one directory a line on stdout; progress and
//! per-file notes go to stderr).

use anyhow::{bail, Result};

use crate::data::fetch::{self, FetchReport, Outcome, Remote};
use crate::data::hub::{self, GLUE_TASKS};

/// What to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchKind {
    /// A hub model repository (`fetch model OWNER/NAME`).
    Model,
    /// One GLUE task or `all` (`fetch glue TASK`).
    Glue,
    /// SQuAD 2.0 (`fetch squad2`).
    Squad2,
}

impl std::str::FromStr for FetchKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "model" => Ok(FetchKind::Model),
            "glue" => Ok(FetchKind::Glue),
            "squad2" => Ok(FetchKind::Squad2),
            other => bail!("unknown thing to fetch {other:?} (expected model, glue or squad2)"),
        }
    }
}

/// `triadapt fetch`'s arguments.
// The field docs are --help text: `[...]` and `<...>` in them are literal, not links or HTML.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, clap::Args)]
pub struct FetchArgs {
    /// model, glue or squad2.
    #[arg(value_name = "WHAT")]
    pub kind: FetchKind,
    /// The model's hub name, OWNER/NAME[@REVISION] (model), or the task or `all` (glue);
    /// none for squad2.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Fetches `kind` (`name`: the model's hub id, or the GLUE task or `all`) and prints the
/// directories it is in. `quiet` hides the progress bars.
pub fn run(args: &FetchArgs) -> Result<()> {
    let (kind, name, quiet) = (args.kind, args.name.as_deref(), args.quiet);
    let remote = Remote::from_env();
    let cache = hub::hub_cache_dir()?;
    let progress = !quiet;
    let reports = match (kind, name) {
        (FetchKind::Model, Some(name)) => vec![fetch::fetch_model(&remote, &cache, name, progress)?],
        (FetchKind::Model, None) => bail!("fetch model needs the hub name, e.g. `triadapt fetch model microsoft/deberta-v3-base`"),
        (FetchKind::Glue, Some("all")) => {
            let mut out = Vec::new();
            for task in GLUE_TASKS {
                eprintln!("GLUE {task}:");
                out.push(fetch::fetch_glue(&remote, &cache, task, progress)?);
            }
            out
        }
        (FetchKind::Glue, Some(task)) => vec![fetch::fetch_glue(&remote, &cache, task, progress)?],
        (FetchKind::Glue, None) => bail!("fetch glue needs a task: one of {} or all", GLUE_TASKS.join(", ")),
        (FetchKind::Squad2, None) => vec![fetch::fetch_squad2(&remote, &hub::own_cache_dir()?, progress)?],
        (FetchKind::Squad2, Some(extra)) => bail!("fetch squad2 takes no name (got {extra:?})"),
    };
    for FetchReport { dir, files, commit } in reports {
        let fetched = files.iter().filter(|(_, o)| matches!(o, Outcome::Downloaded(_))).count();
        let at = commit.map(|c| format!(" (commit {c})")).unwrap_or_default();
        eprintln!("{}{at}: {} file(s), {fetched} downloaded, {} already there", dir.display(), files.len(), files.len() - fetched);
        println!("{}", dir.display());
    }
    Ok(())
}
