//! Reading huggingface/peft LoRA adapter folders (`adapter_config.json` with `peft_type: LORA`,
//! `adapter_model.safetensors` or `adapter_model.bin`) as written by `save_pretrained`, so that
//! `eval`, `predict`, `merge` and `export-peft` take them and `train --init-adapter` starts LoRA
//! from one.
//!
//! What peft 0.17 computes and we follow: each adapted module adds `s B A x` with its own rank and
//! alpha, from `rank_pattern` / `alpha_pattern` when a pattern matches the module name (the first
//! pattern, in file order, that matches `(.*\.)?(<pattern>)$`), else `r` / `lora_alpha`;
//! `s = alpha / r`, or `alpha / sqrt(r)` with `use_rslora`. Tensors are stored as
//! `base_model.model.<module>.lora_A.weight` (r x d_in) and `...lora_B.weight` (d_out x r); every
//! other tensor is a `modules_to_save` copy stored as `base_model.model.<name>` (e.g. the
//! classifier). Which modules are adapted is read from the tensors, not re-derived from
//! `target_modules`. Anything that would change the computation and is not implemented (DoRA,
//! LoRA biases, other tuners, embeddings, layer replication) is refused with the key named.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use tch::Tensor;

use super::lora::LoraAdapter;
use super::save::ADAPTER_CONFIG;
use super::{Adapter, Shared};
use crate::model::checkpoint::{read_tensors, WeightFormat};
use crate::model::HeadKind;

/// The weight files of a PEFT adapter folder, in the order peft looks for them.
pub const PEFT_WEIGHTS: [(&str, WeightFormat); 2] =
    [("adapter_model.safetensors", WeightFormat::Safetensors), ("adapter_model.bin", WeightFormat::PytorchBin)];

const KEY_PREFIX: &str = "base_model.model.";

/// Whether `dir` holds a PEFT adapter (its adapter_config.json has `peft_type`), as opposed to a
/// triadapt adapter or run folder.
pub fn is_peft_adapter(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join(ADAPTER_CONFIG)) else { return false };
    serde_json::from_str::<serde_json::Value>(&text).map(|v| v.get("peft_type").is_some()).unwrap_or(false)
}

/// `rank_pattern` / `alpha_pattern`: patterns in file order (peft takes the first that matches).
#[derive(Debug, Default, Clone)]
pub struct Patterns(pub Vec<(String, f64)>);

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Ordered;
        impl<'de> Visitor<'de> for Ordered {
            type Value = Patterns;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map from module-name pattern to number")
            }
            fn visit_unit<E>(self) -> std::result::Result<Patterns, E> {
                Ok(Patterns::default())
            }
            fn visit_none<E>(self) -> std::result::Result<Patterns, E> {
                Ok(Patterns::default())
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> std::result::Result<Patterns, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, f64>()? {
                    out.push((k, v));
                }
                Ok(Patterns(out))
            }
        }
        d.deserialize_any(Ordered)
    }
}

/// The keys of a PEFT adapter_config.json that decide what the adapter computes.
#[derive(Debug, Deserialize)]
struct PeftConfigFile {
    peft_type: String,
    task_type: Option<String>,
    base_model_name_or_path: Option<String>,
    r: Option<i64>,
    lora_alpha: Option<f64>,
    use_rslora: Option<bool>,
    use_dora: Option<bool>,
    #[serde(default)]
    rank_pattern: Patterns,
    #[serde(default)]
    alpha_pattern: Patterns,
    fan_in_fan_out: Option<bool>,
    bias: Option<String>,
    lora_bias: Option<bool>,
    layer_replication: Option<serde_json::Value>,
    trainable_token_indices: Option<serde_json::Value>,
    target_parameters: Option<serde_json::Value>,
    use_qalora: Option<bool>,
}

impl PeftConfigFile {
    /// Refuses settings that change the computation and that we do not implement.
    fn check_supported(&self, path: &Path) -> Result<()> {
        let file = path.display();
        if self.peft_type != "LORA" {
            bail!("{file}: peft_type {:?}: only LoRA adapters (peft_type \"LORA\") can be read", self.peft_type);
        }
        let flags = [
            ("use_dora", self.use_dora, "DoRA"),
            ("fan_in_fan_out", self.fan_in_fan_out, "transposed (Conv1D) weights"),
            ("lora_bias", self.lora_bias, "LoRA biases"),
            ("use_qalora", self.use_qalora, "QALoRA"),
        ];
        for (key, value, what) in flags {
            if value == Some(true) {
                bail!("{file}: key `{key}` is true: {what} is not supported (plain LoRA only)");
            }
        }
        if let Some(bias) = self.bias.as_deref().filter(|b| *b != "none") {
            bail!("{file}: key `bias` is {bias:?}: trained biases are not supported (only \"none\")");
        }
        let present = [
            ("layer_replication", &self.layer_replication),
            ("trainable_token_indices", &self.trainable_token_indices),
            ("target_parameters", &self.target_parameters),
        ];
        for (key, value) in present {
            if value.as_ref().is_some_and(|v| !v.is_null()) {
                bail!("{file}: key `{key}` is set: not supported");
            }
        }
        Ok(())
    }
}

/// The first pattern (file order) that matches `module` as peft matches it:
/// `(.*\.)?(<pattern>)$` from the start of the name.
pub fn pattern_value(patterns: &Patterns, module: &str, which: &str) -> Result<Option<f64>> {
    for (pattern, value) in &patterns.0 {
        let re = regex::Regex::new(&format!(r"^(?:.*\.)?(?:{pattern})$"))
            .with_context(|| format!("key `{which}`: pattern {pattern:?} is not a regular expression we can read"))?;
        if re.is_match(module) {
            return Ok(Some(*value));
        }
    }
    Ok(None)
}

/// One adapted module of a PEFT LoRA adapter.
#[derive(Debug)]
pub struct PeftModule {
    /// HF module name, e.g. `deberta.encoder.layer.0.attention.self.query_proj`.
    pub name: String,
    /// r x d_in, as stored.
    pub a: Tensor,
    /// d_out x r, as stored (unscaled).
    pub b: Tensor,
    /// peft's scaling: alpha / r, or alpha / sqrt(r) with use_rslora.
    pub scaling: f64,
}

impl PeftModule {
    pub fn rank(&self) -> i64 {
        self.a.size()[0]
    }
}

/// A PEFT LoRA adapter folder, read and checked.
#[derive(Debug)]
pub struct PeftLora {
    pub dir: PathBuf,
    /// `base_model_name_or_path`.
    pub base_model: Option<String>,
    /// From `task_type` (SEQ_CLS, QUESTION_ANS), else from the saved head tensors.
    pub head: Option<HeadKind>,
    /// The adapted modules, sorted by name.
    pub modules: Vec<PeftModule>,
    /// `modules_to_save` tensors by HF parameter name (e.g. `classifier.weight`).
    pub saved: Vec<(String, Tensor)>,
}

impl PeftLora {
    /// Labels of the saved classifier, if the adapter carries one.
    pub fn num_labels(&self) -> Option<i64> {
        self.saved.iter().find(|(n, _)| n == "classifier.weight").map(|(_, t)| t.size()[0])
    }

    pub fn module(&self, name: &str) -> Option<&PeftModule> {
        self.modules.iter().find(|m| m.name == name)
    }
}

fn head_of_task(task_type: Option<&str>, path: &Path) -> Result<Option<HeadKind>> {
    Ok(match task_type {
        Some("SEQ_CLS") => Some(HeadKind::Cls),
        Some("QUESTION_ANS") => Some(HeadKind::Qa),
        None | Some("FEATURE_EXTRACTION") => None,
        Some(other) => bail!("{}: task_type {other:?}: a DeBERTa adapter is SEQ_CLS, QUESTION_ANS or FEATURE_EXTRACTION", path.display()),
    })
}

/// Reads a PEFT LoRA adapter folder.
pub fn read_peft_lora(dir: &Path) -> Result<PeftLora> {
    let cfg_path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read_to_string(&cfg_path).with_context(|| format!("cannot read {}", cfg_path.display()))?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    let cfg: PeftConfigFile =
        serde_path_to_error::deserialize(de).map_err(|e| anyhow::anyhow!("{}: key `{}`: {}", cfg_path.display(), e.path(), e.inner()))?;
    cfg.check_supported(&cfg_path)?;
    let (r, alpha) = match (cfg.r, cfg.lora_alpha) {
        (Some(r), Some(a)) => (r, a),
        _ => bail!("{}: keys `r` and `lora_alpha` are required", cfg_path.display()),
    };
    let (weights, format) = PEFT_WEIGHTS
        .iter()
        .map(|(name, f)| (dir.join(name), *f))
        .find(|(p, _)| p.is_file())
        .with_context(|| format!("{}: no adapter_model.safetensors or adapter_model.bin", dir.display()))?;
    let mut a_of = std::collections::BTreeMap::new();
    let mut b_of = std::collections::BTreeMap::new();
    let mut saved = Vec::new();
    for (key, t) in read_tensors(&weights, format)? {
        let Some(name) = key.strip_prefix(KEY_PREFIX) else {
            bail!("{}: tensor `{key}` does not start with `{KEY_PREFIX}` (not a PEFT adapter file)", weights.display());
        };
        if let Some(module) = name.strip_suffix(".lora_A.weight") {
            a_of.insert(module.to_string(), t);
        } else if let Some(module) = name.strip_suffix(".lora_B.weight") {
            b_of.insert(module.to_string(), t);
        } else if name.contains("lora_") {
            bail!(
                "{}: tensor `{key}`: only lora_A/lora_B of linear layers are supported (not embeddings, DoRA magnitudes or biases)",
                weights.display()
            );
        } else {
            saved.push((name.to_string(), t));
        }
    }
    saved.sort_by(|x, y| x.0.cmp(&y.0));
    let mut modules = Vec::new();
    for (name, a) in a_of {
        let b = b_of.remove(&name).with_context(|| format!("{}: `{name}` has lora_A but no lora_B", weights.display()))?;
        let rank = pattern_value(&cfg.rank_pattern, &name, "rank_pattern")?.map_or(r, |v| v as i64);
        let alpha = pattern_value(&cfg.alpha_pattern, &name, "alpha_pattern")?.unwrap_or(alpha);
        let (sa, sb) = (a.size(), b.size());
        if sa.len() != 2 || sb.len() != 2 || sa[0] != rank || sb[1] != rank {
            bail!("{}: `{name}`: lora_A {sa:?} and lora_B {sb:?} do not have the rank {rank} that adapter_config.json gives it (r / rank_pattern)", weights.display());
        }
        let scaling = if cfg.use_rslora == Some(true) { alpha / (rank as f64).sqrt() } else { alpha / rank as f64 };
        modules.push(PeftModule { name, a, b, scaling });
    }
    if let Some(name) = b_of.into_keys().next() {
        bail!("{}: `{name}` has lora_B but no lora_A", weights.display());
    }
    if modules.is_empty() {
        bail!("{}: no lora_A/lora_B tensors", weights.display());
    }
    let head = head_of_task(cfg.task_type.as_deref(), &cfg_path)?.or_else(|| {
        let has = |p: &str| saved.iter().any(|(n, _)| n.starts_with(p));
        if has("classifier.") {
            Some(HeadKind::Cls)
        } else if has("qa_outputs.") {
            Some(HeadKind::Qa)
        } else {
            None
        }
    });
    Ok(PeftLora { dir: dir.to_path_buf(), base_model: cfg.base_model_name_or_path, head, modules, saved })
}

/// Copies the adapter's `modules_to_save` tensors into the model's variables by HF name.
pub fn apply_saved_modules(peft: &PeftLora, vs: &tch::nn::VarStore) -> Result<()> {
    let vars = vs.variables();
    for (name, t) in &peft.saved {
        let var = vars
            .get(name)
            .with_context(|| format!("{}: modules_to_save tensor `{name}` is not a parameter of this DeBERTa model", peft.dir.display()))?;
        if var.size() != t.size() {
            bail!("{}: modules_to_save tensor `{name}` has shape {:?}, the model expects {:?}", peft.dir.display(), t.size(), var.size());
        }
        tch::no_grad(|| var.shallow_clone().copy_(t));
    }
    Ok(())
}

/// Checks that the model adapted exactly the adapter's modules: a module the backbone never
/// offered to the factory (the pooler, the classifier, embeddings) is named.
pub fn check_modules_covered(peft: &PeftLora, built: &[String]) -> Result<()> {
    let missing: Vec<&str> = peft.modules.iter().map(|m| m.name.as_str()).filter(|n| !built.iter().any(|b| b == n)).collect();
    if !missing.is_empty() {
        bail!(
            "{}: LoRA on {} is not supported: triadapt adapts the six per-layer matrices (query/key/value_proj, attention.output.dense, intermediate.dense, output.dense)",
            peft.dir.display(),
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Starts a method's fresh adapters (and the head, from its modules_to_save) at a PEFT LoRA
/// adapter: LoRA only (`train --init-adapter`).
pub fn start_from_peft(setup: &super::method::MethodSetup, peft: &PeftLora, vs: &tch::nn::VarStore) -> Result<()> {
    match setup {
        super::method::MethodSetup::Lora(f) => {
            init_lora(peft, &f.adapters())?;
            apply_saved_modules(peft, vs)
        }
        _ => bail!("a PEFT LoRA adapter starts method lora only"),
    }
}

/// Puts each module's PEFT factors and scaling into the adapter built for it.
pub fn apply_modules(peft: &PeftLora, adapters: &[(String, Shared<LoraAdapter>)]) -> Result<()> {
    for (name, adapter) in adapters {
        let m = peft.module(name).with_context(|| format!("{}: no LoRA factors for `{name}`", peft.dir.display()))?;
        let mut a = adapter.lock().expect("adapter lock");
        a.set_tensor("lora_A", m.a.shallow_clone())
            .and_then(|_| a.set_tensor("lora_B", m.b.shallow_clone()))
            .with_context(|| format!("{}: `{name}`", peft.dir.display()))?;
        a.scaling = m.scaling;
    }
    Ok(())
}

/// Starts LoRA adapters built from a run's config at a PEFT adapter: the same modules (else an
/// error listing the difference), each adapter taking the PEFT rank of its module, and B rescaled
/// so that the update `s B A` equals PEFT's exactly under the run's own scaling (`lora_alpha / r`
/// of the module's rank).
pub fn init_lora(peft: &PeftLora, adapters: &[(String, Shared<LoraAdapter>)]) -> Result<()> {
    let ours: Vec<&str> = adapters.iter().map(|(n, _)| n.as_str()).collect();
    let only_peft: Vec<&str> = peft.modules.iter().map(|m| m.name.as_str()).filter(|n| !ours.contains(n)).collect();
    let only_ours: Vec<&str> = ours.iter().copied().filter(|n| peft.module(n).is_none()).collect();
    if !only_peft.is_empty() || !only_ours.is_empty() {
        bail!(
            "--init-adapter {}: the adapter adapts other matrices than the config's target_modules/target_layers (only in the adapter: {:?}; only in the config: {:?}); set method.target_modules and method.target_layers to match",
            peft.dir.display(), only_peft, only_ours
        );
    }
    for (name, adapter) in adapters {
        let m = peft.module(name).expect("checked above");
        let mut a = adapter.lock().expect("adapter lock");
        a.set_tensor("lora_A", m.a.shallow_clone())?;
        let b = tch::no_grad(|| &m.b * (m.scaling / a.scaling));
        a.set_tensor("lora_B", b)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(p: &[(&str, f64)]) -> Patterns {
        Patterns(p.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[test]
    fn patterns_match_whole_name_components_from_the_end_in_file_order() {
        let m = "deberta.encoder.layer.1.attention.output.dense";
        // peft: re.match(r"(.*\.)?(output.dense)$", m) matches; "put.dense" is not a component.
        assert_eq!(pattern_value(&patterns(&[("put.dense", 1.0)]), m, "x").unwrap(), None);
        assert_eq!(pattern_value(&patterns(&[("output.dense", 2.0), ("dense", 3.0)]), m, "x").unwrap(), Some(2.0));
        assert_eq!(pattern_value(&patterns(&[("dense", 3.0), ("output.dense", 2.0)]), m, "x").unwrap(), Some(3.0));
        assert_eq!(pattern_value(&patterns(&[("layer.0.attention.output.dense", 3.0)]), m, "x").unwrap(), None);
        assert_eq!(pattern_value(&patterns(&[(r"layer\.[01]\..*output\.dense", 5.0)]), m, "x").unwrap(), Some(5.0));
    }

    #[test]
    fn patterns_keep_file_order() {
        let p: Patterns = serde_json::from_str(r#"{"z": 1, "a": 2, "m": 3}"#).unwrap();
        assert_eq!(p.0.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["z", "a", "m"]);
        let n: Patterns = serde_json::from_str("null").unwrap();
        assert!(n.0.is_empty());
    }
}
