//! Sweeps: a YAML file that expands one or more experiment files into many runs (methods x seeds x
//! grid points x zip rows), a stable id per run, sharding, and the results table.
//!
//! Layout of a sweep's results folder (`out`, default `results/<name>`):
//!
//! ```text
//! runs/<id>/resolved.yaml   the run's configuration as the sweep resolved it (hashes to <id>)
//! runs/<id>/...             the run folder `triadapt train` writes (config.yaml, metrics.json, ...)
//! runs/<id>/train.log       the child process's stdout and stderr
//! runs/<id>/row.json        the run's row of runs.csv, written atomically when the run ends
//! runs.csv                  regenerated from every row.json (temporary file + rename)
//! ```
//!
//! A row file exists only for a run that ended (finished or failed), and `runs.csv` is always
//! rebuilt from the row files as a whole, so a process killed at any moment leaves neither a
//! partial nor a duplicated row. See README.md (section "Sweeps") for the file format.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};
use sha2::{Digest, Sha256};

use crate::config::{set_key, RunConfig};
use crate::peft::method::MethodName;

/// Hex digits of a run id.
pub const ID_LEN: usize = 12;

/// Methods that own a `method.<name>` block: a key inside such a block only applies to runs of
/// that method.
const METHOD_BLOCKS: [&str; 4] = ["lora", "adalora", "increlora", "triadapt"];

/// `base:` is one experiment file or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The fields a part of a sweep may give (the file itself is the first part's defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartFile {
    base: Option<OneOrMany>,
    methods: Option<Vec<MethodName>>,
    seeds: Option<Vec<i64>>,
    grid: Option<Mapping>,
    zip: Option<Mapping>,
    set: Option<Mapping>,
    method_set: Option<Mapping>,
}

/// The sweep file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    name: Option<String>,
    out: Option<PathBuf>,
    base: Option<OneOrMany>,
    methods: Option<Vec<MethodName>>,
    seeds: Option<Vec<i64>>,
    grid: Option<Mapping>,
    zip: Option<Mapping>,
    set: Option<Mapping>,
    method_set: Option<Mapping>,
    parts: Option<Vec<PartFile>>,
}

impl SweepFile {
    /// The top-level fields as a part.
    fn top(&self) -> PartFile {
        PartFile {
            base: self.base.clone(),
            methods: self.methods.clone(),
            seeds: self.seeds.clone(),
            grid: self.grid.clone(),
            zip: self.zip.clone(),
            set: self.set.clone(),
            method_set: self.method_set.clone(),
        }
    }
}

/// One run of a sweep, fully resolved.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    /// Position in the sweep's expansion order (0-based); `--shard I/N` takes index % N == I.
    pub index: usize,
    /// [`run_id`] of `config`.
    pub id: String,
    pub task: String,
    pub method: MethodName,
    pub seed: i64,
    /// One entry per swept key of the sweep (grid and zip keys, in file order): the value this
    /// run has, or None where the key does not apply to its method.
    pub swept: Vec<(String, Option<Value>)>,
    pub config: RunConfig,
}

/// A parsed and expanded sweep.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub file: PathBuf,
    pub name: String,
    /// The results folder.
    pub out: PathBuf,
    /// Grid and zip keys, in the order they first appear in the file.
    pub swept_keys: Vec<String>,
    /// Distinct runs in expansion order (a run reached twice is kept once).
    pub runs: Vec<PlannedRun>,
    /// How many expansion points were merged into an identical run.
    pub merged: usize,
}

/// `--shard I/N`: every N-th run starting at I (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (i, n) = s.split_once('/').with_context(|| format!("--shard {s:?}: expected I/N, e.g. 0/4"))?;
        let index: usize = i.trim().parse().with_context(|| format!("--shard {s:?}: I is not a number"))?;
        let count: usize = n.trim().parse().with_context(|| format!("--shard {s:?}: N is not a number"))?;
        if count == 0 || index >= count {
            bail!("--shard {s:?}: need 0 <= I < N");
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    pub fn contains(&self, index: usize) -> bool {
        index % self.count == self.index
    }
}

/// The 1-based line of the first mapping key `key` in `text` (best effort, for messages).
fn line_of(text: &str, key: &str) -> Option<usize> {
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find(key) {
            let before = rest[..pos].chars().last();
            let after = rest[pos + key.len()..].trim_start_matches(['"', '\'']);
            let starts_token = before.is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '"' | '\'' | '-'));
            if starts_token && after.trim_start().starts_with(':') {
                return Some(i + 1);
            }
            rest = &rest[pos + key.len()..];
        }
    }
    None
}

/// Context that names the file and, where found, the line of `key`.
fn at(file: &Path, text: &str, key: &str) -> String {
    match line_of(text, key) {
        Some(l) => format!("{}:{l}", file.display()),
        None => file.display().to_string(),
    }
}

fn yaml_error(file: &Path, e: serde_yaml_ng::Error) -> anyhow::Error {
    match e.location() {
        Some(l) => anyhow!("{}:{}:{}: {e}", file.display(), l.line(), l.column()),
        None => anyhow!("{}: {e}", file.display()),
    }
}

/// Whether the dotted `key` names an entry of the configuration.
fn key_exists(defaults: &Value, key: &str) -> bool {
    let mut node = defaults;
    for part in key.split('.') {
        match node.as_mapping().and_then(|m| m.get(part)) {
            Some(v) => node = v,
            None => return false,
        }
    }
    true
}

/// The method whose block `key` is in (`method.triadapt.ref_rank` -> triadapt), if any.
fn key_method(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("method.")?;
    let (block, _) = rest.split_once('.')?;
    METHOD_BLOCKS.contains(&block).then_some(block)
}

/// Whether `key` is applied to a run of `method`.
fn applies(key: &str, method: MethodName) -> bool {
    key_method(key).is_none_or(|m| m == method.as_str())
}

/// Mapping entries as (dotted key, value), checking every key against the configuration.
fn entries(map: &Mapping, section: &str, file: &Path, text: &str, defaults: &Value) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    for (k, v) in map {
        let key = k.as_str().ok_or_else(|| anyhow!("{}: `{section}`: keys must be strings, got {k:?}", file.display()))?.to_string();
        match key.as_str() {
            "seed" => bail!("{}: `{section}` key `seed`: list the seeds under `seeds:`", at(file, text, &key)),
            "method.name" => bail!("{}: `{section}` key `method.name`: list the methods under `methods:`", at(file, text, &key)),
            _ => {}
        }
        if !key_exists(defaults, &key) {
            bail!("{}: `{section}`: unknown key `{key}` (the keys are those of an experiment file, dotted: see `triadapt train --help`)", at(file, text, &key));
        }
        out.push((key, v.clone()));
    }
    Ok(out)
}

/// Grid or zip entries: each value must be a non-empty list.
fn lists(map: &Mapping, section: &str, file: &Path, text: &str, defaults: &Value) -> Result<Vec<(String, Vec<Value>)>> {
    let mut out = Vec::new();
    for (key, v) in entries(map, section, file, text, defaults)? {
        let Value::Sequence(values) = v else {
            bail!("{}: `{section}` key `{key}`: expected a list of values, e.g. `{key}: [1, 2]`", at(file, text, &key));
        };
        if values.is_empty() {
            bail!("{}: `{section}` key `{key}`: the list of values is empty", at(file, text, &key));
        }
        out.push((key, values));
    }
    Ok(out)
}

/// Every combination of the grid's values (the last key varies fastest).
fn cartesian(grid: &[(String, Vec<Value>)]) -> Vec<Vec<(String, Value)>> {
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (key, values) in grid {
        points = points
            .into_iter()
            .flat_map(|p| values.iter().map(move |v| {
                let mut q = p.clone();
                q.push((key.clone(), v.clone()));
                q
            }))
            .collect();
    }
    points
}

/// Flattens a JSON tree to dotted leaves (lists are leaves).
fn flatten(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(v, &path, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn flat(cfg: &RunConfig) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    flatten(&serde_json::to_value(cfg).expect("config serialises"), "", &mut out);
    out
}

/// The canonical text of a configuration that a run id hashes: one `key=value` line per dotted
/// key whose value differs from the built-in default, sorted by key, values as compact JSON
/// (shortest round-trip floats). Configurations that mean the same give the same text, and a
/// key added to the configuration later (with a default) changes no existing id.
pub fn canonical_form(cfg: &RunConfig) -> String {
    let defaults = flat(&RunConfig::default());
    let mut text = String::new();
    for (k, v) in flat(cfg) {
        // How often a run logs does not make it another run.
        if NOT_IDENTITY.contains(&k.as_str()) {
            continue;
        }
        if defaults.get(&k) != Some(&v) {
            text.push_str(&k);
            text.push('=');
            text.push_str(&serde_json::to_string(&v).expect("json"));
            text.push('\n');
        }
    }
    text
}

/// Keys that change how a run reports, not what it computes: left out of its id.
pub const NOT_IDENTITY: [&str; 3] = ["log_steps", "save_steps", "save_total_limit"];

/// A run's id: the first 12 hex digits of the SHA-256 of [`canonical_form`].
pub fn run_id(cfg: &RunConfig) -> String {
    let digest = Sha256::digest(canonical_form(cfg).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..ID_LEN].to_string()
}

/// A short text of a YAML value for tables (`2`, `0.001`, `linear`, `[0, 1]`).
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => json_text(&serde_json::to_value(other).unwrap_or(serde_json::Value::Null)),
    }
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Finds an experiment file named by a sweep: relative to the sweep file's folder, else to the
/// working directory (the repository root).
fn find_base(sweep_file: &Path, base: &str) -> Result<PathBuf> {
    let p = Path::new(base);
    if p.is_absolute() {
        return if p.is_file() { Ok(p.to_path_buf()) } else { bail!("base experiment {} does not exist", p.display()) };
    }
    let next_to = sweep_file.parent().unwrap_or(Path::new("")).join(p);
    if next_to.is_file() {
        return Ok(next_to);
    }
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    bail!("base experiment {base:?} not found (looked for {} and {})", next_to.display(), p.display())
}

fn read_base(path: &Path) -> Result<(Value, RunConfig)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read base experiment {}", path.display()))?;
    let mut tree: Value = serde_yaml_ng::from_str(&text).map_err(|e| yaml_error(path, e))?;
    if tree.is_null() {
        tree = Value::Mapping(Mapping::new());
    }
    let cfg = RunConfig::from_value(tree.clone(), &[]).with_context(|| format!("base experiment {}", path.display()))?;
    Ok((tree, cfg))
}

impl Sweep {
    /// Reads and expands a sweep file; errors name the file and, where known, the line or key.
    pub fn load(path: &Path) -> Result<Sweep> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read sweep file {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// Expands the sweep `text`; `path` names it in errors and anchors relative `base` paths.
    pub fn parse(text: &str, path: &Path) -> Result<Sweep> {
        let file: SweepFile = serde_yaml_ng::from_str(text).map_err(|e| yaml_error(path, e))?;
        let defaults = serde_yaml_ng::to_value(RunConfig::default()).expect("config serialises");
        let name = match &file.name {
            Some(n) => n.clone(),
            None => path.file_stem().and_then(|s| s.to_str()).unwrap_or("sweep").to_string(),
        };
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            bail!("{}: `name` {name:?} must be a plain folder name", at(path, text, "name"));
        }
        let out = file.out.clone().unwrap_or_else(|| PathBuf::from("results").join(&name));

        let top = file.top();
        let parts: Vec<PartFile> = match &file.parts {
            None => vec![top.clone()],
            Some(list) if list.is_empty() => bail!("{}: `parts` is an empty list", at(path, text, "parts")),
            Some(list) => list.iter().map(|p| merge_part(&top, p)).collect(),
        };

        let mut swept_keys: Vec<String> = Vec::new();
        let mut resolved_parts = Vec::new();
        for (pi, part) in parts.iter().enumerate() {
            let where_ = if file.parts.is_some() { format!("parts[{pi}]: ") } else { String::new() };
            let bases = part.base.as_ref().map(OneOrMany::list).unwrap_or_default();
            if bases.is_empty() {
                bail!("{}: {where_}no `base` experiment file given", path.display());
            }
            let grid = match &part.grid {
                Some(g) => lists(g, "grid", path, text, &defaults)?,
                None => Vec::new(),
            };
            let zip = match &part.zip {
                Some(z) => lists(z, "zip", path, text, &defaults)?,
                None => Vec::new(),
            };
            if let Some((k0, v0)) = zip.first() {
                for (k, v) in &zip {
                    if v.len() != v0.len() {
                        bail!("{}: {where_}`zip` lists differ in length: `{k0}` has {} values, `{k}` has {}", at(path, text, k), v0.len(), v.len());
                    }
                }
            }
            for (k, _) in &grid {
                if zip.iter().any(|(z, _)| z == k) {
                    bail!("{}: {where_}key `{k}` is both in `grid` and in `zip`", at(path, text, k));
                }
            }
            for (k, _) in grid.iter().chain(zip.iter()) {
                if !swept_keys.contains(k) {
                    swept_keys.push(k.clone());
                }
            }
            let set = match &part.set {
                Some(s) => entries(s, "set", path, text, &defaults)?,
                None => Vec::new(),
            };
            let mut method_set: Vec<(MethodName, Vec<(String, Value)>)> = Vec::new();
            for (m, map) in part.method_set.iter().flatten() {
                let name = m.as_str().unwrap_or_default();
                let method: MethodName = name.parse().map_err(|e| anyhow!("{}: {where_}`method_set`: {e}", at(path, text, name)))?;
                let Value::Mapping(map) = map else {
                    bail!("{}: {where_}`method_set.{name}`: expected a map of keys to values", at(path, text, name));
                };
                method_set.push((method, entries(map, &format!("method_set.{name}"), path, text, &defaults)?));
            }
            if part.methods.as_ref().is_some_and(|m| m.is_empty()) {
                bail!("{}: {where_}`methods` is an empty list", at(path, text, "methods"));
            }
            if part.seeds.as_ref().is_some_and(|s| s.is_empty()) {
                bail!("{}: {where_}`seeds` is an empty list", at(path, text, "seeds"));
            }
            resolved_parts.push((where_, bases, grid, zip, set, method_set, part.methods.clone(), part.seeds.clone()));
        }

        let mut runs: Vec<PlannedRun> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut merged = 0;
        let mut base_cache: HashMap<PathBuf, (Value, RunConfig)> = HashMap::new();
        for (where_, bases, grid, zip, set, method_set, methods, seeds) in resolved_parts {
            let points = cartesian(&grid);
            let zip_rows: Vec<Vec<(String, Value)>> = match zip.first() {
                None => vec![Vec::new()],
                Some((_, v0)) => (0..v0.len()).map(|i| zip.iter().map(|(k, v)| (k.clone(), v[i].clone())).collect()).collect(),
            };
            let mut loaded = Vec::new();
            for b in &bases {
                let bp = find_base(path, b).with_context(|| format!("{}: {where_}`base`", at(path, text, "base")))?;
                if !base_cache.contains_key(&bp) {
                    let v = read_base(&bp).with_context(|| format!("{}: {where_}`base`", path.display()))?;
                    base_cache.insert(bp.clone(), v);
                }
                loaded.push(bp);
            }
            let seed_lists: Vec<Vec<i64>> = loaded.iter().map(|bp| seeds.clone().unwrap_or_else(|| vec![base_cache[bp].1.seed])).collect();
            let max_seeds = seed_lists.iter().map(Vec::len).max().unwrap_or(0);
            // Seeds outermost: a partly done sweep covers every configuration once first.
            for si in 0..max_seeds {
                for (bp, seed_list) in loaded.iter().zip(&seed_lists) {
                    let Some(&seed) = seed_list.get(si) else { continue };
                    let (base_tree, base_cfg) = &base_cache[bp];
                    let method_list = methods.clone().unwrap_or_else(|| vec![base_cfg.method.name]);
                    for &method in &method_list {
                        for point in &points {
                            for zrow in &zip_rows {
                                let mut tree = base_tree.clone();
                                let mut assigned: HashMap<&str, &Value> = HashMap::new();
                                for (k, v) in set.iter().filter(|(k, _)| applies(k, method)) {
                                    set_key(&mut tree, k, v.clone())?;
                                }
                                for (k, v) in method_set.iter().filter(|(m, _)| *m == method).flat_map(|(_, e)| e) {
                                    set_key(&mut tree, k, v.clone())?;
                                }
                                for (k, v) in point.iter().chain(zrow.iter()).filter(|(k, _)| applies(k, method)) {
                                    set_key(&mut tree, k, v.clone())?;
                                    assigned.insert(k.as_str(), v);
                                }
                                set_key(&mut tree, "method.name", Value::String(method.as_str().into()))?;
                                set_key(&mut tree, "seed", Value::Number(seed.into()))?;
                                let describe = || {
                                    let vals: Vec<String> = point.iter().chain(zrow.iter()).map(|(k, v)| format!("{k}={}", value_text(v))).collect();
                                    format!("{}: {where_}run (base {}, method {}, seed {seed}{}{})", path.display(), bp.display(), method.as_str(),
                                        if vals.is_empty() { "" } else { ", " }, vals.join(", "))
                                };
                                let cfg = RunConfig::from_value(tree, &[]).with_context(describe)?;
                                cfg.validate().with_context(describe)?;
                                let id = run_id(&cfg);
                                if !seen.insert(id.clone()) {
                                    merged += 1;
                                    continue;
                                }
                                runs.push(PlannedRun {
                                    index: runs.len(),
                                    id,
                                    task: cfg.task.clone(),
                                    method,
                                    seed,
                                    swept: Vec::new(),
                                    config: cfg,
                                });
                                let last = runs.last_mut().expect("pushed");
                                last.swept = assigned.into_iter().map(|(k, v)| (k.to_string(), Some(v.clone()))).collect();
                            }
                        }
                    }
                }
            }
        }
        // Every run lists every swept key of the sweep, in file order.
        for r in &mut runs {
            let have: HashMap<String, Option<Value>> = r.swept.drain(..).collect();
            r.swept = swept_keys.iter().map(|k| (k.clone(), have.get(k).cloned().flatten())).collect();
        }
        Ok(Sweep { file: path.to_path_buf(), name, out, swept_keys, runs, merged })
    }

    /// The runs of one shard (all runs without one).
    pub fn shard(&self, shard: Option<Shard>) -> Vec<&PlannedRun> {
        self.runs.iter().filter(|r| shard.is_none_or(|s| s.contains(r.index))).collect()
    }

    pub fn run_dir(&self, run: &PlannedRun) -> PathBuf {
        self.out.join("runs").join(&run.id)
    }

    /// The row a run of this sweep gets, before its outcome is known.
    pub fn row_for(&self, run: &PlannedRun) -> Row {
        Row {
            run_id: run.id.clone(),
            name: self.name.clone(),
            index: run.index,
            task: run.task.clone(),
            method: run.method.as_str().into(),
            seed: run.seed,
            swept: run.swept.iter().map(|(k, v)| (k.clone(), v.as_ref().and_then(|v| serde_json::to_value(v).ok()).unwrap_or(serde_json::Value::Null))).collect(),
            status: "pending".into(),
            error: None,
            main_metric: None,
            best_score: None,
            best_step: None,
            best_metrics: BTreeMap::new(),
            trainable_params: None,
            adapter_params: None,
            head_params: None,
            total_rank: None,
            rank_budget: None,
            wall_seconds: None,
        }
    }
}

/// A part inherits the file's top-level fields; `set` and `method_set` merge key by key (the
/// part's values win), the other fields are replaced.
fn merge_part(top: &PartFile, part: &PartFile) -> PartFile {
    let mut set = top.set.clone().unwrap_or_default();
    for (k, v) in part.set.iter().flatten() {
        set.insert(k.clone(), v.clone());
    }
    let mut method_set = top.method_set.clone().unwrap_or_default();
    for (m, map) in part.method_set.iter().flatten() {
        match (method_set.get_mut(m), map) {
            (Some(Value::Mapping(entry)), Value::Mapping(map)) => {
                for (k, v) in map {
                    entry.insert(k.clone(), v.clone());
                }
            }
            _ => {
                method_set.insert(m.clone(), map.clone());
            }
        }
    }
    PartFile {
        base: part.base.clone().or_else(|| top.base.clone()),
        methods: part.methods.clone().or_else(|| top.methods.clone()),
        seeds: part.seeds.clone().or_else(|| top.seeds.clone()),
        grid: part.grid.clone().or_else(|| top.grid.clone()),
        zip: part.zip.clone().or_else(|| top.zip.clone()),
        set: Some(set),
        method_set: Some(method_set),
    }
}

/// One line of runs.csv, stored as `runs/<id>/row.json` when a run ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub run_id: String,
    /// The sweep's name.
    pub name: String,
    /// Position in the sweep's expansion (orders the table).
    pub index: usize,
    pub task: String,
    pub method: String,
    pub seed: i64,
    /// (dotted key, value) of each swept key; null where the key does not apply to the method.
    pub swept: Vec<(String, serde_json::Value)>,
    /// finished or failed.
    pub status: String,
    pub error: Option<String>,
    pub main_metric: Option<String>,
    pub best_score: Option<f64>,
    pub best_step: Option<i64>,
    pub best_metrics: BTreeMap<String, f64>,
    pub trainable_params: Option<i64>,
    /// Adapter parameters (the table's #Params) and head parameters, counted apart.
    #[serde(default)]
    pub adapter_params: Option<i64>,
    #[serde(default)]
    pub head_params: Option<i64>,
    pub total_rank: Option<i64>,
    pub rank_budget: Option<i64>,
    pub wall_seconds: Option<f64>,
}

impl Row {
    /// Fills the outcome from a run folder's metrics.json (read loosely, by field name).
    pub fn fill_from_metrics(&mut self, metrics: &serde_json::Value) {
        let f = |k: &str| metrics.get(k).and_then(serde_json::Value::as_f64);
        let i = |k: &str| metrics.get(k).and_then(serde_json::Value::as_i64);
        self.main_metric = metrics.get("main_metric").and_then(|v| v.as_str()).map(str::to_string);
        self.best_score = f("best_score");
        self.best_step = i("best_step");
        self.best_metrics = metrics
            .get("best_metrics")
            .and_then(|v| v.as_object())
            .map(|m| m.iter().filter_map(|(k, v)| v.as_f64().map(|x| (k.clone(), x))).collect())
            .unwrap_or_default();
        self.trainable_params = i("trainable_params");
        self.adapter_params = i("adapter_params");
        self.head_params = i("head_params");
        self.total_rank = i("total_rank");
        self.rank_budget = i("rank_budget");
        self.wall_seconds = f("wall_seconds");
        if let Some(e) = metrics.get("error").and_then(|v| v.as_str()) {
            self.error = Some(e.to_string());
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader (or a process killed midway) sees the old file or the new one, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let file_name = path.file_name().and_then(|s| s.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().ok();
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

pub const ROW_FILE: &str = "row.json";
pub const METRICS_FILE: &str = "metrics.json";
pub const RESOLVED_FILE: &str = "resolved.yaml";
pub const CSV_FILE: &str = "runs.csv";

pub fn write_row(run_dir: &Path, row: &Row) -> Result<()> {
    write_atomic(&run_dir.join(ROW_FILE), serde_json::to_string_pretty(row)?.as_bytes())
}

/// The row file of a run folder, if the run ended.
pub fn read_row(run_dir: &Path) -> Result<Option<Row>> {
    let p = run_dir.join(ROW_FILE);
    match std::fs::read_to_string(&p) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| format!("{}: not a row file", p.display()))?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
    }
}

/// A run folder's metrics.json, if present and readable.
pub fn read_metrics(run_dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join(METRICS_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Where a planned run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Its row says finished: skipped.
    Finished,
    /// Its training finished (metrics.json) but the sweep died before writing the row: the row
    /// is written from metrics.json without training again.
    Adoptable,
    /// Its row says failed: retried.
    Failed,
    /// Never ran, or was interrupted: run.
    Pending,
}

impl RunState {
    pub fn label(self) -> &'static str {
        match self {
            RunState::Finished | RunState::Adoptable => "done",
            RunState::Failed => "failed",
            RunState::Pending => "pending",
        }
    }
}

pub fn run_state(run_dir: &Path) -> RunState {
    match read_row(run_dir) {
        Ok(Some(r)) if r.status == "finished" => return RunState::Finished,
        Ok(Some(_)) => return RunState::Failed,
        _ => {}
    }
    match read_metrics(run_dir) {
        Some(m) if m.get("status").and_then(|s| s.as_str()) == Some("finished") => RunState::Adoptable,
        _ => RunState::Pending,
    }
}

/// Every row file under `<dir>/runs/*/row.json`, with its run folder.
pub fn read_rows(dir: &Path) -> Result<Vec<(Row, PathBuf)>> {
    let runs = dir.join("runs");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&runs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", runs.display())),
    };
    let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    for d in dirs {
        if let Some(row) = read_row(&d)? {
            out.push((row, d));
        }
    }
    Ok(out)
}

/// The fixed columns before the swept keys, between them and the metrics, and after the metrics.
pub const LEAD_COLUMNS: [&str; 5] = ["run_id", "name", "task", "method", "seed"];
pub const MID_COLUMNS: [&str; 5] = ["status", "error", "main_metric", "best_score", "best_step"];
pub const TAIL_COLUMNS: [&str; 7] = ["trainable_params", "adapter_params", "head_params", "total_rank", "rank_budget", "wall_seconds", "run_dir"];

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(T::to_string).unwrap_or_default()
}

/// The text of runs.csv for these rows (merged by run id: a finished row wins over a failed one,
/// then the first given).
pub fn csv_text(rows: Vec<(Row, PathBuf)>) -> Result<(String, usize)> {
    let mut best: Vec<(Row, PathBuf)> = Vec::new();
    let mut pos: HashMap<String, usize> = HashMap::new();
    for (row, dir) in rows {
        match pos.get(&row.run_id) {
            Some(&i) => {
                if best[i].0.status != "finished" && row.status == "finished" {
                    best[i] = (row, dir);
                }
            }
            None => {
                pos.insert(row.run_id.clone(), best.len());
                best.push((row, dir));
            }
        }
    }
    let mut name_order: Vec<String> = Vec::new();
    for (r, _) in &best {
        if !name_order.contains(&r.name) {
            name_order.push(r.name.clone());
        }
    }
    best.sort_by(|(a, _), (b, _)| {
        let na = name_order.iter().position(|n| n == &a.name);
        let nb = name_order.iter().position(|n| n == &b.name);
        (na, a.index, &a.run_id).cmp(&(nb, b.index, &b.run_id))
    });
    let mut swept: Vec<String> = Vec::new();
    let mut metrics: BTreeSet<String> = BTreeSet::new();
    for (r, _) in &best {
        for (k, _) in &r.swept {
            if !swept.contains(k) {
                swept.push(k.clone());
            }
        }
        metrics.extend(r.best_metrics.keys().cloned());
    }
    let fixed: HashSet<&str> = LEAD_COLUMNS.iter().chain(&MID_COLUMNS).chain(&TAIL_COLUMNS).copied().collect();
    let metric_col = |m: &str| if fixed.contains(m) || swept.iter().any(|s| s == m) { format!("metric_{m}") } else { m.to_string() };
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = LEAD_COLUMNS.iter().map(|s| s.to_string()).collect();
    header.extend(swept.iter().cloned());
    header.extend(MID_COLUMNS.iter().map(|s| s.to_string()));
    header.extend(metrics.iter().map(|m| metric_col(m)));
    header.extend(TAIL_COLUMNS.iter().map(|s| s.to_string()));
    w.write_record(&header)?;
    for (r, dir) in &best {
        let mut rec: Vec<String> = vec![r.run_id.clone(), r.name.clone(), r.task.clone(), r.method.clone(), r.seed.to_string()];
        let sw: HashMap<&str, &serde_json::Value> = r.swept.iter().map(|(k, v)| (k.as_str(), v)).collect();
        rec.extend(swept.iter().map(|k| sw.get(k.as_str()).map(|v| json_text(v)).unwrap_or_default()));
        rec.extend([r.status.clone(), opt(&r.error), opt(&r.main_metric), opt(&r.best_score), opt(&r.best_step)]);
        rec.extend(metrics.iter().map(|m| opt(&r.best_metrics.get(m))));
        rec.extend([opt(&r.trainable_params), opt(&r.adapter_params), opt(&r.head_params), opt(&r.total_rank), opt(&r.rank_budget), opt(&r.wall_seconds), dir.display().to_string()]);
        w.write_record(&rec)?;
    }
    let n = best.len();
    Ok((String::from_utf8(w.into_inner().map_err(|e| anyhow!("csv: {e}"))?)?, n))
}

/// Rebuilds `out` (runs.csv) from the row files of every results folder in `dirs`. Returns the
/// number of rows.
pub fn collect(dirs: &[PathBuf], out: &Path) -> Result<usize> {
    let mut rows = Vec::new();
    for d in dirs {
        if !d.is_dir() {
            bail!("{}: not a results folder", d.display());
        }
        rows.extend(read_rows(d)?);
    }
    let (text, n) = csv_text(rows)?;
    write_atomic(out, text.as_bytes())?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_finds_mapping_keys_only() {
        let text = "name: x\ngrid:\n  method.triadapt.ref_rank: [2, 3]\nzip: {optim.lr: [1]}\n";
        assert_eq!(line_of(text, "method.triadapt.ref_rank"), Some(3));
        assert_eq!(line_of(text, "optim.lr"), Some(4));
        assert_eq!(line_of(text, "lr"), None);
    }

    #[test]
    fn shards_parse_and_partition() {
        let s: Shard = "1/3".parse().unwrap();
        assert!(s.contains(4) && !s.contains(3));
        assert!("3/3".parse::<Shard>().is_err());
        assert!("1".parse::<Shard>().is_err());
    }
}
