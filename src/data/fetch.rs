//! Downloads into the local cache: HF hub model directories, the hub's GLUE parquet files and the
//! SQuAD 2.0 JSON files, plus the look-ups the training code uses to find them.
//!
//! The cache root is `$TRIADAPT_CACHE`, else `<user cache dir>/triadapt` (`~/.cache/triadapt` on
//! Linux). Layout under it:
//!
//! ```text
//! models/<owner>/<name>/   an HF model directory: config.json, spm.model,
//!                          model.safetensors or pytorch_model.bin
//! glue/<task>/             the hub's parquet files of `nyu-mll/glue` `<task>/`:
//!                          train-*.parquet, validation*.parquet, test*.parquet
//! squad2/                  train-v2.0.json, dev-v2.0.json
//! ```
//!
//! A file is downloaded to `<file>.part`, resumed with an HTTP `Range` request when a `.part` is
//! already there, checked against the size and sha256 the hub lists, and renamed into place only
//! when complete; so a file that exists under its final name is whole (or was placed by hand).
//! `HF_ENDPOINT` overrides the hub (as `huggingface_hub` does), `TRIADAPT_SQUAD_URL` the SQuAD
//! base URL, and `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`) forbids every download.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Selects the cache root.
pub const CACHE_ENV: &str = "TRIADAPT_CACHE";
/// Overrides the hub endpoint, as in `huggingface_hub`.
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// `1`, `ON`, `YES` or `TRUE` forbids downloads, as in `huggingface_hub`.
pub const HF_OFFLINE_ENV: &str = "HF_HUB_OFFLINE";
/// Overrides the base URL the SQuAD 2.0 files are fetched from (`<base>/train-v2.0.json`).
pub const SQUAD_URL_ENV: &str = "TRIADAPT_SQUAD_URL";
pub const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";
pub const DEFAULT_SQUAD_URL: &str = "https://rajpurkar.github.io/SQuAD-explorer/dataset";
/// The hub dataset repository holding GLUE as parquet files, one folder per task.
pub const GLUE_REPO: &str = "nyu-mll/glue";
pub const GLUE_TASKS: [&str; 8] = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte"];
pub const SQUAD2_FILES: [&str; 2] = ["train-v2.0.json", "dev-v2.0.json"];
/// Files a model directory needs besides its weights.
pub const MODEL_FILES: [&str; 2] = ["config.json", "spm.model"];
/// Weight files in order of preference (`rust_model.ot` is only ever placed by hand).
pub const MODEL_WEIGHTS: [&str; 3] = ["model.safetensors", "pytorch_model.bin", "rust_model.ot"];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Further attempts, each resuming from the `.part`, after a transfer breaks off.
const RETRIES: usize = 2;
const BUF_SIZE: usize = 256 * 1024;

/// What `fetch_file` found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The destination was already complete (size and sha256 match where known); nothing fetched.
    Present,
    /// The file was downloaded (or its download finished); the number is its size.
    Downloaded(u64),
}

/// The cache directory and its layout.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// The cache root: `$TRIADAPT_CACHE`, else `<user cache dir>/triadapt`.
pub fn cache_dir() -> Result<PathBuf> {
    Ok(Cache::from_env()?.root)
}

impl Cache {
    /// `$TRIADAPT_CACHE`, else `<user cache dir>/triadapt`.
    pub fn from_env() -> Result<Cache> {
        match std::env::var_os(CACHE_ENV) {
            Some(v) if !v.is_empty() => Ok(Cache::at(PathBuf::from(v))),
            _ => dirs::cache_dir()
                .map(|d| Cache::at(d.join("triadapt")))
                .ok_or_else(|| anyhow!("this system has no user cache directory; set {CACHE_ENV} to choose one")),
        }
    }

    pub fn at(root: impl Into<PathBuf>) -> Cache {
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models/<owner>/<name>` for a hub repository id.
    pub fn model_dir(&self, repo: &str) -> Result<PathBuf> {
        check_repo_id(repo)?;
        Ok(repo.split('/').fold(self.root.join("models"), |p, s| p.join(s)))
    }

    /// `glue/<task>`.
    pub fn glue_dir(&self, task: &str) -> Result<PathBuf> {
        check_glue_task(task)?;
        Ok(self.root.join("glue").join(task))
    }

    /// `squad2`.
    pub fn squad_dir(&self) -> PathBuf {
        self.root.join("squad2")
    }

    /// An existing directory `name_or_path` as it is; else the cached model of that hub name.
    pub fn resolve_model(&self, name_or_path: &str) -> Result<PathBuf> {
        let path = Path::new(name_or_path);
        if path.is_dir() {
            return Ok(path.to_path_buf());
        }
        if check_repo_id(name_or_path).is_err() || name_or_path.starts_with('.') {
            bail!("model {name_or_path:?}: no such directory (nor a hub name such as microsoft/deberta-v3-base)");
        }
        let dir = self.model_dir(name_or_path)?;
        let missing = missing_model_files(&dir);
        if missing.is_empty() {
            return Ok(dir);
        }
        if dir.is_dir() {
            bail!(
                "model {name_or_path:?}: the cached copy at {} lacks {}; run `triadapt fetch model {name_or_path}` \
                 (or place the files there by hand; {CACHE_ENV} selects the cache)",
                dir.display(),
                missing.join(", ")
            );
        }
        bail!(
            "model {name_or_path:?} is not a directory and is not in the cache (looked in {}); run \
             `triadapt fetch model {name_or_path}` (or place config.json, spm.model and model.safetensors or \
             pytorch_model.bin there by hand; {CACHE_ENV} selects the cache)",
            dir.display()
        );
    }

    /// The cached GLUE task directory, once it holds training and validation data.
    pub fn resolve_glue_dir(&self, task: &str) -> Result<PathBuf> {
        let dir = self.glue_dir(task)?;
        if glue_dir_complete(&dir) {
            return Ok(dir);
        }
        bail!(
            "GLUE task {task}: no training and validation data in {} (train-*.parquet and validation*.parquet); \
             run `triadapt fetch glue {task}` (or place the parquet files of {GLUE_REPO} {task}/ there by hand; \
             {CACHE_ENV} selects the cache)",
            dir.display()
        );
    }

    /// The cached SQuAD 2.0 directory, once it holds both files.
    pub fn resolve_squad_dir(&self) -> Result<PathBuf> {
        let dir = self.squad_dir();
        let missing: Vec<&str> = SQUAD2_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
        if missing.is_empty() {
            return Ok(dir);
        }
        bail!(
            "SQuAD 2.0: {} lacks {}; run `triadapt fetch squad2` (or place the files there by hand; {CACHE_ENV} \
             selects the cache)",
            dir.display(),
            missing.join(", ")
        );
    }
}

/// An existing directory `name_or_path` wins; else the cache directory of that hub name, which
/// must hold a complete model; else an error telling to run `triadapt fetch model NAME`.
pub fn resolve_model(name_or_path: &str) -> Result<PathBuf> {
    let path = Path::new(name_or_path);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    Cache::from_env()?.resolve_model(name_or_path)
}

/// The cached `glue/<task>` directory; an error telling to run `triadapt fetch glue TASK` if it
/// lacks training or validation data.
pub fn resolve_glue_dir(task: &str) -> Result<PathBuf> {
    Cache::from_env()?.resolve_glue_dir(task)
}

/// The cached `squad2` directory; an error telling to run `triadapt fetch squad2` if incomplete.
pub fn resolve_squad_dir() -> Result<PathBuf> {
    Cache::from_env()?.resolve_squad_dir()
}

fn check_repo_id(repo: &str) -> Result<()> {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok_part = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if parts.len() > 2 || !parts.iter().all(|p| ok_part(p)) {
        bail!("{repo:?} is not a hub repository id (expected OWNER/NAME, e.g. microsoft/deberta-v3-base)");
    }
    Ok(())
}

fn check_glue_task(task: &str) -> Result<()> {
    if !GLUE_TASKS.contains(&task) {
        bail!("unknown GLUE task {task:?} (expected one of {} or all)", GLUE_TASKS.join(", "));
    }
    Ok(())
}

fn missing_model_files(dir: &Path) -> Vec<String> {
    let mut missing: Vec<String> = MODEL_FILES.iter().filter(|f| !dir.join(f).is_file()).map(|f| f.to_string()).collect();
    if !MODEL_WEIGHTS.iter().any(|f| dir.join(f).is_file()) {
        missing.push("model.safetensors (or pytorch_model.bin)".to_string());
    }
    missing
}

/// Training data (`train-*.parquet` or `train.tsv`) and validation data (`validation*.parquet`
/// or `dev*.tsv`) are both there.
fn glue_dir_complete(dir: &Path) -> bool {
    let names: Vec<String> = match fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => return false,
    };
    let has = |parquet: &str, tsv: &str| {
        names.iter().any(|n| (n.starts_with(parquet) && n.ends_with(".parquet")) || (n.starts_with(tsv) && n.ends_with(".tsv")))
    };
    has("train-", "train") && has("validation", "dev")
}

/// Where files come from: the hub endpoint, the SQuAD base URL, and whether downloads are off.
#[derive(Debug, Clone)]
pub struct Remote {
    pub hf_endpoint: String,
    pub squad_url: String,
    pub offline: bool,
}

impl Remote {
    /// `HF_ENDPOINT`, `TRIADAPT_SQUAD_URL` and `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`), with
    /// the public defaults.
    pub fn from_env() -> Remote {
        let var = |name: &str, default: &str| {
            std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string()).trim_end_matches('/').to_string()
        };
        Remote { hf_endpoint: var(HF_ENDPOINT_ENV, DEFAULT_HF_ENDPOINT), squad_url: var(SQUAD_URL_ENV, DEFAULT_SQUAD_URL), offline: hub_offline() }
    }
}

/// `HF_HUB_OFFLINE` (or `TRANSFORMERS_OFFLINE`) is 1, ON, YES or TRUE.
pub fn hub_offline() -> bool {
    let truthy = |name: &str| std::env::var(name).map(|v| ["1", "ON", "YES", "TRUE"].contains(&v.trim().to_ascii_uppercase().as_str())).unwrap_or(false);
    truthy(HF_OFFLINE_ENV) || truthy("TRANSFORMERS_OFFLINE")
}

fn agent() -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .user_agent(concat!("triadapt/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::new_with_config(config)
}

fn by_hand(dest: &Path) -> String {
    format!(
        "to install it by hand, download it on a machine with network access and place it at {} \
         ({CACHE_ENV} selects the cache directory)",
        dest.display()
    )
}

fn offline_error(url: &str, dest: &Path) -> anyhow::Error {
    anyhow!("{HF_OFFLINE_ENV} is set, so {url} is not downloaded; {}", by_hand(dest))
}

/// Downloads `url` to `dest` (through `dest.part`, resuming one that is there), checks the size
/// and sha256 when known, and renames into place; a `dest` that is already complete is kept.
/// Shows a progress bar when `progress` is true and stderr is a terminal.
pub fn fetch_file(url: &str, dest: &Path, expected_size: Option<u64>, expected_sha256: Option<&str>, progress: bool) -> Result<()> {
    fetch_file_outcome(url, dest, expected_size, expected_sha256, progress, hub_offline()).map(|_| ())
}

/// `fetch_file`, saying whether anything was downloaded; `offline` refuses to download.
pub fn fetch_file_outcome(
    url: &str,
    dest: &Path,
    expected_size: Option<u64>,
    expected_sha256: Option<&str>,
    progress: bool,
    offline: bool,
) -> Result<Outcome> {
    let sha = match expected_sha256 {
        Some(s) if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) => Some(s.to_ascii_lowercase()),
        Some(s) => bail!("{}: expected sha256 {s:?} is not 64 hex digits", dest.display()),
        None => None,
    };
    if is_complete(dest, expected_size, sha.as_deref())? {
        return Ok(Outcome::Present);
    }
    if offline {
        return Err(offline_error(url, dest));
    }
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let part = part_path(dest);
    let agent = agent();
    let show = progress && std::io::stderr().is_terminal();
    let mut retries = RETRIES;
    let mut restarted = false;
    let (digest, len, resumed) = loop {
        match transfer(&agent, url, dest, &part, expected_size, show) {
            Ok(done) => break done,
            Err(Failure::Broken(e)) if retries > 0 => {
                retries -= 1;
                eprintln!("{url}: transfer broke off ({e:#}); resuming");
            }
            Err(Failure::Restart) if !restarted => {
                restarted = true;
                remove_if_exists(&part)?;
            }
            Err(Failure::Restart) => bail!("{url}: the server's ranges do not match the partial file; {}", by_hand(dest)),
            Err(Failure::Broken(e)) => {
                return Err(e.context(format!("cannot download {url} (the partial file {} is kept; rerun to resume); {}", part.display(), by_hand(dest))))
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
    };
    if let Some(n) = expected_size {
        if len != n {
            remove_if_exists(&part)?;
            bail!("{}: downloaded {len} bytes from {url}, expected {n}; the partial file was removed", dest.display());
        }
    }
    if let Some(want) = &sha {
        if &digest != want {
            remove_if_exists(&part)?;
            if resumed && !restarted {
                // The old part may have held wrong bytes: one fresh download before giving up.
                return fetch_file_outcome(url, dest, expected_size, Some(want), progress, offline);
            }
            bail!("{}: sha256 mismatch for the download from {url}: expected {want}, got {digest}; the partial file was removed", dest.display());
        }
    }
    fs::rename(&part, dest).with_context(|| format!("cannot rename {} to {}", part.display(), dest.display()))?;
    Ok(Outcome::Downloaded(len))
}

/// `dest` exists with the expected size and sha256 (each checked only when known).
pub fn is_complete(dest: &Path, expected_size: Option<u64>, expected_sha256: Option<&str>) -> Result<bool> {
    let meta = match fs::metadata(dest) {
        Ok(m) if m.is_file() => m,
        _ => return Ok(false),
    };
    if expected_size.is_some_and(|n| n != meta.len()) {
        return Ok(false);
    }
    match expected_sha256 {
        Some(want) => Ok(sha256_file(dest)?.eq_ignore_ascii_case(want)),
        None => Ok(true),
    }
}

/// The lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    hash_into(path, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hash_into(path: &Path, hasher: &mut Sha256) -> Result<u64> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0u8; BUF_SIZE];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `<dest>.part`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).with_context(|| format!("cannot remove {}", path.display())),
        _ => Ok(()),
    }
}

enum Failure {
    /// The transfer broke off after it began; the `.part` is kept for a resume.
    Broken(anyhow::Error),
    /// The server's answer does not fit the `.part`: start again from nothing.
    Restart,
    /// No point in trying again.
    Fatal(anyhow::Error),
}

/// One request: fills `part` from where it stands (or from nothing when the server ignores the
/// range). Returns the sha256 of the whole part, its length, and whether it was resumed.
fn transfer(agent: &ureq::Agent, url: &str, dest: &Path, part: &Path, expected_size: Option<u64>, show: bool) -> Result<(String, u64, bool), Failure> {
    let io = |e: anyhow::Error| Failure::Fatal(e);
    let mut offset = fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if expected_size.is_some_and(|n| offset > n) {
        remove_if_exists(part).map_err(io)?;
        offset = 0;
    }
    let mut hasher = Sha256::new();
    if offset > 0 && expected_size == Some(offset) {
        // Complete already; only the check and the rename were missing.
        hash_into(part, &mut hasher).map_err(io)?;
        return Ok((hex(&hasher.finalize()), offset, true));
    }
    let mut request = agent.get(url);
    if offset > 0 {
        request = request.header("Range", format!("bytes={offset}-"));
    }
    let response = request.call().map_err(|e| Failure::Fatal(anyhow!("cannot download {url}: {e}; {}", by_hand(dest))))?;
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let content_length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
    match status {
        206 if offset > 0 => {
            let range = header("content-range").and_then(|v| parse_content_range(&v));
            if range.map(|(start, _)| start) != Some(offset) {
                return Err(Failure::Restart);
            }
        }
        200 | 206 => offset = 0, // a server that ignores Range sends everything: start again
        416 if offset > 0 => {
            let total = header("content-range").and_then(|v| parse_content_range(&v)).and_then(|(_, total)| total);
            if total == Some(offset) {
                hash_into(part, &mut hasher).map_err(io)?;
                return Ok((hex(&hasher.finalize()), offset, true));
            }
            return Err(Failure::Restart);
        }
        _ => {
            let hint = match status {
                401 | 403 | 404 => " (not found, private or gated)",
                _ => "",
            };
            return Err(Failure::Fatal(anyhow!("cannot download {url}: HTTP {status}{hint}; {}", by_hand(dest))));
        }
    }
    let mut file = if offset > 0 {
        hash_into(part, &mut hasher).map_err(io)?;
        OpenOptions::new().append(true).open(part)
    } else {
        File::create(part)
    }
    .with_context(|| format!("cannot write {}", part.display()))
    .map_err(io)?;
    let total = expected_size.or(content_length.map(|n| n + offset));
    let bar = show.then(|| progress_bar(dest, total, offset));
    let mut reader = response.into_body().into_reader();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut len = offset;
    let result = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(Failure::Broken(anyhow!(e))),
        };
        if expected_size.is_some_and(|want| len + n as u64 > want) {
            drop(file);
            remove_if_exists(part).map_err(io)?;
            return Err(Failure::Fatal(anyhow!(
                "{}: {url} sends more than the expected {} bytes; the partial file was removed",
                dest.display(),
                expected_size.unwrap_or(0)
            )));
        }
        if let Err(e) = file.write_all(&buf[..n]) {
            break Err(Failure::Fatal(anyhow!(e).context(format!("cannot write {}", part.display()))));
        }
        hasher.update(&buf[..n]);
        len += n as u64;
        if let Some(bar) = &bar {
            bar.set_position(len);
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let synced = file.flush().and_then(|_| file.sync_all()).with_context(|| format!("cannot write {}", part.display()));
    result?;
    synced.map_err(io)?;
    Ok((hex(&hasher.finalize()), len, offset > 0))
}

/// `bytes START-END/TOTAL` or `bytes */TOTAL`: (START, TOTAL); START is 0 for the `*` form.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let total = total.trim().parse().ok();
    if range.trim() == "*" {
        return Some((0, total));
    }
    let start = range.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total))
}

fn progress_bar(dest: &Path, total: Option<u64>, position: u64) -> indicatif::ProgressBar {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (bar, template) = match total {
        Some(n) => (indicatif::ProgressBar::new(n), "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"),
        None => (indicatif::ProgressBar::new_spinner(), "{msg} {spinner} {bytes} {bytes_per_sec}"),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name);
    bar.set_position(position);
    bar.reset_eta();
    bar
}

/// One file to fetch: where from, where to, and what the hub says it is.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub url: String,
    pub dest: PathBuf,
    pub size: Option<u64>,
    pub sha256: Option<String>,
}

/// What a fetch of a model, GLUE task or SQuAD left where.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub dir: PathBuf,
    pub files: Vec<(PathBuf, Outcome)>,
}

/// Fetches `files` in order, telling on stderr what each was.
fn fetch_all(files: &[RemoteFile], progress: bool, offline: bool) -> Result<Vec<(PathBuf, Outcome)>> {
    let mut out = Vec::new();
    for f in files {
        let name = f.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !f.dest.is_file() && !offline {
            eprintln!("downloading {name}{}", f.size.map(|n| format!(" ({})", indicatif::HumanBytes(n))).unwrap_or_default());
        }
        let outcome = fetch_file_outcome(&f.url, &f.dest, f.size, f.sha256.as_deref(), progress, offline)?;
        if outcome == Outcome::Present {
            eprintln!("{name}: already complete");
        }
        out.push((f.dest.clone(), outcome));
    }
    Ok(out)
}

/// GETs a hub API URL as JSON; follows `Link: <...>; rel="next"` pagination for lists.
fn get_json_pages(agent: &ureq::Agent, url: &str, hint: &dyn Fn() -> String) -> Result<Vec<serde_json::Value>> {
    let mut pages = Vec::new();
    let mut next = Some(url.to_string());
    while let Some(url) = next.take() {
        let mut response = agent.get(&url).header("Accept", "application/json").call().map_err(|e| anyhow!("cannot reach {url}: {e}; {}", hint()))?;
        let status = response.status().as_u16();
        if status != 200 {
            let why = match status {
                401 | 403 | 404 => " (not found, private or gated)",
                _ => "",
            };
            bail!("{url}: HTTP {status}{why}; {}", hint());
        }
        next = response.headers().get("link").and_then(|v| v.to_str().ok()).and_then(next_link);
        let text = response.body_mut().with_config().limit(64 * 1024 * 1024).read_to_string().map_err(|e| anyhow!("cannot read {url}: {e}; {}", hint()))?;
        pages.push(serde_json::from_str(&text).with_context(|| format!("{url}: not the JSON the hub API sends"))?);
    }
    Ok(pages)
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"").then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

/// One entry of `GET /api/models/<repo>?blobs=true`'s `siblings` (see `huggingface_hub`'s
/// `ModelInfo`/`RepoSibling`): `lfs.sha256` is the file's sha256 for LFS files.
#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<SiblingLfs>,
}

#[derive(Deserialize)]
struct SiblingLfs {
    sha256: Option<String>,
    size: Option<u64>,
}

#[derive(Deserialize)]
struct ModelInfo {
    siblings: Option<Vec<Sibling>>,
}

/// One entry of `GET /api/datasets/<repo>/tree/<rev>/<path>` (see `huggingface_hub`'s
/// `RepoFile`): `type` is `file` or `directory`; `lfs.oid` is the sha256 for LFS files.
#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    size: Option<u64>,
    lfs: Option<TreeLfs>,
}

#[derive(Deserialize)]
struct TreeLfs {
    oid: Option<String>,
    size: Option<u64>,
}

/// Downloads a hub model's config.json, spm.model and weights (model.safetensors, else
/// pytorch_model.bin) into `models/<owner>/<name>/`.
pub fn fetch_model(remote: &Remote, cache: &Cache, repo: &str, progress: bool) -> Result<FetchReport> {
    let dir = cache.model_dir(repo)?;
    let page = format!("{}/{repo}", remote.hf_endpoint);
    let hint = || {
        format!(
            "to install it by hand, download config.json, spm.model and model.safetensors (or pytorch_model.bin) \
             from {page} and place them in {} ({CACHE_ENV} selects the cache directory)",
            dir.display()
        )
    };
    if remote.offline {
        if missing_model_files(&dir).is_empty() {
            return Ok(FetchReport { files: present_files(&dir)?, dir });
        }
        bail!("{HF_OFFLINE_ENV} is set, so model {repo} is not downloaded; {}", hint());
    }
    let api = format!("{}/api/models/{repo}?blobs=true", remote.hf_endpoint);
    let pages = get_json_pages(&agent(), &api, &hint)?;
    let info: ModelInfo = serde_json::from_value(pages.into_iter().next().unwrap_or_default())
        .with_context(|| format!("{api}: not the model info the hub API sends"))?;
    let siblings = info.siblings.ok_or_else(|| anyhow!("{api}: the model info lists no files"))?;
    let find = |name: &str| siblings.iter().find(|s| s.rfilename == name);
    let weights = MODEL_WEIGHTS[..2].iter().find(|w| find(w).is_some()).ok_or_else(|| {
        anyhow!("{repo} has neither model.safetensors nor pytorch_model.bin at its top level ({api})")
    })?;
    let mut files = Vec::new();
    for name in MODEL_FILES.iter().chain(std::iter::once(weights)) {
        let s = find(name).ok_or_else(|| anyhow!("{repo} has no {name} at its top level ({api}); a DeBERTa model directory needs it"))?;
        let lfs = s.lfs.as_ref();
        files.push(RemoteFile {
            url: format!("{}/{repo}/resolve/main/{name}", remote.hf_endpoint),
            dest: dir.join(name),
            size: lfs.and_then(|l| l.size).or(s.size),
            sha256: lfs.and_then(|l| l.sha256.clone()),
        });
    }
    let files = fetch_all(&files, progress, remote.offline)?;
    Ok(FetchReport { dir, files })
}

/// Downloads the hub's parquet files of one GLUE task into `glue/<task>/`.
pub fn fetch_glue(remote: &Remote, cache: &Cache, task: &str, progress: bool) -> Result<FetchReport> {
    let dir = cache.glue_dir(task)?;
    let page = format!("{}/datasets/{GLUE_REPO}/tree/main/{task}", remote.hf_endpoint);
    let hint = || {
        format!(
            "to install it by hand, download the parquet files listed at {page} and place them in {} \
             ({CACHE_ENV} selects the cache directory)",
            dir.display()
        )
    };
    if remote.offline {
        if glue_dir_complete(&dir) {
            return Ok(FetchReport { files: present_files(&dir)?, dir });
        }
        bail!("{HF_OFFLINE_ENV} is set, so GLUE {task} is not downloaded; {}", hint());
    }
    let api = format!("{}/api/datasets/{GLUE_REPO}/tree/main/{task}", remote.hf_endpoint);
    let mut entries = Vec::new();
    for page in get_json_pages(&agent(), &api, &hint)? {
        let list: Vec<TreeEntry> = serde_json::from_value(page).with_context(|| format!("{api}: not the tree listing the hub API sends"))?;
        entries.extend(list);
    }
    let mut files = Vec::new();
    for e in entries.iter().filter(|e| e.kind == "file" && e.path.ends_with(".parquet")) {
        let name = e.path.rsplit('/').next().unwrap_or(&e.path);
        let lfs = e.lfs.as_ref();
        files.push(RemoteFile {
            url: format!("{}/datasets/{GLUE_REPO}/resolve/main/{}", remote.hf_endpoint, e.path),
            dest: dir.join(name),
            size: lfs.and_then(|l| l.size).or(e.size),
            sha256: lfs.and_then(|l| l.oid.clone()),
        });
    }
    let named = |prefix: &str| files.iter().any(|f| f.dest.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)));
    if !named("train-") || !named("validation") {
        bail!("{api} lists no train-*.parquet and validation*.parquet files for {task}; {}", hint());
    }
    let files = fetch_all(&files, progress, remote.offline)?;
    Ok(FetchReport { dir, files })
}

/// Downloads SQuAD 2.0's train-v2.0.json and dev-v2.0.json into `squad2/`.
pub fn fetch_squad2(remote: &Remote, cache: &Cache, progress: bool) -> Result<FetchReport> {
    let dir = cache.squad_dir();
    let files: Vec<RemoteFile> = SQUAD2_FILES
        .iter()
        .map(|f| RemoteFile { url: format!("{}/{f}", remote.squad_url), dest: dir.join(f), size: None, sha256: None })
        .collect();
    let files = fetch_all(&files, progress, remote.offline)?;
    Ok(FetchReport { dir, files })
}

fn present_files(dir: &Path) -> Result<Vec<(PathBuf, Outcome)>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|x| x != "part"))
        .collect();
    files.sort();
    Ok(files.into_iter().map(|p| (p, Outcome::Present)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_and_link_headers() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes */200"), Some((0, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(next_link("<https://h/api?cursor=x>; rel=\"next\""), Some("https://h/api?cursor=x".to_string()));
        assert_eq!(next_link("<https://h/a>; rel=\"prev\""), None);
    }

    #[test]
    fn cache_layout_and_names() {
        let cache = Cache::at("/c");
        assert_eq!(cache.model_dir("microsoft/deberta-v3-base").unwrap(), Path::new("/c/models/microsoft/deberta-v3-base"));
        assert_eq!(cache.glue_dir("rte").unwrap(), Path::new("/c/glue/rte"));
        assert_eq!(cache.squad_dir(), Path::new("/c/squad2"));
        assert!(cache.model_dir("../x").is_err());
        assert!(cache.model_dir("a/b/c").is_err());
        assert!(cache.glue_dir("wnli").is_err());
        assert_eq!(part_path(Path::new("/c/x.bin")), Path::new("/c/x.bin.part"));
    }
}
