//! Downloads: hub models and the hub's GLUE parquet files through the `hf-hub` crate into the
//! Hugging Face cache (see [`super::hub`] for the layout, the variables and the offline look-ups),
//! and SQuAD 2.0's JSON files (not on the hub) with a small downloader of our own into
//! triadapt's cache.
//!
//! Hub files: a file already in the snapshot of the resolved commit is not fetched again; a blob
//! another revision already holds is linked, not downloaded; a download goes to
//! `blobs/<etag>.part`, resumes from it, and is checked against the size and (LFS files) the
//! sha256 the hub sends before it is linked into `snapshots/<commit>/`. `refs/<revision>` records
//! the commit a branch or tag resolved to.
//!
//! SQuAD files are downloaded to `<file>.part`, resumed with an HTTP `Range` request when a
//! `.part` is already there, and renamed into place only when complete. `TRIADAPT_SQUAD_URL`
//! overrides their base URL. `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`) forbids every
//! download.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use super::hub::{self, HubRef, RepoKind, CACHE_ENV, GLUE_REPO, HF_OFFLINE_ENV, MODEL_FILES, MODEL_WEIGHTS, SQUAD2_FILES};

/// Overrides the base URL the SQuAD 2.0 files are fetched from (`<base>/train-v2.0.json`).
pub const SQUAD_URL_ENV: &str = "TRIADAPT_SQUAD_URL";
pub const DEFAULT_SQUAD_URL: &str = "https://rajpurkar.github.io/SQuAD-explorer/dataset";

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

/// Where downloads come from and what they may do, from the environment.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `$HF_ENDPOINT`, else the public hub.
    pub hf_endpoint: String,
    pub squad_url: String,
    /// `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE`.
    pub offline: bool,
    /// `HF_TOKEN` or the token file, for gated and private repositories.
    pub token: Option<String>,
}

impl Remote {
    pub fn from_env() -> Remote {
        let squad = std::env::var(SQUAD_URL_ENV).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| DEFAULT_SQUAD_URL.to_string());
        Remote {
            hf_endpoint: hub::hub_endpoint(),
            squad_url: squad.trim_end_matches('/').to_string(),
            offline: hub::hub_offline(),
            token: hub::hub_token(),
        }
    }
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
    fetch_file_outcome(url, dest, expected_size, expected_sha256, progress, hub::hub_offline()).map(|_| ())
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
                return Err(e.context(format!(
                    "cannot download {url} (the partial file {} is kept; rerun to resume); {}",
                    part.display(),
                    by_hand(dest)
                )))
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
            bail!(
                "{}: sha256 mismatch for the download from {url}: expected {want}, got {digest}; the partial file was removed",
                dest.display()
            );
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
fn transfer(
    agent: &ureq::Agent,
    url: &str,
    dest: &Path,
    part: &Path,
    expected_size: Option<u64>,
    show: bool,
) -> Result<(String, u64, bool), Failure> {
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

/// What one fetch left where: the directory, each file, and (hub) the commit it came from.
#[derive(Debug, Clone)]
pub struct FetchReport {
    pub dir: PathBuf,
    pub files: Vec<(PathBuf, Outcome)>,
    pub commit: Option<String>,
}

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

/// The `hf-hub` client on the Hugging Face cache `cache`, with our endpoint, token and retries.
fn hub_api(remote: &Remote, cache: &Path, progress: bool) -> Result<hf_hub::api::sync::Api> {
    hf_hub::api::sync::ApiBuilder::from_cache(hf_hub::Cache::new(cache.to_path_buf()))
        .with_endpoint(remote.hf_endpoint.clone())
        .with_token(remote.token.clone())
        .with_progress(progress && std::io::stderr().is_terminal())
        .with_retries(RETRIES)
        .with_user_agent("triadapt", env!("CARGO_PKG_VERSION"))
        .build()
        .map_err(|e| anyhow!("cannot set up the hub client: {e}"))
}

/// An `hf-hub` error as a sentence: the URL, the HTTP status and what it usually means.
fn hub_error(e: hf_hub::api::sync::ApiError, url: &str) -> anyhow::Error {
    use hf_hub::api::sync::ApiError;
    let status = match &e {
        ApiError::RequestError(inner) => match inner.as_ref() {
            ureq::Error::StatusCode(code) => Some(*code),
            _ => None,
        },
        _ => None,
    };
    match status {
        Some(code @ (401 | 403)) => anyhow!("{url}: HTTP {code} (private or gated: accept the model's terms on the hub and set HF_TOKEN, or log in with `huggingface-cli login`)"),
        Some(404) => anyhow!("{url}: HTTP 404 (no such repository, revision or file; or private: set HF_TOKEN)"),
        Some(code) => anyhow!("{url}: HTTP {code}"),
        None => anyhow!("{url}: {e}"),
    }
}

fn hub_repo(kind: RepoKind, r: &HubRef) -> hf_hub::Repo {
    let t = match kind {
        RepoKind::Model => hf_hub::RepoType::Model,
        RepoKind::Dataset => hf_hub::RepoType::Dataset,
    };
    hf_hub::Repo::with_revision(r.repo.clone(), t, r.revision.clone())
}

/// The commit `r` resolves to on the hub and the files it holds.
fn hub_listing(api: &hf_hub::api::sync::Api, kind: RepoKind, r: &HubRef, endpoint: &str) -> Result<(String, Vec<String>)> {
    let repo = hub_repo(kind, r);
    let prefix = if kind == RepoKind::Dataset { "datasets" } else { "models" };
    let url = format!("{endpoint}/api/{prefix}/{}/revision/{}", r.repo, r.revision);
    let info = api.repo(repo).info().map_err(|e| hub_error(e, &url))?;
    Ok((info.sha, info.siblings.into_iter().map(|s| s.rfilename).collect()))
}

/// Points `snapshots/<commit>/<file>` at `blobs/<etag>` with a relative link, as huggingface_hub does.
fn link_pointer(pointer: &Path, blob: &Path, file: &str) -> Result<()> {
    if let Some(parent) = pointer.parent() {
        fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let ups = Path::new(file).components().count() + 1;
    let mut target = PathBuf::new();
    for _ in 0..ups {
        target.push("..");
    }
    target.push("blobs");
    target.push(blob.file_name().expect("blob has a name"));
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, pointer).with_context(|| format!("cannot link {} to {}", pointer.display(), blob.display()))?;
    #[cfg(not(unix))]
    fs::copy(blob, pointer).with_context(|| format!("cannot copy {} to {}", blob.display(), pointer.display()))?;
    Ok(())
}

/// Checks a downloaded blob against the size and (LFS: a sha256 etag) the digest the hub sent;
/// removes it and its link when it does not match.
fn verify_blob(blob: &Path, pointer: &Path, size: usize, etag: &str, url: &str) -> Result<()> {
    let len = fs::metadata(blob).map(|m| m.len()).unwrap_or(0);
    let sha = (etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit())).then(|| etag.to_ascii_lowercase());
    let bad = if len != size as u64 {
        Some(format!("{len} bytes, the hub lists {size}"))
    } else if let Some(want) = &sha {
        let got = sha256_file(blob)?;
        (&got != want).then(|| format!("sha256 {got}, the hub lists {want}"))
    } else {
        None
    };
    if let Some(why) = bad {
        remove_if_exists(pointer)?;
        remove_if_exists(blob)?;
        bail!("{url}: the download is {why}; it was removed (rerun to download it again)");
    }
    Ok(())
}

/// Makes `file` of `r` present in the snapshot `commit` of the cache: already there, linked to a
/// blob the cache holds, or downloaded.
fn hub_file(
    api: &hf_hub::api::sync::Api,
    cache: &Path,
    kind: RepoKind,
    r: &HubRef,
    commit: &str,
    file: &str,
) -> Result<(PathBuf, Outcome)> {
    let folder = hub::repo_folder(cache, kind, &r.repo);
    let pointer = folder.join("snapshots").join(commit).join(file);
    if pointer.is_file() {
        eprintln!("{file}: already in the cache");
        return Ok((pointer, Outcome::Present));
    }
    // The commit, not the branch: every file of one fetch comes from the same revision.
    let at_commit = HubRef { repo: r.repo.clone(), revision: commit.to_string() };
    let api_repo = api.repo(hub_repo(kind, &at_commit));
    let url = api_repo.url(file);
    let meta = api.metadata(&url).map_err(|e| hub_error(e, &url))?;
    let blob = folder.join("blobs").join(meta.etag());
    if blob.is_file() && fs::metadata(&blob).map(|m| m.len()).unwrap_or(0) == meta.size() as u64 {
        link_pointer(&pointer, &blob, file)?;
        eprintln!("{file}: already in the cache (another revision's copy)");
        return Ok((pointer, Outcome::Present));
    }
    eprintln!("downloading {file} ({})", indicatif::HumanBytes(meta.size() as u64));
    let path = api_repo
        .download(file)
        .map_err(|e| hub_error(e, &url).context(format!("the partial download {}.part is kept; rerun to resume", blob.display())))?;
    verify_blob(&blob, &path, meta.size(), meta.etag(), &url)?;
    Ok((path, Outcome::Downloaded(meta.size() as u64)))
}

/// Records the commit a branch or tag resolved to (`refs/<revision>`), as huggingface_hub does.
fn write_ref(cache: &Path, kind: RepoKind, r: &HubRef, commit: &str) -> Result<()> {
    if r.is_commit() {
        return Ok(());
    }
    hf_hub::Cache::new(cache.to_path_buf())
        .repo(hub_repo(kind, r))
        .create_ref(commit)
        .with_context(|| format!("cannot write the ref {} of {} in {}", r.revision, r.repo, cache.display()))
}

fn present_files(dir: &Path, names: &[&str]) -> Vec<(PathBuf, Outcome)> {
    names.iter().map(|n| dir.join(n)).filter(|p| p.is_file()).map(|p| (p, Outcome::Present)).collect()
}

/// Fetches a hub model (`owner/name[@revision]`): config.json, spm.model and its weights
/// (model.safetensors, else pytorch_model.bin) into the Hugging Face cache `cache`.
pub fn fetch_model(remote: &Remote, cache: &Path, name: &str, progress: bool) -> Result<FetchReport> {
    let r = HubRef::parse(name)?;
    if remote.offline {
        let found =
            hub::resolve_model_in(cache, name).map_err(|e| anyhow!("{HF_OFFLINE_ENV} is set, so model {r} is not downloaded: {e:#}"))?;
        let files = present_files(&found.dir, &[MODEL_FILES[0], MODEL_FILES[1], MODEL_WEIGHTS[0], MODEL_WEIGHTS[1]]);
        return Ok(FetchReport { dir: found.dir, files, commit: found.commit });
    }
    let api = hub_api(remote, cache, progress)?;
    let (commit, listed) = hub_listing(&api, RepoKind::Model, &r, &remote.hf_endpoint)?;
    let weights = MODEL_WEIGHTS[..2].iter().find(|w| listed.iter().any(|f| f == *w)).ok_or_else(|| {
        anyhow!("{r} has neither model.safetensors nor pytorch_model.bin at its top level ({}/{})", remote.hf_endpoint, r.repo)
    })?;
    let mut files = Vec::new();
    for file in MODEL_FILES.iter().chain(std::iter::once(weights)) {
        if !listed.iter().any(|f| f == file) {
            bail!("{r} has no {file} at its top level ({}/{}); a DeBERTa model directory needs it", remote.hf_endpoint, r.repo);
        }
        files.push(hub_file(&api, cache, RepoKind::Model, &r, &commit, file)?);
    }
    write_ref(cache, RepoKind::Model, &r, &commit)?;
    let dir = hub::repo_folder(cache, RepoKind::Model, &r.repo).join("snapshots").join(&commit);
    Ok(FetchReport { dir, files, commit: Some(commit) })
}

/// Fetches the hub's parquet files of one GLUE task (`nyu-mll/glue`, `<task>/`) into the
/// Hugging Face cache `cache`.
pub fn fetch_glue(remote: &Remote, cache: &Path, task: &str, progress: bool) -> Result<FetchReport> {
    hub::check_glue_task(task)?;
    if remote.offline {
        let dir = hub::resolve_glue_dir_in(cache, task)
            .map_err(|e| anyhow!("{HF_OFFLINE_ENV} is set, so GLUE {task} is not downloaded: {e:#}"))?;
        let mut files: Vec<(PathBuf, Outcome)> = fs::read_dir(&dir)?.filter_map(|e| e.ok()).map(|e| (e.path(), Outcome::Present)).collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        return Ok(FetchReport { dir, files, commit: None });
    }
    let r = HubRef { repo: GLUE_REPO.into(), revision: "main".into() };
    let api = hub_api(remote, cache, progress)?;
    let (commit, listed) = hub_listing(&api, RepoKind::Dataset, &r, &remote.hf_endpoint)?;
    let wanted: Vec<&String> = listed.iter().filter(|f| f.starts_with(&format!("{task}/")) && f.ends_with(".parquet")).collect();
    let named = |prefix: &str| wanted.iter().any(|f| f.starts_with(&format!("{task}/{prefix}")));
    if !named("train-") || !named("validation") {
        bail!("{}/datasets/{GLUE_REPO} lists no {task}/train-*.parquet and {task}/validation*.parquet", remote.hf_endpoint);
    }
    let mut files = Vec::new();
    for file in wanted {
        files.push(hub_file(&api, cache, RepoKind::Dataset, &r, &commit, file)?);
    }
    write_ref(cache, RepoKind::Dataset, &r, &commit)?;
    let dir = hub::repo_folder(cache, RepoKind::Dataset, GLUE_REPO).join("snapshots").join(&commit).join(task);
    Ok(FetchReport { dir, files, commit: Some(commit) })
}

/// Downloads SQuAD 2.0's train-v2.0.json and dev-v2.0.json into `squad2/`.
pub fn fetch_squad2(remote: &Remote, own_cache: &Path, progress: bool) -> Result<FetchReport> {
    let dir = own_cache.join("squad2");
    let files: Vec<RemoteFile> = SQUAD2_FILES
        .iter()
        .map(|f| RemoteFile { url: format!("{}/{f}", remote.squad_url), dest: dir.join(f), size: None, sha256: None })
        .collect();
    let files = fetch_all(&files, progress, remote.offline)?;
    Ok(FetchReport { dir, files, commit: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_headers() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes */200"), Some((0, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(part_path(Path::new("/c/x.bin")), Path::new("/c/x.bin.part"));
    }
}
