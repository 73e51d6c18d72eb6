//! `AdaptedLinear` (frozen W0 + bias + an adapter behind dropout) and the generic factory that
//! places adapters on the targeted matrices and hands typed handles to the rank controller.

use std::sync::{Arc, Mutex};

use tch::{nn, nn::Module, Device, Tensor};

use super::{shared, Adapter, Shared, TargetSpec};
use crate::model::linear::{LinearFactory, LinearLayer, PlainLinear};

#[derive(Debug)]
pub struct AdaptedLinear {
    /// Frozen W0 and bias, under HF's names (`<module>.weight`, `<module>.bias`).
    pub base: nn::Linear,
    pub adapter: Arc<Mutex<dyn Adapter>>,
    pub dropout: f64,
}

impl LinearLayer for AdaptedLinear {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let base = self.base.forward(xs);
        let x = xs.dropout(self.dropout, train);
        let adapter = self.adapter.lock().expect("adapter lock poisoned");
        adapter.add_delta(&base, &x)
    }
}

/// Builds each targeted matrix's adapter with `make(module_name, d_in, d_out, device)`.
pub struct AdapterFactory<A: Adapter + 'static> {
    /// Whether a module (by HF path) gets an adapter.
    selects: Box<dyn Fn(&str) -> bool>,
    dropout: f64,
    make: Box<dyn Fn(&str, i64, i64, Device) -> A>,
    created: Mutex<Vec<(String, Shared<A>)>>,
}

impl<A: Adapter + 'static> AdapterFactory<A> {
    pub fn new(targets: TargetSpec, dropout: f64, make: impl Fn(&str, i64, i64, Device) -> A + 'static) -> Self {
        Self::selecting(move |name| targets.matches(name), dropout, make)
    }

    /// Adapts the modules `selects` accepts (e.g. exactly those of a PEFT adapter file).
    pub fn selecting(selects: impl Fn(&str) -> bool + 'static, dropout: f64, make: impl Fn(&str, i64, i64, Device) -> A + 'static) -> Self {
        AdapterFactory { selects: Box::new(selects), dropout, make: Box::new(make), created: Mutex::new(Vec::new()) }
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
            return Box::new(PlainLinear(base));
        }
        let adapter = shared((self.make)(name, in_dim, out_dim, device));
        self.created.lock().expect("factory lock").push((name.to_string(), adapter.clone()));
        Box::new(AdaptedLinear { base, adapter, dropout: self.dropout })
    }
}
