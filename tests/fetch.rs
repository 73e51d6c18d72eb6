//! The downloader against a local HTTP server that the test starts on 127.0.0.1: full downloads
//! with hash checks, resume through Range requests, servers that ignore Range, broken transfers,
//! hash mismatches, unreachable hosts, a fake hub (model info and tree listing), SQuAD, offline
//! mode and the cache look-ups.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use triadapt::data::fetch::{fetch_file, fetch_file_outcome, fetch_glue, fetch_model, fetch_squad2, part_path, Cache, Outcome, Remote};

/// How a path is served.
#[derive(Clone)]
struct Route {
    body: Vec<u8>,
    content_type: &'static str,
    /// Answer Range requests with the whole file (200), as some servers do.
    ignore_range: bool,
    /// Cut the first this-many responses off after half the body.
    truncate_first: usize,
}

/// One request the server saw: path (query kept) and Range header.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
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
        self.route(path, Route { body: body.to_vec(), content_type: "application/octet-stream", ignore_range: false, truncate_first: 0 });
    }

    fn json(&self, path: &str, value: serde_json::Value) {
        self.route(path, Route { body: value.to_string().into_bytes(), content_type: "application/json", ignore_range: true, truncate_first: 0 });
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
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    seen.lock().unwrap().push(Seen { path: path.clone(), range: range.clone() });
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
    let len = route.body.len();
    let start = range
        .as_deref()
        .filter(|_| !route.ignore_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, extra, body) = match start {
        Some(s) if s >= len => ("416 Range Not Satisfiable", format!("Content-Range: bytes */{len}\r\n"), &route.body[..0]),
        Some(s) => ("206 Partial Content", format!("Content-Range: bytes {s}-{}/{len}\r\n", len - 1), &route.body[s..]),
        None => ("200 OK", String::new(), &route.body[..]),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        route.content_type,
        body.len()
    );
    out.write_all(head.as_bytes())?;
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

fn triadapt(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_triadapt"));
    cmd.args(args);
    for var in ["TRIADAPT_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TRIADAPT_SQUAD_URL"] {
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
    let out = fetch_file_outcome(&server.url("/model.safetensors"), &dest, Some(data.len() as u64), Some(&sha256(&data)), false, false).unwrap();
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
    server.route("/x.parquet", Route { body: data.clone(), content_type: "application/octet-stream", ignore_range: true, truncate_first: 0 });
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
    server.route("/b.bin", Route { body: data.clone(), content_type: "application/octet-stream", ignore_range: false, truncate_first: 1 });
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
    let started = std::time::Instant::now();
    let err = fetch_file(&url, &dest, None, None, false).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.contains(&dest.display().to_string()), "{msg}");
    assert!(msg.contains("TRIADAPT_CACHE") && msg.contains("by hand"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A fake `nyu-mll/glue` with the hub's tree listing of `rte/`.
fn fake_glue(server: &Server) -> Vec<(&'static str, Vec<u8>)> {
    let files = vec![
        ("rte/test-00000-of-00001.parquet", payload(3_000, 6)),
        ("rte/train-00000-of-00001.parquet", payload(50_000, 7)),
        ("rte/validation-00000-of-00001.parquet", payload(7_000, 8)),
    ];
    let listing: Vec<serde_json::Value> = files
        .iter()
        .map(|(path, data)| {
            serde_json::json!({
                "type": "file", "oid": "0123456789abcdef0123456789abcdef01234567", "size": data.len(), "path": path,
                "lfs": { "oid": sha256(data), "size": data.len(), "pointerSize": 134 }
            })
        })
        .chain(std::iter::once(serde_json::json!({ "type": "directory", "oid": "aa", "size": 0, "path": "rte/extra" })))
        .collect();
    server.json("/api/datasets/nyu-mll/glue/tree/main/rte", serde_json::Value::Array(listing));
    for (path, data) in &files {
        server.file(&format!("/datasets/nyu-mll/glue/resolve/main/{path}"), data);
    }
    files
}

/// The test server as hub and SQuAD host.
fn remote(server: &Server, offline: bool) -> Remote {
    Remote { hf_endpoint: server.base.clone(), squad_url: server.url("/squad"), offline }
}

#[test]
fn fetch_glue_rte_from_a_fake_hub() {
    let server = Server::start();
    let files = fake_glue(&server);
    let cache = tempfile::tempdir().unwrap();
    let envs = [("TRIADAPT_CACHE", cache.path().to_str().unwrap()), ("HF_ENDPOINT", server.base.as_str())];
    let out = triadapt(&["fetch", "glue", "rte", "--quiet"], &envs);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = cache.path().join("glue/rte");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), dir.display().to_string());
    for (path, data) in &files {
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(&std::fs::read(dir.join(name)).unwrap(), data, "{name}");
    }
    assert!(server.seen().iter().any(|s| s.path == "/api/datasets/nyu-mll/glue/tree/main/rte"));
    let c = Cache::at(cache.path());
    assert_eq!(c.resolve_glue_dir("rte").unwrap(), dir);

    // Again: only the listing is asked for; every file is complete.
    let before = server.seen().len();
    let report = fetch_glue(&remote(&server, false), &c, "rte", false).unwrap();
    assert_eq!(report.dir, dir);
    assert_eq!(report.files.len(), 3);
    assert!(report.files.iter().all(|(_, o)| *o == Outcome::Present));
    assert_eq!(server.seen().len(), before + 1);

    // Offline: the complete copy is fine, a missing task fails fast with the by-hand message.
    assert!(fetch_glue(&remote(&server, true), &c, "rte", false).is_ok());
    let msg = format!("{:#}", fetch_glue(&remote(&server, true), &c, "cola", false).unwrap_err());
    assert!(msg.contains("HF_HUB_OFFLINE") && msg.contains(&cache.path().join("glue/cola").display().to_string()) && msg.contains("TRIADAPT_CACHE"), "{msg}");
    assert_eq!(server.seen().len(), before + 1);

    // Online, a task the fake hub lacks: the error names the listing URL.
    let msg = format!("{:#}", fetch_glue(&remote(&server, false), &c, "cola", false).unwrap_err());
    assert!(msg.contains("/api/datasets/nyu-mll/glue/tree/main/cola") && msg.contains("404"), "{msg}");
    assert!(fetch_glue(&remote(&server, false), &c, "wnli", false).unwrap_err().to_string().contains("unknown GLUE task"));
}

#[test]
fn fetch_model_from_a_fake_hub_and_resolve_it() {
    let server = Server::start();
    let config = br#"{"model_type": "deberta-v2"}"#.to_vec();
    let spm = payload(20_000, 9);
    let weights = payload(80_000, 10);
    // No model.safetensors in this repository: pytorch_model.bin is taken.
    server.json(
        "/api/models/microsoft/deberta-v3-base",
        serde_json::json!({
            "id": "microsoft/deberta-v3-base",
            "siblings": [
                { "rfilename": ".gitattributes", "size": 10 },
                { "rfilename": "config.json", "size": config.len(), "blobId": "x" },
                { "rfilename": "spm.model", "size": spm.len(), "lfs": { "sha256": sha256(&spm), "size": spm.len(), "pointerSize": 132 } },
                { "rfilename": "pytorch_model.bin", "size": weights.len(), "lfs": { "sha256": sha256(&weights), "size": weights.len(), "pointerSize": 134 } },
            ]
        }),
    );
    server.file("/microsoft/deberta-v3-base/resolve/main/config.json", &config);
    server.file("/microsoft/deberta-v3-base/resolve/main/spm.model", &spm);
    server.file("/microsoft/deberta-v3-base/resolve/main/pytorch_model.bin", &weights);
    let cache = tempfile::tempdir().unwrap();
    let c = Cache::at(cache.path());
    let report = fetch_model(&remote(&server, false), &c, "microsoft/deberta-v3-base", false).unwrap();
    let dir = cache.path().join("models/microsoft/deberta-v3-base");
    assert_eq!(report.dir, dir);
    assert_eq!(report.files.len(), 3);
    assert_eq!(std::fs::read(dir.join("pytorch_model.bin")).unwrap(), weights);
    assert_eq!(std::fs::read(dir.join("spm.model")).unwrap(), spm);
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), config);
    assert!(server.seen().iter().any(|s| s.path == "/api/models/microsoft/deberta-v3-base?blobs=true"));
    assert_eq!(c.resolve_model("microsoft/deberta-v3-base").unwrap(), dir);

    // A repository the hub does not know: the error names it.
    let msg = format!("{:#}", fetch_model(&remote(&server, false), &c, "nobody/nothing", false).unwrap_err());
    assert!(msg.contains("404") && msg.contains("nobody/nothing"), "{msg}");
}

#[test]
fn resolve_model_errors_and_existing_directories() {
    let cache = tempfile::tempdir().unwrap();
    let c = Cache::at(cache.path());
    // An existing directory wins.
    let local = cache.path().join("local_model");
    std::fs::create_dir_all(&local).unwrap();
    assert_eq!(c.resolve_model(local.to_str().unwrap()).unwrap(), local);

    // A hub name not in the cache: tells to fetch it and where it was looked for.
    let msg = format!("{:#}", c.resolve_model("microsoft/deberta-v3-base").unwrap_err());
    assert!(msg.contains("triadapt fetch model microsoft/deberta-v3-base"), "{msg}");
    assert!(msg.contains(&cache.path().join("models/microsoft/deberta-v3-base").display().to_string()), "{msg}");

    // In the cache but incomplete: names what is missing.
    let dir = cache.path().join("models/microsoft/deberta-v3-base");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), "{}").unwrap();
    let msg = format!("{:#}", c.resolve_model("microsoft/deberta-v3-base").unwrap_err());
    assert!(msg.contains("spm.model") && msg.contains("model.safetensors"), "{msg}");
    std::fs::write(dir.join("spm.model"), "x").unwrap();
    std::fs::write(dir.join("model.safetensors"), "x").unwrap();
    assert_eq!(c.resolve_model("microsoft/deberta-v3-base").unwrap(), dir);

    // A path that does not exist and is no hub name.
    let msg = format!("{:#}", c.resolve_model("./no/such/dir/here").unwrap_err());
    assert!(msg.contains("no such directory"), "{msg}");

    // GLUE and SQuAD look-ups tell which fetch to run.
    let msg = format!("{:#}", c.resolve_glue_dir("rte").unwrap_err());
    assert!(msg.contains("triadapt fetch glue rte"), "{msg}");
    let msg = format!("{:#}", c.resolve_squad_dir().unwrap_err());
    assert!(msg.contains("triadapt fetch squad2"), "{msg}");
}

#[test]
fn fetch_squad2_and_offline_model() {
    let server = Server::start();
    let train = br#"{"version": "v2.0", "data": []}"#.to_vec();
    let dev = br#"{"version": "v2.0", "data": [1]}"#.to_vec();
    server.file("/squad/train-v2.0.json", &train);
    server.file("/squad/dev-v2.0.json", &dev);
    let cache = tempfile::tempdir().unwrap();
    let c = Cache::at(cache.path());
    let report = fetch_squad2(&remote(&server, false), &c, false).unwrap();
    let dir = cache.path().join("squad2");
    assert_eq!(report.dir, dir);
    assert_eq!(std::fs::read(dir.join("train-v2.0.json")).unwrap(), train);
    assert_eq!(std::fs::read(dir.join("dev-v2.0.json")).unwrap(), dev);
    assert_eq!(c.resolve_squad_dir().unwrap(), dir);

    // Offline, through the command line: no request, and the message says where to put the model.
    let before = server.seen().len();
    let envs = [("TRIADAPT_CACHE", cache.path().to_str().unwrap()), ("HF_ENDPOINT", server.base.as_str()), ("HF_HUB_OFFLINE", "1")];
    let out = triadapt(&["fetch", "model", "microsoft/deberta-v3-base"], &envs);
    assert!(!out.status.success());
    let msg = stderr(&out);
    assert!(msg.contains("HF_HUB_OFFLINE") && msg.contains("by hand") && msg.contains("TRIADAPT_CACHE"), "{msg}");
    assert!(msg.contains(&cache.path().join("models/microsoft/deberta-v3-base").display().to_string()), "{msg}");
    assert_eq!(server.seen().len(), before);
}

#[test]
fn fetch_help_explains_each_form() {
    let out = triadapt(&["fetch", "--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for form in ["fetch model", "fetch glue", "fetch squad2", "TRIADAPT_CACHE", "HF_HUB_OFFLINE"] {
        assert!(help.contains(form), "--help lacks {form:?}:\n{help}");
    }
    let out = triadapt(&["fetch", "model"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("microsoft/deberta-v3-base"));
}

