//! Where models and data live on disk, found without the network: the Hugging Face hub cache
//! (shared with Python's `huggingface_hub`: a model fetched by either is seen by both) and
//! triadapt's own cache for what is not on the hub (SQuAD 2.0's JSON files).
//!
//! The hub cache follows `huggingface_hub`'s layout and variables:
//!
//! ```text
//! $HF_HUB_CACHE (else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub)
//!   models--<owner>--<name>/refs/<revision>          the commit a branch or tag resolved to
//!   models--<owner>--<name>/snapshots/<commit>/...   the files (links into blobs/)
//!   datasets--nyu-mll--glue/snapshots/<commit>/<task>/*.parquet
//! ```
//!
//! A hub model is named `owner/name` or `owner/name@revision` (a branch, tag or commit hash;
//! default `main`). `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`) forbids downloads,
//! `HF_ENDPOINT` names another hub, `HF_TOKEN` (else the token file `$HF_TOKEN_PATH`, else
//! `$HF_HOME/token`) authorises gated repositories. triadapt's own cache is `$TRIADAPT_CACHE`,
//! else `<user cache dir>/triadapt`, and holds `squad2/`.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

/// Selects triadapt's own cache root (SQuAD 2.0).
pub const CACHE_ENV: &str = "TRIADAPT_CACHE";
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// `1`, `ON`, `YES` or `TRUE` forbids downloads, as in `huggingface_hub`.
pub const HF_OFFLINE_ENV: &str = "HF_HUB_OFFLINE";
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";
/// The hub dataset repository holding GLUE as parquet files, one folder per task.
pub const GLUE_REPO: &str = "nyu-mll/glue";
/// The GLUE task names `fetch glue` knows, in the task table's order (`all` fetches in it).
pub const GLUE_TASKS: [&str; super::glue::TASKS.len()] = {
    // Read off the task table, so that a new task is fetched without a second list.
    let mut names = [""; super::glue::TASKS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = super::glue::TASKS[i].name;
        i += 1;
    }
    names
};
pub const SQUAD2_FILES: [&str; 2] = ["train-v2.0.json", "dev-v2.0.json"];
/// Files a model directory needs besides its weights.
pub const MODEL_FILES: [&str; 2] = ["config.json", "spm.model"];
/// Weight files in order of preference (`rust_model.ot` only in hand-made directories).
pub const MODEL_WEIGHTS: [&str; 3] = ["model.safetensors", "pytorch_model.bin", "rust_model.ot"];

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `$HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> Result<PathBuf> {
    if let Some(home) = env_path("HF_HOME") {
        return Ok(home);
    }
    let cache = env_path("XDG_CACHE_HOME").or_else(|| dirs::home_dir().map(|h| h.join(".cache")));
    cache
        .map(|c| c.join("huggingface"))
        .ok_or_else(|| anyhow!("no home directory to put the Hugging Face cache in; set HF_HOME or HF_HUB_CACHE"))
}

/// The hub cache: `$HF_HUB_CACHE` (or the older `$HUGGINGFACE_HUB_CACHE`), else `<hf_home>/hub`.
pub fn hub_cache_dir() -> Result<PathBuf> {
    match env_path("HF_HUB_CACHE").or_else(|| env_path("HUGGINGFACE_HUB_CACHE")) {
        Some(dir) => Ok(dir),
        None => Ok(hf_home()?.join("hub")),
    }
}

/// `$HF_TOKEN` (or the older `$HUGGING_FACE_HUB_TOKEN`), else the token file (`$HF_TOKEN_PATH`,
/// else `<hf_home>/token`) that `huggingface-cli login` writes.
pub fn hub_token() -> Option<String> {
    if let Some(t) = env_str("HF_TOKEN").or_else(|| env_str("HUGGING_FACE_HUB_TOKEN")) {
        return Some(t);
    }
    let file = env_path("HF_TOKEN_PATH").or_else(|| hf_home().ok().map(|h| h.join("token")))?;
    std::fs::read_to_string(file).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

pub fn hub_offline() -> bool {
    let truthy = |name: &str| {
        std::env::var(name).map(|v| ["1", "ON", "YES", "TRUE"].contains(&v.trim().to_ascii_uppercase().as_str())).unwrap_or(false)
    };
    truthy(HF_OFFLINE_ENV) || truthy("TRANSFORMERS_OFFLINE")
}

/// `$HF_ENDPOINT` without a trailing slash, else the public hub.
pub fn hub_endpoint() -> String {
    env_str(HF_ENDPOINT_ENV).unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_string()).trim_end_matches('/').to_string()
}

/// triadapt's own cache root: `$TRIADAPT_CACHE`, else `<user cache dir>/triadapt`.
pub fn own_cache_dir() -> Result<PathBuf> {
    env_path(CACHE_ENV)
        .or_else(|| dirs::cache_dir().map(|d| d.join("triadapt")))
        .ok_or_else(|| anyhow!("this system has no user cache directory; set {CACHE_ENV} to choose one"))
}

/// A hub repository at a revision: `owner/name` or `owner/name@revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    pub repo: String,
    /// A branch, tag or commit hash; `main` unless given.
    pub revision: String,
}

impl HubRef {
    pub fn parse(name: &str) -> Result<HubRef> {
        let (repo, revision) = match name.split_once('@') {
            Some((r, rev)) if !rev.is_empty() => (r, rev),
            Some(_) => bail!("{name:?}: empty revision after `@` (expected OWNER/NAME@REVISION)"),
            None => (name, "main"),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        let ok_part = |s: &str| !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) || name.starts_with('.') {
            bail!("{name:?} is not a hub repository id (expected OWNER/NAME or OWNER/NAME@REVISION, e.g. microsoft/deberta-v3-base)");
        }
        if revision.split('/').any(|p| p.is_empty() || p == "." || p == "..") {
            bail!("{name:?}: revision {revision:?} is not a branch, tag or commit");
        }
        Ok(HubRef { repo: repo.to_string(), revision: revision.to_string() })
    }

    /// Whether the revision is a full commit hash (the cache keeps no ref for those).
    pub fn is_commit(&self) -> bool {
        self.revision.len() == 40 && self.revision.chars().all(|c| c.is_ascii_hexdigit())
    }
}

impl std::fmt::Display for HubRef {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        if self.revision == "main" {
            write!(f, "{}", self.repo)
        } else {
            write!(f, "{}@{}", self.repo, self.revision)
        }
    }
}

/// Model or dataset repository (their folders in the cache differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

/// A repository's folder in the hub cache, as `huggingface_hub` names it.
pub fn repo_folder(cache: &Path, kind: RepoKind, repo: &str) -> PathBuf {
    let prefix = match kind {
        RepoKind::Model => "models",
        RepoKind::Dataset => "datasets",
    };
    cache.join(format!("{prefix}--{}", repo.replace('/', "--")))
}

/// One revision's files in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub dir: PathBuf,
    pub commit: String,
}

/// The snapshot a revision points at in the cache (a commit hash names its snapshot directly),
/// if the cache has one.
pub fn cached_snapshot(cache: &Path, kind: RepoKind, r: &HubRef) -> Option<Snapshot> {
    let folder = repo_folder(cache, kind, &r.repo);
    let commit = if r.is_commit() {
        r.revision.clone()
    } else {
        std::fs::read_to_string(folder.join("refs").join(&r.revision)).ok()?.trim().to_string()
    };
    let dir = folder.join("snapshots").join(&commit);
    dir.is_dir().then_some(Snapshot { dir, commit })
}

/// What a model directory lacks (config.json, spm.model, weights).
pub fn missing_model_files(dir: &Path) -> Vec<String> {
    let mut missing: Vec<String> = MODEL_FILES.iter().filter(|f| !dir.join(f).is_file()).map(|f| f.to_string()).collect();
    if !MODEL_WEIGHTS.iter().any(|f| dir.join(f).is_file()) {
        missing.push("model.safetensors (or pytorch_model.bin)".to_string());
    }
    missing
}

/// A model directory and, for a hub model, the commit its files come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub dir: PathBuf,
    pub commit: Option<String>,
}

/// An existing directory as it is; else a hub name (`owner/name[@revision]`) in the hub cache.
/// Never uses the network.
pub fn resolve_model(name_or_path: &str) -> Result<ResolvedModel> {
    resolve_model_in(&hub_cache_dir()?, name_or_path)
}

pub fn resolve_model_in(cache: &Path, name_or_path: &str) -> Result<ResolvedModel> {
    let path = Path::new(name_or_path);
    if path.is_dir() {
        return Ok(ResolvedModel { dir: path.to_path_buf(), commit: None });
    }
    let r = HubRef::parse(name_or_path)
        .map_err(|_| anyhow!("model {name_or_path:?}: no such directory (nor a hub name such as microsoft/deberta-v3-base)"))?;
    let folder = repo_folder(cache, RepoKind::Model, &r.repo);
    let fetch = format!(
        "run `triadapt fetch model {r}` (or `huggingface-cli download {} --revision {}`; HF_HUB_CACHE or HF_HOME select the cache)",
        r.repo, r.revision
    );
    let Some(snap) = cached_snapshot(cache, RepoKind::Model, &r) else {
        let looked = if r.is_commit() { folder.join("snapshots").join(&r.revision) } else { folder.join("refs").join(&r.revision) };
        bail!("model {r:?} is not a directory and is not in the Hugging Face cache (looked for {}); {fetch}", looked.display());
    };
    let missing = missing_model_files(&snap.dir);
    if !missing.is_empty() {
        bail!("model {r:?}: the cached snapshot {} lacks {}; {fetch}", snap.dir.display(), missing.join(", "));
    }
    Ok(ResolvedModel { dir: snap.dir, commit: Some(snap.commit) })
}

pub fn check_glue_task(task: &str) -> Result<()> {
    if !GLUE_TASKS.contains(&task) {
        bail!("unknown GLUE task {task:?} (expected one of {} or all)", GLUE_TASKS.join(", "));
    }
    Ok(())
}

/// Whether `dir` holds a task's training and validation files (hub parquet or GLUE TSV names).
pub fn glue_dir_complete(dir: &Path) -> bool {
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => return false,
    };
    let has = |parquet: &str, tsv: &str| {
        names.iter().any(|n| (n.starts_with(parquet) && n.ends_with(".parquet")) || (n.starts_with(tsv) && n.ends_with(".tsv")))
    };
    has("train-", "train") && has("validation", "dev")
}

/// The cached parquet folder of a GLUE task: in the snapshot `main` points at, else in the
/// newest other snapshot that has the task (tasks fetched before the dataset's `main` moved).
pub fn resolve_glue_dir(task: &str) -> Result<PathBuf> {
    resolve_glue_dir_in(&hub_cache_dir()?, task)
}

pub fn resolve_glue_dir_in(cache: &Path, task: &str) -> Result<PathBuf> {
    check_glue_task(task)?;
    let main = HubRef { repo: GLUE_REPO.into(), revision: "main".into() };
    if let Some(snap) = cached_snapshot(cache, RepoKind::Dataset, &main) {
        if glue_dir_complete(&snap.dir.join(task)) {
            return Ok(snap.dir.join(task));
        }
    }
    let snapshots = repo_folder(cache, RepoKind::Dataset, GLUE_REPO).join("snapshots");
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&snapshots)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join(task))
                .filter(|d| glue_dir_complete(d))
                .map(|d| (d.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), d))
                .collect()
        })
        .unwrap_or_default();
    others.sort();
    match others.pop() {
        Some((_, dir)) => Ok(dir),
        None => bail!(
            "GLUE task {task}: no training and validation data in the Hugging Face cache (looked in {}/<commit>/{task}/ for train-*.parquet and validation*.parquet); run `triadapt fetch glue {task}`, or give `data_dir` (a folder of GLUE TSV or parquet files)",
            snapshots.display()
        ),
    }
}

/// `<own cache>/squad2`, if both SQuAD 2.0 files are there.
pub fn resolve_squad_dir() -> Result<PathBuf> {
    resolve_squad_dir_in(&own_cache_dir()?)
}

pub fn resolve_squad_dir_in(own_cache: &Path) -> Result<PathBuf> {
    let dir = own_cache.join("squad2");
    let missing: Vec<&str> = SQUAD2_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if missing.is_empty() {
        return Ok(dir);
    }
    bail!(
        "SQuAD 2.0: {} lacks {}; run `triadapt fetch squad2` (or place the files there by hand; {CACHE_ENV} selects the cache)",
        dir.display(),
        missing.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_names_and_revisions() {
        assert_eq!(
            HubRef::parse("microsoft/deberta-v3-base").unwrap(),
            HubRef { repo: "microsoft/deberta-v3-base".into(), revision: "main".into() }
        );
        let r = HubRef::parse("microsoft/deberta-v3-base@v1.0").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.revision.as_str(), r.to_string().as_str()),
            ("microsoft/deberta-v3-base", "v1.0", "microsoft/deberta-v3-base@v1.0")
        );
        assert!(HubRef::parse("a/b@8ec5f1e5e41a7fd82f5c7c4b7e8b36b2e6e0e1a0").unwrap().is_commit());
        for bad in ["a/b/c", "../x", "a/b@", "a b/c", "./m", "a/b@x/../y"] {
            assert!(HubRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_folders_as_huggingface_hub_names_them() {
        let c = Path::new("/c");
        assert_eq!(repo_folder(c, RepoKind::Model, "microsoft/deberta-v3-base"), Path::new("/c/models--microsoft--deberta-v3-base"));
        assert_eq!(repo_folder(c, RepoKind::Dataset, GLUE_REPO), Path::new("/c/datasets--nyu-mll--glue"));
        assert!(check_glue_task("wnli").is_err());
        assert_eq!(GLUE_TASKS, ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"]);
    }
}
