//! The linear-layer factory: the backbone asks it for each of the six per-layer matrices by HF
//! path, so fine-tuning methods plug in adapters without the model ever naming a method.

use tch::{nn, nn::Module, Tensor};

/// A linear map `x W^T + b` as the backbone sees it; adapters implement it too.
pub trait LinearLayer: std::fmt::Debug + Send {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor;

    /// The layer applied to the relative-position embeddings (DeBERTa's second call of
    /// `query_proj`/`key_proj` with `share_att_key`). The same map as [`LinearLayer::forward_t`]
    /// unless the layer was built to leave its adapter off that path (`method.position_query:
    /// frozen`, as the IncreLoRA/AdaLoRA GLUE harnesses call `nn.Linear.forward(self.query_proj,
    /// rel_embeddings)`).
    fn forward_position_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_t(xs, train)
    }
}

/// Builds the linears the backbone asks for. `name` is the HF module path, e.g.
/// `deberta.encoder.layer.3.attention.self.query_proj`; `path` is the matching VarStore path.
pub trait LinearFactory {
    fn linear(&self, path: nn::Path, name: &str, in_dim: i64, out_dim: i64) -> Box<dyn LinearLayer>;
}

#[derive(Debug)]
pub struct PlainLinear(pub nn::Linear);

impl LinearLayer for PlainLinear {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        self.0.forward(xs)
    }
}

/// The frozen-model factory: every matrix is an ordinary `nn::Linear` with HF's parameter names.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainLinearFactory;

impl LinearFactory for PlainLinearFactory {
    fn linear(&self, path: nn::Path, _name: &str, in_dim: i64, out_dim: i64) -> Box<dyn LinearLayer> {
        Box::new(PlainLinear(nn::linear(path, in_dim, out_dim, Default::default())))
    }
}

/// The six per-layer matrices the paper adapts, as HF path suffixes below `layer.<i>.`.
pub const LAYER_MATRICES: [&str; 6] = [
    "attention.self.query_proj",
    "attention.self.key_proj",
    "attention.self.value_proj",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];
