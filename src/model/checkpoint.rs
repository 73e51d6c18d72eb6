//! Loading HF model directories (`config.json` + `model.safetensors` or `pytorch_model.bin`) and
//! rust-bert `rust_model.ot` files into a model built on a VarStore, by HF parameter name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{nn, Device, Tensor};

use super::config::DebertaConfig;
use super::heads::{head_prefixes, DebertaModel, HeadKind};
use super::linear::LinearFactory;

/// The weight files we read, in the order a model directory is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    Safetensors,
    PytorchBin,
    RustBertOt,
}

impl WeightFormat {
    pub const SEARCH_ORDER: [(&'static str, WeightFormat); 3] = [
        ("model.safetensors", WeightFormat::Safetensors),
        ("pytorch_model.bin", WeightFormat::PytorchBin),
        ("rust_model.ot", WeightFormat::RustBertOt),
    ];

    pub fn of_file(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Ok(WeightFormat::Safetensors),
            Some("bin") | Some("pt") => Ok(WeightFormat::PytorchBin),
            Some("ot") => Ok(WeightFormat::RustBertOt),
            _ => bail!("{}: unknown weight format (expected .safetensors, .bin or .ot)", path.display()),
        }
    }
}

/// An HF-layout model directory, located but not yet loaded.
#[derive(Debug, Clone)]
pub struct ModelDir {
    pub dir: PathBuf,
    pub config: DebertaConfig,
    pub weights: PathBuf,
    pub format: WeightFormat,
}

impl ModelDir {
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            bail!("model directory {} does not exist", dir.display());
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            bail!("{}: no config.json (an HF model directory needs config.json and weights)", dir.display());
        }
        let config = DebertaConfig::from_file(&config_path)?;
        let (weights, format) =
            WeightFormat::SEARCH_ORDER.iter().map(|(name, fmt)| (dir.join(name), *fmt)).find(|(p, _)| p.is_file()).with_context(|| {
                let names: Vec<_> = WeightFormat::SEARCH_ORDER.iter().map(|(n, _)| *n).collect();
                format!("{}: no weights file (looked for {})", dir.display(), names.join(", "))
            })?;
        Ok(ModelDir { dir: dir.to_path_buf(), config, weights, format })
    }

    /// The sentencepiece model shipped with HF DeBERTa-v3 checkpoints.
    pub fn spm_path(&self) -> PathBuf {
        Self::spm_path_in(&self.dir)
    }

    pub fn spm_path_in(dir: &Path) -> PathBuf {
        dir.join("spm.model")
    }

    /// Builds the model on `device` and loads the weights into it.
    pub fn load(&self, kind: HeadKind, factory: &dyn LinearFactory, device: Device) -> Result<(nn::VarStore, DebertaModel, LoadReport)> {
        let vs = nn::VarStore::new(device);
        let model = DebertaModel::new(&vs.root(), &self.config, kind, factory);
        let tensors = read_tensors(&self.weights, self.format)?;
        let report = assign(&vs, tensors, kind, &self.weights)?;
        Ok((vs, model, report))
    }
}

/// Reads every named tensor of a weights file (on CPU).
pub fn read_tensors(path: &Path, format: WeightFormat) -> Result<Vec<(String, Tensor)>> {
    let read = match format {
        WeightFormat::Safetensors => Tensor::read_safetensors(path),
        WeightFormat::PytorchBin => Tensor::loadz_multi(path),
        WeightFormat::RustBertOt => Tensor::load_multi(path),
    };
    read.with_context(|| format!("{}: cannot read {:?} weights (corrupt or truncated file?)", path.display(), format))
}

/// What loading did besides copying: head tensors left at their initialisation (a backbone-only
/// checkpoint), and checkpoint tensors we knowingly skip (pre-training heads, another task head).
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub initialised: Vec<String>,
    pub ignored: Vec<String>,
}

/// Tensors of pre-training heads, which sit beside `deberta.*` in a pre-trained checkpoint.
fn is_pretraining_head(name: &str) -> bool {
    const HEADS: [&str; 4] = ["lm_predictions.", "mask_predictions.", "cls.", "lm_head."];
    HEADS.iter().any(|p| name.starts_with(p))
}

/// Tensors HF also skips when loading a task model: pre-training heads, the `position_ids`
/// buffer, and absolute position embeddings of a model configured without them.
fn is_known_extra(name: &str) -> bool {
    is_pretraining_head(name) || name.ends_with("embeddings.position_ids") || name.ends_with("embeddings.position_embeddings.weight")
}

/// Copies checkpoint tensors into the VarStore's variables by name, checking shapes.
/// A checkpoint whose names lack the `deberta.` prefix is a backbone-only (`DebertaV2Model`) file.
pub fn assign(vs: &nn::VarStore, tensors: Vec<(String, Tensor)>, kind: HeadKind, source: &Path) -> Result<LoadReport> {
    let backbone_only = !tensors.iter().any(|(n, _)| n.starts_with("deberta."));
    let mut by_name: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(n, t)| if backbone_only && !is_pretraining_head(&n) { (format!("deberta.{n}"), t) } else { (n, t) })
        .collect();
    let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
    let heads = head_prefixes(kind);
    let mut report = LoadReport::default();
    let mut missing = Vec::new();
    for (name, var) in &vars {
        match by_name.remove(name) {
            Some(src) => {
                if src.size() != var.size() {
                    bail!(
                        "{}: tensor `{name}` has shape {:?} in the checkpoint but the model (from config.json) expects {:?}",
                        source.display(),
                        src.size(),
                        var.size()
                    );
                }
                tch::no_grad(|| var.shallow_clone().copy_(&src));
            }
            None if heads.iter().any(|p| name.starts_with(p)) => report.initialised.push(name.clone()),
            None => missing.push(name.clone()),
        }
    }
    if !missing.is_empty() {
        bail!(
            "{}: missing tensor{} {} (the checkpoint does not match config.json)",
            source.display(),
            if missing.len() > 1 { "s" } else { "" },
            list(&missing)
        );
    }
    let other_heads: Vec<&str> =
        [HeadKind::Cls, HeadKind::Qa].iter().filter(|k| **k != kind).flat_map(|k| head_prefixes(*k).iter().copied()).collect();
    let mut unknown = Vec::new();
    for name in by_name.into_keys() {
        if is_known_extra(&name) || other_heads.iter().any(|p| name.starts_with(p)) {
            report.ignored.push(name);
        } else {
            unknown.push(name);
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        bail!(
            "{}: unknown tensor{} {} (not part of a DeBERTa-v2 model with this config.json)",
            source.display(),
            if unknown.len() > 1 { "s" } else { "" },
            list(&unknown)
        );
    }
    report.initialised.sort();
    report.ignored.sort();
    Ok(report)
}

fn list(names: &[String]) -> String {
    const SHOW: usize = 8;
    let shown: Vec<String> = names.iter().take(SHOW).map(|n| format!("`{n}`")).collect();
    if names.len() > SHOW {
        format!("{} and {} more", shown.join(", "), names.len() - SHOW)
    } else {
        shown.join(", ")
    }
}
