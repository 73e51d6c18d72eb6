//! Helpers shared by the integration tests: fixture paths, oracle files, comparisons.

pub mod tolerance;

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use triadapt::data::batch::Batch;
use triadapt::model::{DebertaModel, HeadKind, ModelDir, PlainLinearFactory};
use triadapt::optim::OptimConfig;
use triadapt::peft::method::{MethodConfig, MethodName};
use triadapt::train::{Trainer, TrainerConfig};

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

/// A method config with a quick TriAdaptLoRA schedule (warm-up 4, interval 4, budget 3 n).
pub fn method(name: MethodName) -> MethodConfig {
    let mut cfg = MethodConfig { name, ..Default::default() };
    cfg.triadapt.ref_rank = 3;
    cfg.triadapt.warmup_steps = 4;
    cfg.triadapt.interval = 4;
    cfg
}

/// A trainer on the v3 fixture model (seeded) for `cfg`.
pub fn trainer(cfg: &MethodConfig, total_steps: i64) -> Trainer {
    trainer_in(cfg, total_steps, false)
}

/// [`trainer`], under bf16 autocast when `bf16` (call `precision::enable_bf16` first).
pub fn trainer_in(cfg: &MethodConfig, total_steps: i64, bf16: bool) -> Trainer {
    tch::manual_seed(7);
    let dir = ModelDir::open(&model_dir("v3")).unwrap();
    let model = triadapt::peft::attach(&dir, HeadKind::Cls, cfg, Device::Cpu).unwrap();
    Trainer::new(model, TrainerConfig { bf16, ..trainer_config(total_steps) }).unwrap()
}

/// The optimisation of the test trainers: lr 5e-3, 2 warm-up steps, weight decay 0.01, seed 1.
pub fn trainer_config(total_steps: i64) -> TrainerConfig {
    TrainerConfig {
        optim: OptimConfig { lr: 5e-3, warmup_steps: 2, weight_decay: 0.01, ..Default::default() },
        total_steps,
        seed: 1,
        bf16: false,
    }
}

/// A trainer like `trainer` on the v3 model with every dropout off, so that two precisions
/// see the same network (dropout masks drawn for bf16 and float32 tensors differ).
pub fn trainer_without_dropout(cfg: &MethodConfig, total_steps: i64) -> triadapt::train::Trainer {
    trainer_without_dropout_in(cfg, total_steps, false)
}

/// [`trainer_without_dropout`], under bf16 autocast when `bf16`.
pub fn trainer_without_dropout_in(cfg: &MethodConfig, total_steps: i64, bf16: bool) -> triadapt::train::Trainer {
    use triadapt::model::{HeadKind, ModelDir};
    tch::manual_seed(7);
    let mut dir = ModelDir::open(&model_dir("v3")).unwrap();
    dir.config.hidden_dropout_prob = 0.0;
    dir.config.attention_probs_dropout_prob = 0.0;
    dir.config.pooler_dropout = 0.0;
    dir.config.cls_dropout = Some(0.0);
    let model = triadapt::peft::attach(&dir, HeadKind::Cls, cfg, Device::Cpu).unwrap();
    triadapt::train::Trainer::new(model, TrainerConfig { bf16, ..trainer_config(total_steps) }).unwrap()
}

/// The v3_batch oracle inputs with fixed labels.
pub fn batch() -> Batch {
    let o = oracle("v3_batch");
    Batch {
        input_ids: o["input_ids"].shallow_clone(),
        attention_mask: o["attention_mask"].shallow_clone(),
        token_type_ids: o["token_type_ids"].shallow_clone(),
        labels: Tensor::from_slice(&[0i64, 1, 2, 1]),
    }
}

/// Held by every test that seeds torch's process-wide generator or trains in-process (the
/// trainer reseeds it each step): all test files run in one process, and two such tests would
/// otherwise interleave their draws.
pub fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
