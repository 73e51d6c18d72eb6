//! The model shapes `bench` builds with random weights: DeBERTa-v3 base, small, xsmall and the
//! tests' tiny fixture, by name (`--model-config`).

use std::str::FromStr;

use anyhow::Result;
use serde::Serialize;

use crate::model::DebertaConfig;

crate::listed::listed_enum! {
    /// Model shapes with random weights (no checkpoint needed).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Shape {
        /// microsoft/deberta-v3-base: 12 layers, hidden 768, 12 heads, FFN 3072, vocab 128100.
        Base,
        /// microsoft/deberta-v3-small: 6 layers, hidden 768, 12 heads, FFN 3072, vocab 128100.
        Small,
        /// microsoft/deberta-v3-xsmall: 12 layers, hidden 384, 6 heads, FFN 1536, vocab 128100.
        Xsmall,
        /// The test fixture (tests/fixtures/models/v3): 2 layers, hidden 32, 4 heads, FFN 64, vocab 1001.
        Tiny,
    }
}

impl Shape {
    pub fn as_str(self) -> &'static str {
        match self {
            Shape::Base => "base",
            Shape::Small => "small",
            Shape::Xsmall => "xsmall",
            Shape::Tiny => "tiny",
        }
    }

    /// (vocab, hidden, layers, heads, intermediate)
    fn dims(self) -> (i64, i64, i64, i64, i64) {
        match self {
            Shape::Base => (128100, 768, 12, 12, 3072),
            Shape::Small => (128100, 768, 6, 12, 3072),
            Shape::Xsmall => (128100, 384, 12, 6, 1536),
            Shape::Tiny => (1001, 32, 2, 4, 64),
        }
    }

    /// The DeBERTa-v3 config of this shape (relative attention with 256 log buckets, shared
    /// position keys, c2p and p2c, layer-normalised relative embeddings, dropout 0.1), with a
    /// two-label classification head.
    pub fn config(self) -> DebertaConfig {
        let (vocab, hidden, layers, heads, inter) = self.dims();
        let json = serde_json::json!({
            "vocab_size": vocab, "hidden_size": hidden, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": inter, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": 512, "type_vocab_size": 0, "initializer_range": 0.02,
            "layer_norm_eps": 1e-7, "relative_attention": true, "max_relative_positions": -1,
            "position_buckets": 256, "norm_rel_ebd": "layer_norm", "share_att_key": true,
            "pos_att_type": ["p2c", "c2p"], "position_biased_input": false, "pad_token_id": 0,
            "pooler_dropout": 0.0, "pooler_hidden_act": "gelu", "num_labels": 2,
        });
        serde_json::from_value(json).expect("the built-in shapes are valid configs")
    }
}

impl FromStr for Shape {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Shape::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("--model-config {s:?}: expected one of {}", Shape::ALL.map(|m| m.as_str()).join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_valid_and_named() {
        for s in Shape::ALL {
            s.config().validate().unwrap();
            assert_eq!(s.as_str().parse::<Shape>().unwrap(), s);
        }
    }
}
