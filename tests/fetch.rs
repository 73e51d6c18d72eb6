//! Downloads against a local HTTP server that the test starts on 127.0.0.1 (`HF_ENDPOINT` points
//! the hub at it): our SQuAD downloader (hash checks, resume through Range requests, servers that
//! ignore Range, broken transfers, unreachable hosts); a fake hub for models and GLUE fetched with
//! hf-hub into the Hugging Face cache (revisions, refs, shared blobs, tokens, offline mode), and
//! the cache shared with Python's huggingface_hub in both directions.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use triadapt::data::fetch::{fetch_file, fetch_file_outcome, fetch_glue, fetch_model, fetch_squad2, part_path, Outcome, Remote};
use triadapt::data::hub::{resolve_glue_dir_in, resolve_model_in, resolve_squad_dir_in};

/// How a path is served.
#[derive(Clone)]
struct Route {
    body: Vec<u8>,
    content_type: &'static str,
    /// Answer Range requests with the whole file (200), as some servers do.
    ignore_range: bool,
    /// Cut the first this-many responses off after half the body.
    truncate_first: usize,
    /// Extra response headers (the hub's x-repo-commit, etag).
    headers: Vec<(String, String)>,
    /// Answer 401 unless the request carries `Authorization: Bearer <token>`.
    token: Option<String>,
}

impl Route {
    fn plain(body: Vec<u8>) -> Route {
        Route { body, content_type: "application/octet-stream", ignore_range: false, truncate_first: 0, headers: Vec::new(), token: None }
    }
}

/// One request the server saw: method, path (query kept), Range and Authorization headers.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

struct Server {
    base: String,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (r, s) = (routes.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &r, &s);
                });
            }
        });
        Server { base, routes, seen }
    }

    fn file(&self, path: &str, body: &[u8]) {
        self.route(path, Route::plain(body.to_vec()));
    }

    fn route(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_string(), route);
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, routes: &Mutex<HashMap<String, Route>>, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let method = line.split_whitespace().next().unwrap_or("GET").to_string();
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (mut range, mut auth) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            } else if k.trim().eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    seen.lock().unwrap().push(Seen { method: method.clone(), path: path.clone(), range: range.clone(), auth: auth.clone() });
    let route = {
        let mut routes = routes.lock().unwrap();
        let key = path.split('?').next().unwrap_or("").to_string();
        let route = routes.get(&key).cloned();
        if let Some(r) = routes.get_mut(&key) {
            r.truncate_first = r.truncate_first.saturating_sub(1);
        }
        route
    };
    let mut out = stream;
    let Some(route) = route else {
        return out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    };
    if let Some(token) = &route.token {
        if auth.as_deref() != Some(format!("Bearer {token}").as_str()) {
            return out.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    }
    let len = route.body.len();
    // `bytes=START-` or `bytes=START-END` (inclusive).
    let span = range.as_deref().filter(|_| !route.ignore_range).and_then(|r| r.strip_prefix("bytes=")).and_then(|r| {
        let (a, b) = r.split_once('-')?;
        let start = a.parse::<usize>().ok()?;
        let end = if b.is_empty() { len.saturating_sub(1) } else { b.parse::<usize>().ok()?.min(len.saturating_sub(1)) };
        Some((start, end))
    });
    let (status, extra, body) = match span {
        Some((s, _)) if s >= len => ("416 Range Not Satisfiable", format!("Content-Range: bytes */{len}\r\n"), &route.body[..0]),
        Some((s, e)) => ("206 Partial Content", format!("Content-Range: bytes {s}-{e}/{len}\r\n"), &route.body[s..=e]),
        None => ("200 OK", String::new(), &route.body[..]),
    };
    let headers: String = route.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}{headers}Connection: close\r\n\r\n",
        route.content_type,
        body.len()
    );
    out.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    if route.truncate_first > 0 {
        out.write_all(&body[..body.len() / 2])?;
        out.flush()?;
        return out.shutdown(std::net::Shutdown::Both);
    }
    out.write_all(body)
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic, non-repeating test bytes.
fn payload(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| ((i * 31 + i / 251) as u8).wrapping_add(seed)).collect()
}

/// Every variable that steers downloads and caches: removed so that the caller's environment
/// cannot leak in.
const ENV_VARS: [&str; 11] = [
    "TRIADAPT_CACHE",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TRIADAPT_SQUAD_URL",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
];

fn triadapt(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_triadapt"));
    cmd.args(args);
    for var in ENV_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied());
    cmd.output().expect("run triadapt")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn full_download_checks_size_and_hash() {
    let server = Server::start();
    let data = payload(300_000, 1);
    server.file("/f.bin", &data);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("sub/dir/f.bin");
    let out = fetch_file_outcome(&server.url("/f.bin"), &dest, Some(data.len() as u64), Some(&sha256(&data)), false, false).unwrap();
    assert_eq!(out, Outcome::Downloaded(data.len() as u64));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert!(!part_path(&dest).exists());
    assert!(server.seen().iter().all(|s| s.range.is_none()));

    // Complete already: nothing is requested again.
    let before = server.seen().len();
    let again = fetch_file_outcome(&server.url("/f.bin"), &dest, Some(data.len() as u64), Some(&sha256(&data)), false, false).unwrap();
    assert_eq!(again, Outcome::Present);
    assert_eq!(server.seen().len(), before);

    // A destination that does not match its hash is fetched anew.
    std::fs::write(&dest, b"stale").unwrap();
    fetch_file(&server.url("/f.bin"), &dest, None, Some(&sha256(&data)), false).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[test]
fn partial_file_resumes_with_a_range_request() {
    let server = Server::start();
    let data = payload(200_000, 2);
    server.file("/model.safetensors", &data);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("model.safetensors");
    std::fs::write(part_path(&dest), &data[..75_000]).unwrap();
    let out =
        fetch_file_outcome(&server.url("/model.safetensors"), &dest, Some(data.len() as u64), Some(&sha256(&data)), false, false).unwrap();
    assert_eq!(out, Outcome::Downloaded(data.len() as u64));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].range.as_deref(), Some("bytes=75000-"));
    assert!(!part_path(&dest).exists());
}

#[test]
fn server_ignoring_range_restarts_the_download() {
    let server = Server::start();
    let data = payload(120_000, 3);
    server.route("/x.parquet", Route { ignore_range: true, ..Route::plain(data.clone()) });
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("x.parquet");
    // The old part holds wrong bytes too: the 200 answer must replace it, not be appended.
    std::fs::write(part_path(&dest), vec![0xAAu8; 50_000]).unwrap();
    fetch_file(&server.url("/x.parquet"), &dest, Some(data.len() as u64), Some(&sha256(&data)), false).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(server.seen()[0].range.as_deref(), Some("bytes=50000-"));
}

#[test]
fn broken_transfer_is_resumed_automatically() {
    let server = Server::start();
    let data = payload(100_000, 4);
    server.route("/b.bin", Route { truncate_first: 1, ..Route::plain(data.clone()) });
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("b.bin");
    fetch_file(&server.url("/b.bin"), &dest, Some(data.len() as u64), Some(&sha256(&data)), false).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    assert_eq!(seen[1].range.as_deref(), Some("bytes=50000-"));
}

#[test]
fn wrong_hash_is_an_error_naming_the_file() {
    let server = Server::start();
    let data = payload(10_000, 5);
    server.file("/spm.model", &data);
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("spm.model");
    let wrong = sha256(b"something else");
    let err = fetch_file(&server.url("/spm.model"), &dest, None, Some(&wrong), false).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    assert!(msg.contains("sha256") && msg.contains(&wrong), "{msg}");
    assert!(!dest.exists() && !part_path(&dest).exists());

    // A wrong size is an error too.
    let err = fetch_file(&server.url("/spm.model"), &dest, Some(9_999), None, false).unwrap_err();
    assert!(format!("{err:#}").contains(&dest.display().to_string()));
    assert!(!dest.exists());

    // And an HTTP error names the URL.
    let err = fetch_file(&server.url("/missing"), &dest, None, None, false).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&server.url("/missing")) && msg.contains("404"), "{msg}");
}

#[test]
fn unreachable_host_names_url_destination_and_cache_variable() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/config.json");
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("models/o/n/config.json");
    let err = fetch_file(&url, &dest, None, None, false).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    assert!(msg.contains("TRIADAPT_CACHE") && msg.contains("by hand"), "{msg}");
}

/// A file of a fake hub repository: its bytes and whether the hub stores it in LFS (etag =
/// sha256) or in git (etag = a git object id).
struct HubFile {
    name: String,
    body: Vec<u8>,
    lfs: bool,
}

fn hub_file(name: &str, body: Vec<u8>, lfs: bool) -> HubFile {
    HubFile { name: name.to_string(), body, lfs }
}

fn git_oid(body: &[u8]) -> String {
    sha256(body)[..40].to_string()
}

/// Serves `files` of the repository `repo` (`models`: `owner/name`; `datasets`: under
/// `/datasets/`) at `commit` for each of `revisions`: the API's revision info
/// (`/api/<kind>/<repo>/revision/<rev>`: sha and siblings) and each file under
/// `/<repo>/resolve/<rev or commit>/<file>` with the headers hf-hub and huggingface_hub read.
fn serve_repo(server: &Server, kind: &str, repo: &str, commit: &str, revisions: &[&str], files: &[HubFile], token: Option<&str>) {
    let siblings: Vec<serde_json::Value> = files.iter().map(|f| serde_json::json!({ "rfilename": f.name })).collect();
    let prefix = if kind == "datasets" { "/datasets" } else { "" };
    for rev in revisions.iter().copied().chain(std::iter::once(commit)) {
        let info = serde_json::json!({ "id": repo, "sha": commit, "siblings": siblings });
        server.route(
            &format!("/api/{kind}/{repo}/revision/{rev}"),
            Route {
                content_type: "application/json",
                ignore_range: true,
                token: token.map(str::to_string),
                ..Route::plain(info.to_string().into_bytes())
            },
        );
        for f in files {
            let etag = if f.lfs { sha256(&f.body) } else { git_oid(&f.body) };
            let mut headers = vec![("X-Repo-Commit".to_string(), commit.to_string()), ("ETag".to_string(), format!("\"{etag}\""))];
            if f.lfs {
                headers.push(("X-Linked-Etag".to_string(), format!("\"{etag}\"")));
            }
            server.route(
                &format!("{prefix}/{repo}/resolve/{rev}/{}", f.name),
                Route { headers, token: token.map(str::to_string), ..Route::plain(f.body.clone()) },
            );
        }
    }
}

const COMMIT_A: &str = "a000000000000000000000000000000000000001";
const COMMIT_B: &str = "b000000000000000000000000000000000000002";

/// A tiny fixture model as a hub repository (a real model, so that it also runs).
fn model_files(fixture: &str) -> Vec<HubFile> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models").join(fixture);
    vec![
        hub_file(".gitattributes", b"*.safetensors filter=lfs\n".to_vec(), false),
        hub_file("config.json", std::fs::read(dir.join("config.json")).unwrap(), false),
        hub_file("spm.model", std::fs::read(dir.join("spm.model")).unwrap(), true),
        hub_file("model.safetensors", std::fs::read(dir.join("model.safetensors")).unwrap(), true),
    ]
}

fn remote(server: &Server, offline: bool) -> Remote {
    Remote { hf_endpoint: server.base.clone(), squad_url: server.url("/squad"), offline, token: None }
}

fn resolve_requests(server: &Server) -> usize {
    server.seen().iter().filter(|s| s.path.contains("/resolve/")).count()
}

#[test]
fn fetch_model_fills_the_hf_cache_with_a_revision_and_finds_it_again() {
    let server = Server::start();
    let files = model_files("v3");
    serve_repo(&server, "models", "tiny/deberta", COMMIT_A, &["main", "v1"], &files, None);
    let cache = tempfile::tempdir().unwrap();
    let envs = [("HF_HUB_CACHE", cache.path().to_str().unwrap()), ("HF_ENDPOINT", server.base.as_str())];
    let out = triadapt(&["fetch", "model", "tiny/deberta@v1", "--quiet"], &envs);
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = cache.path().join("models--tiny--deberta");
    let snap = folder.join("snapshots").join(COMMIT_A);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), snap.display().to_string());
    assert_eq!(std::fs::read_to_string(folder.join("refs/v1")).unwrap(), COMMIT_A);
    for f in &files[1..] {
        assert_eq!(std::fs::read(snap.join(&f.name)).unwrap(), f.body, "{}", f.name);
        let link = std::fs::read_link(snap.join(&f.name)).unwrap();
        let etag = if f.lfs { sha256(&f.body) } else { git_oid(&f.body) };
        assert_eq!(link, std::path::Path::new("../../blobs").join(etag), "{}", f.name);
    }
    assert!(!snap.join(".gitattributes").exists(), "only the files a model needs");
    let found = resolve_model_in(cache.path(), "tiny/deberta@v1").unwrap();
    assert_eq!((found.dir.as_path(), found.commit.as_deref()), (snap.as_path(), Some(COMMIT_A)));
    assert!(resolve_model_in(cache.path(), "tiny/deberta").is_err(), "main was never fetched");
    assert_eq!(resolve_model_in(cache.path(), &format!("tiny/deberta@{COMMIT_A}")).unwrap().dir, snap);

    // Again, and main (same commit): only the revision info is asked for, nothing downloaded.
    let before = resolve_requests(&server);
    let report = fetch_model(&remote(&server, false), cache.path(), "tiny/deberta", false).unwrap();
    assert_eq!(report.dir, snap);
    assert!(report.files.iter().all(|(_, o)| *o == Outcome::Present));
    assert_eq!(resolve_requests(&server), before);
    assert_eq!(std::fs::read_to_string(folder.join("refs/main")).unwrap(), COMMIT_A);

    // The model runs from its hub name, offline, and a run records the commit it used.
    let predict = |model: &str| {
        let input = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inputs/demo.jsonl");
        let mut envs = envs.to_vec();
        envs.push(("HF_HUB_OFFLINE", "1"));
        let o = triadapt(&["predict", "--model", model, "--input", input.to_str().unwrap()], &envs);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(predict("tiny/deberta@v1"), predict(snap.to_str().unwrap()));
    // Backbone only, as the hub's deberta-v3 checkpoints: the task's head starts fresh.
    serve_repo(&server, "models", "tiny/backbone", COMMIT_B, &["main", "v1"], &model_files("v3_backbone"), None);
    assert!(fetch_model(&remote(&server, false), cache.path(), "tiny/backbone@v1", false).is_ok());
    let run = cache.path().join("run");
    let root = env!("CARGO_MANIFEST_DIR");
    let config = format!("{root}/experiments/synthetic_rte.yaml");
    let data = format!("data_dir={root}/data/synthetic/rte");
    let mut envs_off = envs.to_vec();
    envs_off.push(("HF_HUB_OFFLINE", "1"));
    let o = triadapt(
        &[
            "train",
            "--config",
            &config,
            "--method",
            "lora",
            "--set",
            "model=tiny/backbone@v1",
            "--set",
            &data,
            "--set",
            "max_steps=2",
            "--set",
            "eval_steps=2",
            "--out",
            run.to_str().unwrap(),
        ],
        &envs_off,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let info: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("run_info.json")).unwrap()).unwrap();
    assert_eq!((info["model"].as_str(), info["model_commit"].as_str()), (Some("tiny/backbone@v1"), Some(COMMIT_B)));
}

#[test]
fn hub_downloads_are_checked_and_errors_say_why() {
    let server = Server::start();
    let cache = tempfile::tempdir().unwrap();
    // A repository the hub does not know.
    let msg = format!("{:#}", fetch_model(&remote(&server, false), cache.path(), "nobody/nothing", false).unwrap_err());
    assert!(msg.contains("/api/models/nobody/nothing/revision/main") && msg.contains("404"), "{msg}");

    // A download whose bytes do not match the sha256 the hub sends is removed.
    let mut files = model_files("v3");
    let good = files[2].body.clone();
    serve_repo(&server, "models", "bad/model", COMMIT_A, &["main"], &files, None);
    files[2].body[0] ^= 0xFF;
    let etag = sha256(&good);
    server.route(
        &format!("/bad/model/resolve/{COMMIT_A}/spm.model"),
        Route {
            headers: vec![("X-Repo-Commit".into(), COMMIT_A.into()), ("ETag".into(), format!("\"{etag}\""))],
            ..Route::plain(files[2].body.clone())
        },
    );
    let msg = format!("{:#}", fetch_model(&remote(&server, false), cache.path(), "bad/model", false).unwrap_err());
    assert!(msg.contains("sha256") && msg.contains(&etag) && msg.contains("removed"), "{msg}");
    let blob = cache.path().join("models--bad--model/blobs").join(&etag);
    assert!(!blob.exists() && !cache.path().join("models--bad--model/snapshots").join(COMMIT_A).join("spm.model").exists());

    // A gated repository: refused without a token, fetched with HF_TOKEN or the token file.
    serve_repo(&server, "models", "gated/model", COMMIT_B, &["main"], &model_files("v3"), Some("hf_secret"));
    let hub = [("HF_HUB_CACHE", cache.path().to_str().unwrap()), ("HF_ENDPOINT", server.base.as_str())];
    let out = triadapt(&["fetch", "model", "gated/model", "--quiet"], &hub);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("401") && stderr(&out).contains("HF_TOKEN"), "{}", stderr(&out));
    let mut with_token = hub.to_vec();
    with_token.push(("HF_TOKEN", "hf_secret"));
    let out = triadapt(&["fetch", "model", "gated/model", "--quiet"], &with_token);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(server.seen().iter().filter(|s| s.path.starts_with("/gated/")).all(|s| s.auth.as_deref() == Some("Bearer hf_secret")));
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("token"), "hf_secret\n").unwrap();
    let cache2 = home.path().join("hub");
    let out = triadapt(
        &["fetch", "model", "gated/model", "--quiet"],
        &[("HF_HOME", home.path().to_str().unwrap()), ("HF_ENDPOINT", server.base.as_str())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        cache2.join("models--gated--model/snapshots").join(COMMIT_B).join("model.safetensors").is_file(),
        "HF_HOME/hub is the default cache"
    );

    // Offline: no request, and the message names the exact place looked at.
    let before = server.seen().len();
    let out = triadapt(
        &["fetch", "model", "microsoft/deberta-v3-base"],
        &[("HF_HUB_CACHE", cache.path().to_str().unwrap()), ("HF_ENDPOINT", server.base.as_str()), ("HF_HUB_OFFLINE", "1")],
    );
    assert!(!out.status.success());
    let msg = stderr(&out);
    let refs = cache.path().join("models--microsoft--deberta-v3-base/refs/main");
    assert!(
        msg.contains("HF_HUB_OFFLINE")
            && msg.contains(&refs.display().to_string())
            && msg.contains("triadapt fetch model microsoft/deberta-v3-base"),
        "{msg}"
    );
    assert_eq!(server.seen().len(), before);
}

/// A fake `nyu-mll/glue` dataset repository.
fn glue_files(tasks: &[&str]) -> Vec<HubFile> {
    let mut files = vec![hub_file("README.md", b"glue".to_vec(), false)];
    for (i, task) in tasks.iter().enumerate() {
        let seed = 10 * i as u8;
        files.push(hub_file(&format!("{task}/test-00000-of-00001.parquet"), payload(3_000, seed + 1), true));
        files.push(hub_file(&format!("{task}/train-00000-of-00001.parquet"), payload(50_000, seed + 2), true));
        files.push(hub_file(&format!("{task}/validation-00000-of-00001.parquet"), payload(7_000, seed + 3), true));
    }
    files
}

#[test]
fn fetch_glue_into_the_hf_cache_across_commits() {
    let server = Server::start();
    serve_repo(&server, "datasets", "nyu-mll/glue", COMMIT_A, &["main"], &glue_files(&["rte"]), None);
    let cache = tempfile::tempdir().unwrap();
    let envs = [("HF_HUB_CACHE", cache.path().to_str().unwrap()), ("HF_ENDPOINT", server.base.as_str())];
    let out = triadapt(&["fetch", "glue", "rte", "--quiet"], &envs);
    assert!(out.status.success(), "{}", stderr(&out));
    let snap_a = cache.path().join("datasets--nyu-mll--glue/snapshots").join(COMMIT_A);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), snap_a.join("rte").display().to_string());
    for f in glue_files(&["rte"]).iter().skip(1) {
        assert_eq!(std::fs::read(snap_a.join(&f.name)).unwrap(), f.body, "{}", f.name);
    }
    assert_eq!(resolve_glue_dir_in(cache.path(), "rte").unwrap(), snap_a.join("rte"));

    // Offline, a task never fetched: the message names the cache folder and the command.
    let msg = format!("{:#}", fetch_glue(&remote(&server, true), cache.path(), "cola", false).unwrap_err());
    assert!(msg.contains("HF_HUB_OFFLINE") && msg.contains("snapshots") && msg.contains("triadapt fetch glue cola"), "{msg}");

    // main moves on (cola added): rte is still found in its old snapshot; fetching it at the
    // new commit links the blobs it already has instead of downloading them.
    serve_repo(&server, "datasets", "nyu-mll/glue", COMMIT_B, &["main"], &glue_files(&["rte", "cola"]), None);
    fetch_glue(&remote(&server, false), cache.path(), "cola", false).unwrap();
    assert_eq!(std::fs::read_to_string(cache.path().join("datasets--nyu-mll--glue/refs/main")).unwrap(), COMMIT_B);
    assert_eq!(resolve_glue_dir_in(cache.path(), "rte").unwrap(), snap_a.join("rte"));
    let gets_before = server
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/resolve/") && s.range.as_deref() != Some("bytes=0-0"))
        .count();
    let report = fetch_glue(&remote(&server, false), cache.path(), "rte", false).unwrap();
    assert!(report.files.iter().all(|(_, o)| *o == Outcome::Present), "{:?}", report.files);
    let gets_after = server
        .seen()
        .iter()
        .filter(|s| s.method == "GET" && s.path.contains("/resolve/") && s.range.as_deref() != Some("bytes=0-0"))
        .count();
    assert_eq!(gets_after, gets_before, "no file body downloaded again");
    let snap_b = cache.path().join("datasets--nyu-mll--glue/snapshots").join(COMMIT_B);
    assert_eq!(resolve_glue_dir_in(cache.path(), "rte").unwrap(), snap_b.join("rte"));
    assert!(fetch_glue(&remote(&server, false), cache.path(), "wnli", false).unwrap_err().to_string().contains("unknown GLUE task"));
}

/// Python's huggingface_hub (the pinned test venv) on the same fake hub: what it downloads,
/// triadapt finds without fetching again; what triadapt downloads, it finds offline.
#[test]
fn the_hf_cache_is_shared_with_python_huggingface_hub() {
    let server = Server::start();
    let files = model_files("v3");
    serve_repo(&server, "models", "tiny/deberta", COMMIT_A, &["main"], &files, None);
    let python = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let py = |cache: &std::path::Path, code: &str, offline: bool| {
        let mut cmd = Command::new(&python);
        for var in ENV_VARS {
            cmd.env_remove(var);
        }
        cmd.env("HF_HUB_CACHE", cache).env("HF_ENDPOINT", &server.base).env("HF_HUB_DISABLE_TELEMETRY", "1");
        if offline {
            cmd.env("HF_HUB_OFFLINE", "1");
        }
        let o = cmd.args(["-c", code]).output().unwrap();
        assert!(o.status.success(), "python failed:\n{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let download = "from huggingface_hub import hf_hub_download\nfor f in ['config.json', 'spm.model', 'model.safetensors']:\n    print(hf_hub_download('tiny/deberta', f))";

    // Python first.
    let by_python = tempfile::tempdir().unwrap();
    py(by_python.path(), download, false);
    let before = resolve_requests(&server);
    let report = fetch_model(&remote(&server, false), by_python.path(), "tiny/deberta", false).unwrap();
    assert!(report.files.iter().all(|(_, o)| *o == Outcome::Present), "{:?}", report.files);
    assert_eq!(resolve_requests(&server), before, "triadapt fetched again what Python had");
    assert_eq!(resolve_model_in(by_python.path(), "tiny/deberta").unwrap().commit.as_deref(), Some(COMMIT_A));

    // triadapt first.
    let by_triadapt = tempfile::tempdir().unwrap();
    fetch_model(&remote(&server, false), by_triadapt.path(), "tiny/deberta", false).unwrap();
    let printed = py(by_triadapt.path(), download, true);
    let snap = by_triadapt.path().join("models--tiny--deberta/snapshots").join(COMMIT_A);
    let expected: Vec<String> =
        ["config.json", "spm.model", "model.safetensors"].iter().map(|f| snap.join(f).display().to_string()).collect();
    assert_eq!(printed.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn squad_goes_to_triadapts_own_cache_and_lookups_say_what_to_run() {
    let server = Server::start();
    let train = br#"{"version": "v2.0", "data": []}"#.to_vec();
    let dev = br#"{"version": "v2.0", "data": [1]}"#.to_vec();
    server.file("/squad/train-v2.0.json", &train);
    server.file("/squad/dev-v2.0.json", &dev);
    let own = tempfile::tempdir().unwrap();
    assert!(format!("{:#}", resolve_squad_dir_in(own.path()).unwrap_err()).contains("triadapt fetch squad2"));
    let report = fetch_squad2(&remote(&server, false), own.path(), false).unwrap();
    let dir = own.path().join("squad2");
    assert_eq!(report.dir, dir);
    assert_eq!(std::fs::read(dir.join("train-v2.0.json")).unwrap(), train);
    assert_eq!(std::fs::read(dir.join("dev-v2.0.json")).unwrap(), dev);
    assert_eq!(resolve_squad_dir_in(own.path()).unwrap(), dir);

    // Model look-ups: an existing directory wins; a hub name not cached, or cached without its
    // weights, says what is missing and what to run; a path that is not there is named.
    let cache = tempfile::tempdir().unwrap();
    let local = cache.path().join("local_model");
    std::fs::create_dir_all(&local).unwrap();
    assert_eq!(resolve_model_in(cache.path(), local.to_str().unwrap()).unwrap().dir, local);
    let msg = format!("{:#}", resolve_model_in(cache.path(), "microsoft/deberta-v3-base@v2").unwrap_err());
    assert!(msg.contains("triadapt fetch model microsoft/deberta-v3-base@v2") && msg.contains("refs/v2"), "{msg}");
    let snap = cache.path().join("models--microsoft--deberta-v3-base/snapshots").join(COMMIT_A);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(cache.path().join("models--microsoft--deberta-v3-base/refs")).unwrap();
    std::fs::write(cache.path().join("models--microsoft--deberta-v3-base/refs/main"), COMMIT_A).unwrap();
    std::fs::write(snap.join("config.json"), "{}").unwrap();
    let msg = format!("{:#}", resolve_model_in(cache.path(), "microsoft/deberta-v3-base").unwrap_err());
    assert!(msg.contains("spm.model") && msg.contains("model.safetensors") && msg.contains(&snap.display().to_string()), "{msg}");
    let msg = format!("{:#}", resolve_model_in(cache.path(), "./no/such/dir/here").unwrap_err());
    assert!(msg.contains("no such directory"), "{msg}");
    let msg = format!("{:#}", resolve_glue_dir_in(cache.path(), "rte").unwrap_err());
    assert!(msg.contains("triadapt fetch glue rte"), "{msg}");
}

#[test]
fn fetch_help_explains_each_form() {
    let out = triadapt(&["fetch", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for form in
        ["fetch model", "fetch glue", "fetch squad2", "HF_HUB_CACHE", "HF_HOME", "HF_TOKEN", "HF_HUB_OFFLINE", "TRIADAPT_CACHE", "@REV"]
    {
        assert!(help.contains(form), "--help lacks {form:?}:\n{help}");
    }
    let out = triadapt(&["fetch", "model"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("microsoft/deberta-v3-base"));
}

/// `triadapt env` says where models and data are looked for, with huggingface_hub's precedence
/// (HF_HUB_CACHE over HF_HOME/hub), and whether a token was found (never the token).
#[test]
fn env_reports_the_caches_and_the_token_without_showing_it() {
    let home = tempfile::tempdir().unwrap();
    let env = |envs: &[(&str, &str)]| -> serde_json::Value {
        let o = triadapt(&["env"], envs);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let h = home.path().to_str().unwrap();
    let v = env(&[("HF_HOME", h), ("TRIADAPT_CACHE", "/data/own")]);
    assert_eq!(v["hf_hub_cache"], home.path().join("hub").display().to_string());
    assert_eq!(
        (v["triadapt_cache"].as_str(), v["hf_hub_offline"].as_bool(), v["hf_token_found"].as_bool()),
        (Some("/data/own"), Some(false), Some(false))
    );
    std::fs::write(home.path().join("token"), "hf_abc\n").unwrap();
    let v = env(&[("HF_HOME", h), ("HF_HUB_CACHE", "/data/hub"), ("HF_HUB_OFFLINE", "1")]);
    assert_eq!(
        (v["hf_hub_cache"].as_str(), v["hf_hub_offline"].as_bool(), v["hf_token_found"].as_bool()),
        (Some("/data/hub"), Some(true), Some(true))
    );
    assert!(!v.to_string().contains("hf_abc"), "the token itself is never printed");
}
