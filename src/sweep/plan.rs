//! Expanding a sweep file into runs: parts, bases, methods x seeds x grid points x zip rows,
//! method-specific keys, merging identical runs, and sharding.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::id::{run_id, value_text};
use super::store::Row;
use crate::config::{key_exists, set_key, RunConfig};
use crate::peft::method::MethodName;
use crate::train::result::RunStatus;

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

/// The sweep file as written. It repeats `PartFile`'s fields rather than flattening it: serde's
/// `flatten` cannot be combined with `deny_unknown_fields`, and an unknown key must be an error.
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

/// One part of a sweep with its keys checked against the configuration, ready to expand.
struct ResolvedPart {
    /// `parts[i]: ` for error messages (empty without parts).
    where_: String,
    bases: Vec<String>,
    grid: Vec<(String, Vec<Value>)>,
    zip: Vec<(String, Vec<Value>)>,
    set: Vec<(String, Value)>,
    method_set: Vec<(MethodName, Vec<(String, Value)>)>,
    /// None: each base's own method.
    methods: Option<Vec<MethodName>>,
    /// None: each base's own seed.
    seeds: Option<Vec<i64>>,
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

/// The method whose block `key` is in (`method.triadapt.ref_rank` -> triadapt), if any.
fn key_method(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("method.")?;
    let (block, _) = rest.split_once('.')?;
    // A key inside a method's own block (`MethodName::config_block`) applies to that method only.
    MethodName::ALL.iter().any(|m| m.config_block() == Some(block)).then_some(block)
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
            bail!(
                "{}: `{section}`: unknown key `{key}` (the keys are those of an experiment file, dotted: see `triadapt train --help`)",
                at(file, text, &key)
            );
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
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push((key.clone(), v.clone()));
                    q
                })
            })
            .collect();
    }
    points
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
                        bail!(
                            "{}: {where_}`zip` lists differ in length: `{k0}` has {} values, `{k}` has {}",
                            at(path, text, k),
                            v0.len(),
                            v.len()
                        );
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
            resolved_parts.push(ResolvedPart {
                where_,
                bases,
                grid,
                zip,
                set,
                method_set,
                methods: part.methods.clone(),
                seeds: part.seeds.clone(),
            });
        }

        let mut runs: Vec<PlannedRun> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut merged = 0;
        let mut base_cache: HashMap<PathBuf, (Value, RunConfig)> = HashMap::new();
        for ResolvedPart { where_, bases, grid, zip, set, method_set, methods, seeds } in resolved_parts {
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
                                    let vals: Vec<String> =
                                        point.iter().chain(zrow.iter()).map(|(k, v)| format!("{k}={}", value_text(v))).collect();
                                    format!(
                                        "{}: {where_}run (base {}, method {}, seed {seed}{}{})",
                                        path.display(),
                                        bp.display(),
                                        method.as_str(),
                                        if vals.is_empty() { "" } else { ", " },
                                        vals.join(", ")
                                    )
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
            swept: run
                .swept
                .iter()
                .map(|(k, v)| (k.clone(), v.as_ref().and_then(|v| serde_json::to_value(v).ok()).unwrap_or(serde_json::Value::Null)))
                .collect(),
            status: RunStatus::Pending,
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
