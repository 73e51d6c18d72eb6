//! `AdaptedLinear` (frozen W0 + bias + an adapter behind dropout) and the generic factory that
//! places adapters on the targeted matrices and hands typed handles to the rank controller.

use std::sync::{Arc, Mutex};

use tch::{nn, Device, Tensor};

use super::{shared, Adapter, Shared, TargetSpec};
use crate::model::linear::{Bf16Copy, LinearFactory, LinearLayer, PlainLinear};

#[derive(Debug)]
pub struct AdaptedLinear {
    /// Frozen W0 and bias, under HF's names (`<module>.weight`, `<module>.bias`).
    pub base: nn::Linear,
    pub adapter: Arc<Mutex<dyn Adapter>>,
    pub dropout: f64,
    /// Whether the relative-position path skips the adapter (W0 and bias only).
    pub frozen_on_position_path: bool,
    /// W0 and bias in bf16, cast once for every forward under bf16 autocast.
    pub base_bf16: Bf16Copy,
}

impl LinearLayer for AdaptedLinear {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let base = self.base_bf16.forward(&self.base, xs);
        let x = xs.dropout(self.dropout, train);
        let adapter = self.adapter.lock().expect("adapter lock poisoned");
        adapter.add_delta(&base, &x)
    }

    fn forward_position_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if self.frozen_on_position_path {
            self.base_bf16.forward(&self.base, xs)
        } else {
            self.forward_t(xs, train)
        }
    }
}

/// Which adapters DeBERTa's relative-position embeddings go through (`method.position_query`).
/// With `share_att_key`, every layer projects the position embeddings with its own
/// `query_proj` (for p2c) and `key_proj` (for c2p).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionQuery {
    /// Both projections with their adapters, as stock HF modules wrapped by PEFT.
    #[default]
    Adapted,
    /// `query_proj` without its adapter on that path (`key_proj` keeps it), as IncreLoRA's and
    /// AdaLoRA's GLUE harnesses (`nn.Linear.forward(self.query_proj, rel_embeddings)`).
    Frozen,
}

/// Makes the adapter of one matrix from its HF name, d_in, d_out and device.
type MakeAdapter<A> = Box<dyn Fn(&str, i64, i64, Device) -> A>;

/// Builds each targeted matrix's adapter with `make(module_name, d_in, d_out, device)`.
pub struct AdapterFactory<A: Adapter + 'static> {
    /// Whether a module (by HF path) gets an adapter.
    selects: Box<dyn Fn(&str) -> bool>,
    dropout: f64,
    make: MakeAdapter<A>,
    created: Mutex<Vec<(String, Shared<A>)>>,
    position_query: PositionQuery,
}

impl<A: Adapter + 'static> AdapterFactory<A> {
    pub fn new(targets: TargetSpec, dropout: f64, make: impl Fn(&str, i64, i64, Device) -> A + 'static) -> Self {
        Self::selecting(move |name| targets.matches(name), dropout, make)
    }

    /// Adapts the modules `selects` accepts (e.g. exactly those of a PEFT adapter file).
    pub fn selecting(selects: impl Fn(&str) -> bool + 'static, dropout: f64, make: impl Fn(&str, i64, i64, Device) -> A + 'static) -> Self {
        AdapterFactory {
            selects: Box::new(selects),
            dropout,
            make: Box::new(make),
            created: Mutex::new(Vec::new()),
            position_query: PositionQuery::Adapted,
        }
    }

    /// Sets whether query projections leave their adapter off the relative-position path.
    pub fn with_position_query(mut self, position_query: PositionQuery) -> Self {
        self.position_query = position_query;
        self
    }

    /// The adapters created so far, in model order, with their HF module names.
    pub fn adapters(&self) -> Vec<(String, Shared<A>)> {
        self.created.lock().expect("factory lock").clone()
    }
}

impl<A: Adapter + 'static> LinearFactory for AdapterFactory<A> {
    fn linear(&self, path: nn::Path, name: &str, in_dim: i64, out_dim: i64) -> Box<dyn LinearLayer> {
        let device = path.device();
        let base = nn::linear(path, in_dim, out_dim, Default::default());
        if !(self.selects)(name) {
            return Box::new(PlainLinear::new(base));
        }
        let adapter = shared((self.make)(name, in_dim, out_dim, device));
        self.created.lock().expect("factory lock").push((name.to_string(), adapter.clone()));
        let frozen_on_position_path = self.position_query == PositionQuery::Frozen && name.ends_with("query_proj");
        Box::new(AdaptedLinear { base, adapter, dropout: self.dropout, frozen_on_position_path, base_bf16: Bf16Copy::default() })
    }
}
