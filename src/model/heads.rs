//! Task heads on the backbone, as HF's `DebertaV2ForSequenceClassification` (ContextPooler +
//! classifier; one label means regression) and `DebertaV2ForQuestionAnswering` (qa_outputs).

use tch::{nn, nn::Module, Tensor};

use super::config::DebertaConfig;
use super::deberta::{activation, Backbone};
use super::linear::LinearFactory;

/// Which head a model carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// Sequence classification (regression when `num_labels == 1`).
    Cls,
    /// Extractive span question answering.
    Qa,
}

impl std::str::FromStr for HeadKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "cls" => Ok(HeadKind::Cls),
            "qa" => Ok(HeadKind::Qa),
            other => anyhow::bail!("unknown head {other:?} (expected cls or qa)"),
        }
    }
}

/// HF initialises head linears with N(0, initializer_range) weights and zero biases.
fn head_linear(p: nn::Path, in_dim: i64, out_dim: i64, c: &DebertaConfig) -> nn::Linear {
    let cfg = nn::LinearConfig {
        ws_init: nn::Init::Randn { mean: 0.0, stdev: c.initializer_range },
        bs_init: Some(nn::Init::Const(0.0)),
        bias: true,
    };
    nn::linear(p, in_dim, out_dim, cfg)
}

#[derive(Debug)]
enum Head {
    Cls { pooler: nn::Linear, pooler_act: String, pooler_dropout: f64, classifier: nn::Linear, cls_dropout: f64 },
    Qa { qa_outputs: nn::Linear },
}

/// What a forward pass returns.
pub struct ModelOutput {
    /// Classification: [batch, num_labels]. QA: [batch, len, 2] (start, end).
    pub logits: Tensor,
    pub last_hidden_state: Tensor,
}

/// A DeBERTa backbone with its task head; parameter names are HF's (`deberta.*`, `pooler.*`,
/// `classifier.*`, `qa_outputs.*`).
#[derive(Debug)]
pub struct DebertaModel {
    pub config: DebertaConfig,
    pub kind: HeadKind,
    backbone: Backbone,
    head: Head,
}

/// The HF names of each head's parameters, used to tell a backbone-only checkpoint apart.
pub fn head_prefixes(kind: HeadKind) -> &'static [&'static str] {
    match kind {
        HeadKind::Cls => &["pooler.", "classifier."],
        HeadKind::Qa => &["qa_outputs."],
    }
}

impl DebertaModel {
    pub fn new(root: &nn::Path, config: &DebertaConfig, kind: HeadKind, factory: &dyn LinearFactory) -> Self {
        let backbone = Backbone::new(root / "deberta", "deberta", config, factory);
        let head = match kind {
            HeadKind::Cls => {
                let ph = config.pooler_hidden_size();
                Head::Cls {
                    pooler: head_linear(root / "pooler" / "dense", config.hidden_size, ph, config),
                    pooler_act: config.pooler_hidden_act.clone(),
                    pooler_dropout: config.pooler_dropout,
                    classifier: head_linear(root / "classifier", ph, config.num_labels(), config),
                    cls_dropout: config.cls_dropout.unwrap_or(config.hidden_dropout_prob),
                }
            }
            HeadKind::Qa => Head::Qa { qa_outputs: head_linear(root / "qa_outputs", config.hidden_size, 2, config) },
        };
        DebertaModel { config: config.clone(), kind, backbone, head }
    }

    pub fn forward_t(&self, input_ids: &Tensor, attention_mask: &Tensor, token_type_ids: &Tensor, train: bool) -> ModelOutput {
        let hidden = self.backbone.forward_t(input_ids, attention_mask, token_type_ids, train);
        let logits = match &self.head {
            Head::Cls { pooler, pooler_act, pooler_dropout, classifier, cls_dropout } => {
                let first = hidden.select(1, 0).dropout(*pooler_dropout, train);
                let pooled = activation(pooler_act, &pooler.forward(&first));
                classifier.forward(&pooled.dropout(*cls_dropout, train))
            }
            Head::Qa { qa_outputs } => qa_outputs.forward(&hidden),
        };
        ModelOutput { logits, last_hidden_state: hidden }
    }
}
