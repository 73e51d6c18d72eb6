//! `triadapt merge` and `triadapt export-peft`: a trained adapter as a plain HF checkpoint
//! (dW folded into W0) or as a standard PEFT LoRA adapter; and loading any adapter (ours or a PEFT
//! LoRA folder) onto its base model for `eval` and `predict`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{nn, Device};

use crate::model::{DebertaModel, HeadKind, ModelDir};
use crate::peft::export::{export_peft, head_tensors, merged_weights, write_hf_checkpoint};
use crate::peft::import::{apply_modules, apply_saved_modules, check_modules_covered, is_peft_adapter, read_peft_lora};
use crate::peft::lora::LoraAdapter;
use crate::peft::save::{apply_adapter, read_adapter};
use crate::peft::AdapterFactory;
use crate::peft::DynAdapter;
use crate::train::checkpoint::{adapter_dir, Which};

/// Which adapter of a run folder, and on which base model.
#[derive(Debug, Clone, clap::Args)]
pub struct AdapterArgs {
    /// Of a run folder: `best` (the best evaluation's adapter, what its scores report) or
    /// `last` (the final step's).
    #[arg(long, value_enum, default_value = "best")]
    pub checkpoint: Which,
    /// The base model to put the adapter on, instead of the one its adapter_config.json names
    /// (`base_model`, or PEFT's `base_model_name_or_path`): a model directory or a hub name.
    #[arg(long, value_name = "DIR|NAME")]
    pub base_model: Option<PathBuf>,
}

/// `triadapt merge`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct MergeArgs {
    /// A run folder (uses its adapter/) or an adapter folder.
    pub adapter: PathBuf,
    /// Output model directory.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub from: AdapterArgs,
}

/// `triadapt export-peft`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportPeftArgs {
    /// A run folder (uses its adapter/) or an adapter folder.
    pub adapter: PathBuf,
    /// Output adapter directory.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub from: AdapterArgs,
}

/// The base model with an adapter applied: a triadapt adapter (from an adapter folder or a run
/// folder) or a PEFT LoRA adapter folder.
pub struct Adapted {
    /// The head the adapter was trained with.
    pub head: HeadKind,
    pub num_labels: i64,
    /// The task trained (its class names label a merged checkpoint); None for a PEFT adapter.
    pub task: Option<String>,
    /// The base model as the adapter names it (or as `--base-model` gave it).
    pub base_model: PathBuf,
    pub model_dir: ModelDir,
    pub vs: nn::VarStore,
    pub model: DebertaModel,
    pub adapters: Vec<(String, DynAdapter)>,
}

/// Whether `path` is something [`load_adapted`] reads (a run folder, a triadapt adapter folder
/// or a PEFT adapter folder) rather than a plain HF model directory.
pub fn is_adapter_or_run(path: &Path) -> bool {
    path.join("adapter").is_dir()
        || path.join(crate::train::checkpoint::BEST).is_dir()
        || path.join(crate::peft::save::ADAPTER_CONFIG).is_file()
}

/// A model as a user names it (an adapter's `base_model`, `--model`): a model directory (a
/// relative path resolves against the working directory, as in `train`), else a hub name
/// (`owner/name[@revision]`) found in the Hugging Face cache.
pub fn resolve_base_model(given: &Path) -> Result<PathBuf> {
    if given.is_dir() {
        return Ok(given.to_path_buf());
    }
    let name = given.to_string_lossy();
    crate::data::hub::resolve_model(&name).map(|m| m.dir).map_err(|e| {
        anyhow::anyhow!(
            "the base model {name:?} is neither a model directory (relative paths resolve against the working directory) nor a hub model in the Hugging Face cache ({e:#})"
        )
    })
}

fn open_base(given: &Path, what: impl Fn() -> String) -> Result<ModelDir> {
    resolve_base_model(given).and_then(|base| ModelDir::open(&base)).with_context(what)
}

/// Loads `path` onto its base model (`base_model` overrides the one the adapter names): a PEFT
/// LoRA adapter folder, a triadapt adapter folder, or a run folder (its `best/` or `adapter/`
/// as `which` says).
pub fn load_adapted(path: &Path, which: Which, base_model: Option<&Path>, device: Device) -> Result<Adapted> {
    if is_peft_adapter(path) {
        return load_peft(path, base_model, device);
    }
    let dir = adapter_dir(path, which);
    let saved = read_adapter(&dir)?;
    let base = base_model.unwrap_or(&saved.config.base_model).to_path_buf();
    let mut model_dir = open_base(&base, || format!("the adapter's base model (adapter_config.json `base_model`) for {}", dir.display()))?;
    model_dir.config.num_labels = Some(saved.config.num_labels);
    model_dir.config.id2label = None;
    let m = crate::peft::attach(&model_dir, saved.config.head, &saved.config.method, device)?;
    apply_adapter(&saved, &m.adapters, &m.vs).with_context(|| format!("{}", path.display()))?;
    let c = saved.config;
    Ok(Adapted {
        head: c.head,
        num_labels: c.num_labels,
        task: c.task,
        base_model: base,
        model_dir,
        vs: m.vs,
        model: m.model,
        adapters: m.adapters,
    })
}

/// A PEFT LoRA adapter on its base model, computing what `PeftModel` computes: each module with
/// its own rank and scaling, the `modules_to_save` tensors in place of the base model's.
fn load_peft(path: &Path, base_model: Option<&Path>, device: Device) -> Result<Adapted> {
    let peft = read_peft_lora(path)?;
    let base = match (base_model, &peft.base_model) {
        (Some(b), _) => b.to_path_buf(),
        (None, Some(b)) => PathBuf::from(b),
        (None, None) => bail!("{}: adapter_config.json names no base_model_name_or_path: give --base-model", path.display()),
    };
    let mut model_dir = open_base(&base, || {
        format!("the PEFT adapter's base model (base_model_name_or_path; override with --base-model) for {}", path.display())
    })?;
    // Neither task_type nor a saved head says: a sequence classifier, as PEFT's default model.
    let head = peft.head.unwrap_or(HeadKind::Cls);
    let num_labels = match head {
        HeadKind::Qa => 2,
        HeadKind::Cls => peft.num_labels().unwrap_or_else(|| model_dir.config.num_labels()),
    };
    if model_dir.config.num_labels() != num_labels {
        model_dir.config.num_labels = Some(num_labels);
        model_dir.config.id2label = None;
    }
    // Adapters of each module's rank; `apply_modules` then puts in PEFT's factors and scaling.
    let ranks: Vec<(String, i64)> = peft.modules.iter().map(|m| (m.name.clone(), m.rank())).collect();
    let names: Vec<String> = ranks.iter().map(|m| m.0.clone()).collect();
    let factory = AdapterFactory::selecting(
        move |name| names.iter().any(|n| n == name),
        0.0,
        move |name, d_in, d_out, dev| {
            let (_, r) = ranks.iter().find(|m| m.0 == name).expect("selected module");
            LoraAdapter::new(d_in, d_out, *r, 1.0, dev)
        },
    );
    let (vs, model, report) = model_dir.load(head, &factory, device)?;
    let typed = factory.adapters();
    check_modules_covered(&peft, &typed.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>())?;
    apply_modules(&peft, &typed)?;
    apply_saved_modules(&peft, &vs)?;
    let absent: Vec<&String> = report.initialised.iter().filter(|n| !peft.saved.iter().any(|(s, _)| s == *n)).collect();
    if !absent.is_empty() {
        bail!(
            "{}: neither the base model nor the adapter's modules_to_save hold the head tensors {absent:?} (PEFT would have used random values): save the head with the adapter (modules_to_save) or use a base model that has it",
            path.display()
        );
    }
    let adapters = crate::peft::dyn_adapters(&typed);
    Ok(Adapted { head, num_labels, task: None, base_model: base, model_dir, vs, model, adapters })
}

pub fn merge(args: &MergeArgs) -> Result<()> {
    let out = &args.out;
    let a = load_adapted(&args.adapter, args.from.checkpoint, args.from.base_model.as_deref(), Device::Cpu)?;
    let tensors = merged_weights(&a.vs, &a.adapters)?;
    write_hf_checkpoint(out, &a.model_dir, a.head, &tensors, a.task.as_deref())?;
    eprintln!("merged {} adapted matrices into {}", a.adapters.len(), out.display());
    Ok(())
}

pub fn export(args: &ExportPeftArgs) -> Result<()> {
    let out = &args.out;
    let a = load_adapted(&args.adapter, args.from.checkpoint, args.from.base_model.as_deref(), Device::Cpu)?;
    let head = head_tensors(&a.vs, a.head);
    // What the user trained on: a hub name stays a hub name (PEFT's AutoPeftModel then finds it
    // in the HF cache or on the hub), a path stays as given.
    let base = a.base_model.to_string_lossy().to_string();
    let ranks = export_peft(out, &a.adapters, &head, &base, a.head)?;
    let total: i64 = ranks.iter().map(|(_, r)| r).sum();
    eprintln!("wrote a PEFT LoRA adapter ({} modules, total rank {total}) to {}", ranks.len(), out.display());
    Ok(())
}
