//! The HF `config.json` of a DeBERTaV2/V3 model, with HF's defaults and our validation.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// `pos_att_type` is a list in new configs and a `"p2c|c2p"` string in old ones.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum PosAttType {
    List(Vec<String>),
    Joined(String),
}

impl PosAttType {
    fn kinds(&self) -> Vec<String> {
        match self {
            PosAttType::List(v) => v.iter().map(|s| s.trim().to_lowercase()).collect(),
            PosAttType::Joined(s) => s.to_lowercase().split('|').map(|x| x.trim().to_string()).collect(),
        }
    }
}

/// The fields of `DebertaV2Config` that change what the network computes. Unlisted keys of a
/// config.json (architectures, torch_dtype, ...) are accepted and ignored, as HF does.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DebertaConfig {
    #[serde(default = "d::vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "d::hidden_size")]
    pub hidden_size: i64,
    #[serde(default = "d::num_hidden_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "d::num_attention_heads")]
    pub num_attention_heads: i64,
    #[serde(default)]
    pub attention_head_size: Option<i64>,
    #[serde(default = "d::intermediate_size")]
    pub intermediate_size: i64,
    #[serde(default = "d::gelu")]
    pub hidden_act: String,
    #[serde(default = "d::dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "d::dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "d::max_position_embeddings")]
    pub max_position_embeddings: i64,
    #[serde(default)]
    pub type_vocab_size: i64,
    #[serde(default = "d::initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "d::layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub relative_attention: bool,
    #[serde(default = "d::minus_one")]
    pub max_relative_positions: i64,
    #[serde(default = "d::minus_one")]
    pub position_buckets: i64,
    #[serde(default)]
    pub pad_token_id: i64,
    #[serde(default = "d::yes")]
    pub position_biased_input: bool,
    #[serde(default)]
    pub pos_att_type: Option<PosAttType>,
    #[serde(default)]
    pub share_att_key: bool,
    #[serde(default)]
    pub norm_rel_ebd: Option<String>,
    #[serde(default)]
    pub embedding_size: Option<i64>,
    #[serde(default)]
    pub pooler_hidden_size: Option<i64>,
    #[serde(default)]
    pub pooler_dropout: f64,
    #[serde(default = "d::gelu")]
    pub pooler_hidden_act: String,
    #[serde(default)]
    pub cls_dropout: Option<f64>,
    /// DeBERTa-v2-xlarge/xxlarge's convolution beside layer 0 (`encoder.conv`; 0: none).
    #[serde(default)]
    pub conv_kernel_size: i64,
    #[serde(default = "d::one")]
    pub conv_groups: i64,
    /// HF's default when the key is absent is tanh (the hub's xlarge configs say gelu).
    #[serde(default = "d::tanh")]
    pub conv_act: String,
    #[serde(default)]
    pub num_labels: Option<i64>,
    #[serde(default)]
    pub id2label: Option<std::collections::BTreeMap<String, String>>,
}

mod d {
    pub fn vocab_size() -> i64 {
        128100
    }
    pub fn hidden_size() -> i64 {
        1536
    }
    pub fn num_hidden_layers() -> i64 {
        24
    }
    pub fn num_attention_heads() -> i64 {
        24
    }
    pub fn intermediate_size() -> i64 {
        6144
    }
    pub fn gelu() -> String {
        "gelu".into()
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn max_position_embeddings() -> i64 {
        512
    }
    pub fn initializer_range() -> f64 {
        0.02
    }
    pub fn layer_norm_eps() -> f64 {
        1e-7
    }
    pub fn minus_one() -> i64 {
        -1
    }
    pub fn one() -> i64 {
        1
    }
    pub fn tanh() -> String {
        "tanh".into()
    }
    pub fn yes() -> bool {
        true
    }
}

/// Activations HF's ACT2FN offers that we implement with identical numerics.
pub const SUPPORTED_ACTIVATIONS: &[&str] = &["gelu", "gelu_pytorch_tanh", "relu", "tanh"];

impl DebertaConfig {
    /// Reads and validates `config.json`; errors name the file and the offending key.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read model config {}", path.display()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let cfg: DebertaConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("key `{}`: {}", e.path(), e.inner()))
            .with_context(|| format!("{}: not a valid DeBERTa config.json", path.display()))?;
        cfg.validate().with_context(|| format!("{}: unsupported model config", path.display()))?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<()> {
        if self.conv_kernel_size > 0 {
            // HF pads by (k - 1) / 2 on each side: only an odd kernel keeps the sequence length.
            if self.conv_kernel_size % 2 == 0 {
                bail!(
                    "key `conv_kernel_size` = {}: an even kernel changes the sequence length (HF fails on it too); use an odd size",
                    self.conv_kernel_size
                );
            }
            if self.conv_groups <= 0 || self.hidden_size % self.conv_groups != 0 {
                bail!("key `conv_groups` = {}: hidden_size {} must be a positive multiple of it", self.conv_groups, self.hidden_size);
            }
            if !SUPPORTED_ACTIVATIONS.contains(&self.conv_act.as_str()) {
                bail!("key `conv_act` = {:?}: supported activations are {SUPPORTED_ACTIVATIONS:?}", self.conv_act);
            }
        }
        for kind in self.pos_att_kinds() {
            match kind.as_str() {
                "c2p" | "p2c" => {}
                "p2p" => bail!("key `pos_att_type`: \"p2p\" attention is not supported (HF ignores it too); use c2p and/or p2c"),
                other => bail!("key `pos_att_type`: unknown attention type {other:?} (expected c2p, p2c)"),
            }
        }
        for (key, act) in [("hidden_act", &self.hidden_act), ("pooler_hidden_act", &self.pooler_hidden_act)] {
            if !SUPPORTED_ACTIVATIONS.contains(&act.as_str()) {
                bail!("key `{key}` = {act:?}: supported activations are {SUPPORTED_ACTIVATIONS:?}");
            }
        }
        if self.attention_head_size.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            bail!("key `num_attention_heads` = {}: hidden_size {} is not a multiple of it", self.num_attention_heads, self.hidden_size);
        }
        let norm = self.norm_rel_kinds();
        if let Some(bad) = norm.iter().find(|k| *k != "none" && *k != "layer_norm") {
            bail!("key `norm_rel_ebd`: unknown normalisation {bad:?} (expected none or layer_norm)");
        }
        if self.hidden_size <= 0 || self.num_hidden_layers <= 0 || self.vocab_size <= 0 {
            bail!("keys `hidden_size`, `num_hidden_layers`, `vocab_size` must be positive");
        }
        Ok(())
    }

    pub fn pos_att_kinds(&self) -> Vec<String> {
        self.pos_att_type.as_ref().map(|p| p.kinds()).unwrap_or_default()
    }

    pub fn has_c2p(&self) -> bool {
        self.pos_att_kinds().iter().any(|k| k == "c2p")
    }

    pub fn has_p2c(&self) -> bool {
        self.pos_att_kinds().iter().any(|k| k == "p2c")
    }

    fn norm_rel_kinds(&self) -> Vec<String> {
        self.norm_rel_ebd.as_deref().unwrap_or("none").to_lowercase().split('|').map(|s| s.trim().to_string()).collect()
    }

    pub fn norm_rel_layer_norm(&self) -> bool {
        self.norm_rel_kinds().iter().any(|k| k == "layer_norm")
    }

    pub fn head_size(&self) -> i64 {
        self.attention_head_size.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    pub fn embedding_size(&self) -> i64 {
        self.embedding_size.unwrap_or(self.hidden_size)
    }

    pub fn pooler_hidden_size(&self) -> i64 {
        self.pooler_hidden_size.unwrap_or(self.hidden_size)
    }

    /// HF's effective `max_relative_positions` (values below 1 fall back to the absolute maximum).
    pub fn max_relative_positions(&self) -> i64 {
        if self.max_relative_positions < 1 {
            self.max_position_embeddings
        } else {
            self.max_relative_positions
        }
    }

    /// Half the number of relative-embedding rows (HF's `pos_ebd_size`, the attention span).
    pub fn att_span(&self) -> i64 {
        if self.position_buckets > 0 {
            self.position_buckets
        } else {
            self.max_relative_positions()
        }
    }

    /// Labels of a classification head: `num_labels`, else the size of `id2label`, else 2 (HF).
    pub fn num_labels(&self) -> i64 {
        self.num_labels.or_else(|| self.id2label.as_ref().map(|m| m.len() as i64)).unwrap_or(2)
    }
}
