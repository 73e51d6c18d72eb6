//! `triadapt merge` and `triadapt export-peft`: a trained adapter as a plain HF checkpoint
//! (dW folded into W0) or as a standard PEFT LoRA adapter.

use std::path::Path;

use anyhow::{Context, Result};
use tch::{nn, Device};

use crate::model::{DebertaModel, ModelDir};
use crate::peft::export::{export_peft, head_tensors, merged_weights, write_hf_checkpoint};
use crate::peft::method::MethodSetup;
use crate::peft::save::{apply_adapter, read_adapter, SavedAdapter};
use crate::peft::DynAdapter;
use crate::train::checkpoint::{adapter_dir, Which};

/// The base model with a saved adapter (from an adapter folder or a run folder) applied.
pub struct Adapted {
    pub saved: SavedAdapter,
    pub model_dir: ModelDir,
    pub vs: nn::VarStore,
    pub model: DebertaModel,
    pub adapters: Vec<(String, DynAdapter)>,
}

/// The base model an adapter names (`base_model` in adapter_config.json, as the user gave it
/// when training): a model directory (a relative path resolves against the working directory,
/// as in `train`), else a hub name found in the model cache.
pub fn resolve_base_model(given: &Path) -> Result<std::path::PathBuf> {
    if given.is_dir() {
        return Ok(given.to_path_buf());
    }
    let name = given.to_string_lossy();
    crate::data::fetch::resolve_model(&name).map_err(|e| {
        anyhow::anyhow!(
            "the base model {name:?} is neither a model directory (relative paths resolve against the working directory) nor a hub model in the cache ({e:#})"
        )
    })
}

/// Loads `path` (a run folder: its `best/` or `adapter/` as `which` says; or an adapter folder)
/// onto its base model.
pub fn load_adapted(path: &Path, which: Which, device: Device) -> Result<Adapted> {
    let dir = adapter_dir(path, which);
    let saved = read_adapter(&dir)?;
    let what = || format!("the adapter's base model (adapter_config.json `base_model`) for {}", dir.display());
    let mut model_dir = resolve_base_model(&saved.config.base_model).and_then(|base| ModelDir::open(&base)).with_context(what)?;
    model_dir.config.num_labels = Some(saved.config.num_labels);
    model_dir.config.id2label = None;
    let setup = MethodSetup::new(&saved.config.method);
    let (vs, model, _) = model_dir.load(saved.config.head, setup.factory(), device)?;
    let adapters = setup.adapters();
    apply_adapter(&saved, &adapters, &vs).with_context(|| format!("{}", path.display()))?;
    Ok(Adapted { saved, model_dir, vs, model, adapters })
}

pub fn merge(path: &Path, which: Which, out: &Path) -> Result<()> {
    let a = load_adapted(path, which, Device::Cpu)?;
    let tensors = merged_weights(&a.vs, &a.adapters)?;
    write_hf_checkpoint(out, &a.model_dir, a.saved.config.head, &tensors, a.saved.config.task.as_deref())?;
    eprintln!("merged {} adapted matrices into {}", a.adapters.len(), out.display());
    Ok(())
}

pub fn export(path: &Path, which: Which, out: &Path) -> Result<()> {
    let a = load_adapted(path, which, Device::Cpu)?;
    let head = head_tensors(&a.vs, a.saved.config.head);
    // What the user trained on: a hub name stays a hub name (PEFT's AutoPeftModel then finds it
    // in the HF cache or on the hub), a path stays as given.
    let base = a.saved.config.base_model.to_string_lossy().to_string();
    let ranks = export_peft(out, &a.adapters, &head, &base, a.saved.config.head)?;
    let total: i64 = ranks.iter().map(|(_, r)| r).sum();
    eprintln!("wrote a PEFT LoRA adapter ({} modules, total rank {total}) to {}", ranks.len(), out.display());
    Ok(())
}
