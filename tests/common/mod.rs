//! Helpers shared by the integration tests: fixture paths, oracle files, comparisons.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use triadapt::model::{DebertaModel, HeadKind, ModelDir, PlainLinearFactory};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn model_dir(name: &str) -> PathBuf {
    fixtures().join("models").join(name)
}

/// An oracle file written by scripts/make_fixtures.py, by tensor name.
pub fn oracle(name: &str) -> HashMap<String, Tensor> {
    let path = fixtures().join("oracle").join(format!("{name}.safetensors"));
    Tensor::read_safetensors(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect()
}

pub fn load(name: &str, kind: HeadKind) -> (tch::nn::VarStore, DebertaModel) {
    let dir = ModelDir::open(&model_dir(name)).unwrap();
    let (vs, model, _report) = dir.load(kind, &PlainLinearFactory, Device::Cpu).unwrap();
    (vs, model)
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

pub fn assert_close(what: &str, ours: &Tensor, hf: &Tensor, tol: f64) {
    let d = max_abs_diff(ours, hf);
    assert!(d <= tol, "{what}: max abs error {d:e} > {tol:e}");
}

/// Runs the model in eval mode on the oracle's inputs.
pub fn run_eval(model: &DebertaModel, o: &HashMap<String, Tensor>) -> triadapt::model::ModelOutput {
    tch::no_grad(|| model.forward_t(&o["input_ids"], &o["attention_mask"], &o["token_type_ids"], false))
}
