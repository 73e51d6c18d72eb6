//! Exports of an adapted model for HF transformers and huggingface/peft: a merged checkpoint
//! (W0 + dW in every adapted matrix, loadable as `DebertaV2ForSequenceClassification` /
//! `DebertaV2ForQuestionAnswering`) and a standard PEFT LoRA adapter directory (loadable with
//! `PeftModel.from_pretrained` on the base model), for every method: each adapter is written as
//! the plain LoRA factors of [`Adapter::lora_factors`](super::Adapter::lora_factors).
//!
//! PEFT format (peft 0.17.1): `adapter_model.safetensors` holds
//! `base_model.model.<module>.lora_A.weight` (r x d_in) and `...lora_B.weight` (d_out x r), and
//! each `modules_to_save` parameter as `base_model.model.<name>` (the `modules_to_save.default.`
//! infix removed, as `get_peft_model_state_dict` writes it). The scaling is folded into B', so
//! `adapter_config.json` gives every module `alpha == r` through `rank_pattern` and
//! `alpha_pattern` (scaling exactly 1).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tch::{nn, Device, Kind, Tensor};

use super::DynAdapter;
use crate::model::heads::head_prefixes;
use crate::model::{HeadKind, ModelDir};

/// A detached CPU fp32 contiguous copy that shares no storage with `t`.
fn snapshot(t: &Tensor) -> Tensor {
    tch::no_grad(|| t.detach().to_device_(Device::Cpu, Kind::Float, false, true).contiguous())
}

/// Every tensor of the VarStore (CPU, fp32, contiguous copies, sorted by name) with
/// `<module>.weight` replaced by W0 + dW for each adapted module.
pub fn merged_weights(vs: &nn::VarStore, adapters: &[(String, DynAdapter)]) -> Result<Vec<(String, Tensor)>> {
    let mut deltas: HashMap<String, (&str, Tensor)> = HashMap::new();
    for (module, adapter) in adapters {
        let dw = tch::no_grad(|| adapter.lock().expect("adapter lock poisoned").delta_weight().detach());
        if deltas.insert(format!("{module}.weight"), (module.as_str(), dw)).is_some() {
            bail!("module `{module}` has two adapters");
        }
    }
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(vars.len());
    for (name, var) in vars {
        let t = match deltas.remove(&name) {
            Some((module, dw)) => {
                if dw.size() != var.size() {
                    bail!("adapter of `{module}`: update has shape {:?} but the weight has {:?}", dw.size(), var.size());
                }
                tch::no_grad(|| {
                    (var.detach() + dw.to_device(var.device()).to_kind(var.kind())).to_device(Device::Cpu).to_kind(Kind::Float).contiguous()
                })
            }
            None => snapshot(&var),
        };
        out.push((name, t));
    }
    if let Some(weight) = deltas.into_keys().next() {
        bail!("adapted module has no weight `{weight}` in the model");
    }
    Ok(out)
}

/// The head's parameters (`pooler.*` and `classifier.*`, or `qa_outputs.*`) of the VarStore, as
/// CPU fp32 copies sorted by name: the `modules_to_save` of [`export_peft`].
pub fn head_tensors(vs: &nn::VarStore, head: HeadKind) -> Vec<(String, Tensor)> {
    let prefixes = head_prefixes(head);
    let mut out: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p))).map(|(n, t)| (n, snapshot(&t))).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn head_class(head: HeadKind) -> &'static str {
    match head {
        HeadKind::Cls => "DebertaV2ForSequenceClassification",
        HeadKind::Qa => "DebertaV2ForQuestionAnswering",
    }
}

/// Checks that `tensors` hold parameters of `head` under every one of its prefixes, and only of
/// that head; returns the output size of the head's last layer (`classifier` / `qa_outputs`).
fn check_head(tensors: &[(String, Tensor)], head: HeadKind, what: &str) -> Result<i64> {
    for p in head_prefixes(head) {
        if !tensors.iter().any(|(n, _)| n.starts_with(p)) {
            bail!("{what}: no `{p}*` tensor (the {head:?} head's parameters are required)");
        }
    }
    let others: Vec<&str> =
        [HeadKind::Cls, HeadKind::Qa].into_iter().filter(|k| *k != head).flat_map(|k| head_prefixes(k).iter().copied()).collect();
    if let Some((n, _)) = tensors.iter().find(|(n, _)| others.iter().any(|p| n.starts_with(p))) {
        bail!("{what}: tensor `{n}` belongs to another head than {head:?}");
    }
    let last = match head {
        HeadKind::Cls => "classifier.weight",
        HeadKind::Qa => "qa_outputs.weight",
    };
    let (_, w) = tensors.iter().find(|(n, _)| n == last).with_context(|| format!("{what}: no `{last}`"))?;
    Ok(w.size()[0])
}

/// Tokenizer files of an HF model directory, copied along with the weights when present.
const TOKENIZER_FILES: [&str; 5] = ["spm.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.json"];

/// The label fields of a merged `config.json`: `id2label`/`label2id` with the task's class names
/// (GLUE), else `LABEL_<i>`, sized by the head's weights, and `problem_type` as HF's heads read
/// it (`regression` for one output, `single_label_classification` otherwise; none for QA).
pub fn label_fields(
    head: HeadKind,
    labels: i64,
    task: Option<&str>,
) -> (BTreeMap<String, String>, BTreeMap<String, i64>, Option<&'static str>) {
    let classes: Option<Vec<String>> = task
        .and_then(crate::data::glue::task)
        .filter(|spec| spec.classes.len() as i64 == labels)
        .map(|spec| spec.classes.iter().map(|c| c.to_string()).collect());
    let names = classes.unwrap_or_else(|| (0..labels).map(|i| format!("LABEL_{i}")).collect());
    let id2label = names.iter().enumerate().map(|(i, n)| (i.to_string(), n.clone())).collect();
    let label2id = names.iter().enumerate().map(|(i, n)| (n.clone(), i as i64)).collect();
    let problem = match head {
        HeadKind::Cls if labels == 1 => Some("regression"),
        HeadKind::Cls => Some("single_label_classification"),
        HeadKind::Qa => None,
    };
    (id2label, label2id, problem)
}

/// Writes an HF model directory: `config.json` (the source model's, with `architectures` set to
/// the head's class, `dtype` float32 and the label fields of [`label_fields`] for the head's
/// weights and `task`), the tensors as `model.safetensors`, and the source's tokenizer files
/// (`spm.model`, ...) that exist. Loads in transformers with `AutoModelForSequenceClassification`
/// / `AutoModelForQuestionAnswering` and no missing or unexpected keys, given the tensors of
/// [`merged_weights`], whatever label fields the source config had (none, as a backbone-only
/// hub checkpoint, or another count).
pub fn write_hf_checkpoint(out: &Path, source: &ModelDir, head: HeadKind, tensors: &[(String, Tensor)], task: Option<&str>) -> Result<()> {
    let labels = check_head(tensors, head, "merged checkpoint")?;
    let config_path = source.dir.join("config.json");
    let text = std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
    let mut config: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", config_path.display()))?;
    let obj = config.as_object_mut().with_context(|| format!("{}: not a JSON object", config_path.display()))?;
    obj.insert("architectures".into(), json!([head_class(head)]));
    obj.insert("model_type".into(), json!("deberta-v2"));
    obj.remove("torch_dtype");
    obj.insert("dtype".into(), json!("float32"));
    // HF sizes `classifier` (and `qa_outputs`) by num_labels, i.e. by id2label (default 2):
    // always written, since the source's fields (or their absence) say nothing of this head.
    let (id2label, label2id, problem) = label_fields(head, labels, task);
    obj.remove("num_labels");
    obj.insert("id2label".into(), json!(id2label));
    obj.insert("label2id".into(), json!(label2id));
    match problem {
        Some(p) => obj.insert("problem_type".into(), json!(p)),
        None => obj.remove("problem_type"),
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let text = serde_json::to_string_pretty(&config)? + "\n";
    std::fs::write(out.join("config.json"), text).with_context(|| format!("cannot write {}", out.join("config.json").display()))?;
    write_safetensors(&out.join("model.safetensors"), tensors)?;
    for name in TOKENIZER_FILES {
        let src = source.dir.join(name);
        if src.is_file() {
            std::fs::copy(&src, out.join(name)).with_context(|| format!("cannot copy {} to {}", src.display(), out.display()))?;
        }
    }
    Ok(())
}

/// PEFT's `task_type` for a head.
pub fn peft_task_type(head: HeadKind) -> &'static str {
    match head {
        HeadKind::Cls => "SEQ_CLS",
        HeadKind::Qa => "QUESTION_ANS",
    }
}

/// Writes a standard PEFT LoRA adapter directory (`adapter_config.json` +
/// `adapter_model.safetensors`) for `adapters` on the model `base_model_name_or_path`, with
/// `head_tensors` (see [`head_tensors`]) as `modules_to_save`. Each module gets its own rank in
/// `rank_pattern` and `alpha == r` in `alpha_pattern`; modules of rank 0 (update zero) are left
/// out of `target_modules`. Returns the exported ranks, by module.
pub fn export_peft(
    out: &Path,
    adapters: &[(String, DynAdapter)],
    head_tensors: &[(String, Tensor)],
    base_model_name_or_path: &str,
    head: HeadKind,
) -> Result<Vec<(String, i64)>> {
    check_head(head_tensors, head, "export-peft head tensors")?;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut ranks: Vec<(String, i64)> = Vec::new();
    for (module, adapter) in adapters {
        let adapter = adapter.lock().expect("adapter lock poisoned");
        let r = adapter.rank();
        if r == 0 {
            continue;
        }
        let (a, b) = adapter.lora_factors();
        let (a, b) = (snapshot(&a), snapshot(&b));
        let (sa, sb) = (a.size(), b.size());
        if sa.len() != 2 || sb.len() != 2 || sa[0] != r || sb[1] != r {
            bail!("adapter of `{module}`: lora_factors gave A' {sa:?} and B' {sb:?} for rank {r} (expected r x d_in and d_out x r)");
        }
        tensors.push((format!("base_model.model.{module}.lora_A.weight"), a));
        tensors.push((format!("base_model.model.{module}.lora_B.weight"), b));
        ranks.push((module.clone(), r));
    }
    if ranks.is_empty() {
        bail!("export-peft: every adapter has rank 0 (the update is zero); there is no LoRA to export");
    }
    let mut modules_to_save: Vec<String> = Vec::new();
    for (name, t) in head_tensors {
        let module = name.rsplit_once('.').map_or(name.as_str(), |(m, _)| m).to_string();
        if !modules_to_save.contains(&module) {
            modules_to_save.push(module);
        }
        tensors.push((format!("base_model.model.{name}"), snapshot(t)));
    }
    let r_default = ranks.iter().map(|(_, r)| *r).max().unwrap_or(1);
    let pattern: BTreeMap<&str, i64> = ranks.iter().map(|(m, r)| (m.as_str(), *r)).collect();
    let targets: Vec<&str> = ranks.iter().map(|(m, _)| m.as_str()).collect();
    let config = json!({
        "alpha_pattern": pattern,
        "base_model_name_or_path": base_model_name_or_path,
        "bias": "none",
        "exclude_modules": null,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "lora_alpha": r_default,
        "lora_bias": false,
        "lora_dropout": 0.0,
        "modules_to_save": modules_to_save,
        "peft_type": "LORA",
        "r": r_default,
        "rank_pattern": pattern,
        "revision": null,
        "target_modules": targets,
        "task_type": peft_task_type(head),
        "use_dora": false,
        "use_rslora": false,
    });
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join("adapter_config.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config)? + "\n").with_context(|| format!("cannot write {}", path.display()))?;
    write_safetensors(&out.join("adapter_model.safetensors"), &tensors)?;
    Ok(ranks)
}

/// Writes fp32 tensors as a safetensors file with the `{"format": "pt"}` metadata HF writes
/// (older transformers refuse a file without it).
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, t) in tensors {
        if t.kind() != Kind::Float {
            bail!("{}: tensor `{name}` is {:?}; only fp32 is written", path.display(), t.kind());
        }
        let bytes = t.numel() * 4;
        let entry = json!({"dtype": "F32", "shape": t.size(), "data_offsets": [offset, offset + bytes]});
        if header.insert(name.clone(), entry).is_some() || name == "__metadata__" {
            bail!("{}: tensor name `{name}` used twice", path.display());
        }
        offset += bytes;
    }
    let mut head = serde_json::to_vec(&Value::Object(header))?;
    head.resize(head.len().div_ceil(8) * 8, b' ');
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(file);
    w.write_all(&(head.len() as u64).to_le_bytes())?;
    w.write_all(&head)?;
    for (_, t) in tensors {
        let values = Vec::<f32>::try_from(t.detach().to_device(Device::Cpu).contiguous().view(-1)).context("tensor to f32")?;
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        w.write_all(&bytes)?;
    }
    w.flush().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
