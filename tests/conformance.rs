//! What every fine-tuning method must do: one test per (method, check), e.g.
//! `conformance::adalora::a_resumed_run_is_bit_identical` (modules are named so that no module
//! shadows the `triadapt` crate: `triadaptlora`, `full_ft`); a method added to `MethodName::ALL`
//! but not to `conformance_tests!` fails `every_method_has_its_conformance_tests`. Checks: the adapted model
//! starts equal to the frozen one; a saved adapter loads back to the same outputs; the merged
//! weights, the exported LoRA factors and the live model compute the same; a run resumed from a
//! checkpoint is bit-identical to an uninterrupted one; training under bf16 autocast works.

use tch::{Device, Kind, Tensor};
use triadapt::model::{HeadKind, ModelDir, PlainLinearFactory};
use triadapt::peft::method::{MethodConfig, MethodName};
use triadapt::peft::save::{apply_adapter, read_adapter};
use triadapt::train::checkpoint::{resume, save_adapter};
use triadapt::train::Trainer;

use crate::common::tolerance::forward_bound;
use crate::common::*;

type Check = fn(&MethodConfig) -> Result<(), String>;

/// Steps of the short runs below.
const STEPS: i64 = 20;

/// `common::method` with schedules that allocate within [`STEPS`] steps: TriAdaptLoRA grows at
/// 8, 12, 16; AdaLoRA masks from step 4 (every 2 steps) to 14; IncreLoRA grows every 3 steps
/// after 3.
fn quick(name: MethodName) -> MethodConfig {
    let mut cfg = method(name);
    (cfg.adalora.tinit, cfg.adalora.tfinal, cfg.adalora.delta_t) = (4, 6, 2);
    (cfg.increlora.init_warmup, cfg.increlora.incre_interval) = (3, 3);
    cfg
}

fn ensure(ok: bool, msg: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(msg())
    }
}

fn logits(model: &triadapt::model::DebertaModel) -> Tensor {
    run_eval(model, &oracle("v3_batch")).logits
}

/// A trainer after `steps` training steps on the fixture batch.
fn trained(cfg: &MethodConfig, steps: i64) -> Trainer {
    let mut t = trainer(cfg, STEPS);
    let b = batch();
    for step in 0..steps {
        t.step(&b, step).unwrap();
    }
    t
}

fn starts_equal(cfg: &MethodConfig) -> Result<(), String> {
    let t = trainer(cfg, STEPS);
    let o = oracle("v3_batch");
    let bound = forward_bound("v3", o["input_ids"].size()[1], &o["logits"]);
    let d = max_abs_diff(&logits(&t.model), &o["logits"]);
    ensure(d <= bound, || format!("logits at step 0 differ from HF's frozen model by {d:e} (bound {bound:e})"))
}

fn save_load_round_trip(cfg: &MethodConfig) -> Result<(), String> {
    let t = trained(cfg, 12);
    let tmp = tempfile::tempdir().unwrap();
    save_adapter(tmp.path(), &t, cfg, 12, &model_dir("v3"), "mnli").map_err(|e| format!("{e:#}"))?;
    let dir = ModelDir::open(&model_dir("v3")).unwrap();
    let fresh = triadapt::peft::attach(&dir, HeadKind::Cls, cfg, Device::Cpu).unwrap();
    apply_adapter(&read_adapter(tmp.path()).map_err(|e| format!("{e:#}"))?, &fresh.adapters, &fresh.vs).map_err(|e| format!("{e:#}"))?;
    let d = max_abs_diff(&logits(&fresh.model), &logits(&t.model));
    ensure(d == 0.0, || format!("reloaded logits differ by {d:e}"))?;
    ensure(fresh.adapters.iter().map(|(_, a)| a.lock().unwrap().rank()).eq(t.controller.ranks().into_iter().map(|(_, r)| r)), || {
        "reloaded ranks differ".into()
    })
}

fn merge_export_live(cfg: &MethodConfig) -> Result<(), String> {
    let t = trained(cfg, 12);
    let live = logits(&t.model);
    // Merged: W0 + dW as a plain HF checkpoint, loaded without adapters.
    let tmp = tempfile::tempdir().unwrap();
    let merged = triadapt::peft::export::merged_weights(&t.vs, t.adapters()).map_err(|e| format!("{e:#}"))?;
    let source = ModelDir::open(&model_dir("v3")).unwrap();
    let out = tmp.path().join("merged");
    triadapt::peft::export::write_hf_checkpoint(&out, &source, HeadKind::Cls, &merged, Some("mnli")).map_err(|e| format!("{e:#}"))?;
    let (_vs, plain, _) =
        ModelDir::open(&out).unwrap().load(HeadKind::Cls, &PlainLinearFactory, Device::Cpu).map_err(|e| format!("{e:#}"))?;
    let o = oracle("v3_batch");
    let bound = forward_bound("v3", o["input_ids"].size()[1], &live);
    let d = max_abs_diff(&logits(&plain), &live);
    ensure(d <= bound, || format!("the merged checkpoint's logits differ from the live model's by {d:e} (bound {bound:e})"))?;
    // Exported: the LoRA factors PEFT gets compute each adapter's update at its rank.
    for (module, a) in t.adapters() {
        let a = a.lock().unwrap();
        let (fa, fb) = a.lora_factors();
        let dw = a.delta_weight();
        ensure(fa.size()[0] == fb.size()[1], || format!("{module}: factors {:?} x {:?} do not match", fb.size(), fa.size()))?;
        let d = max_abs_diff(&fb.matmul(&fa), &dw);
        ensure(d <= 1e-5 * (1.0 + dw.abs().max().double_value(&[])), || format!("{module}: B'A' differs from the update by {d:e}"))?;
    }
    Ok(())
}

/// Trains [`STEPS`] steps straight through, and 9 steps + save + a fresh rebuild + load + the
/// rest: every trained tensor and every rank must be bit-identical.
fn resume_is_exact(cfg: &MethodConfig) -> Result<(), String> {
    let split = 9;
    let straight = trained(cfg, STEPS);
    let first = trained(cfg, split);
    let tmp = tempfile::tempdir().unwrap();
    save_adapter(tmp.path(), &first, cfg, split, &model_dir("v3"), "mnli").map_err(|e| format!("{e:#}"))?;
    drop(first);
    // A fresh build, as a new process: initial shapes, then the saved (grown) tensors and state.
    tch::manual_seed(7);
    let dir = ModelDir::open(&model_dir("v3")).unwrap();
    let model = triadapt::peft::attach(&dir, HeadKind::Cls, cfg, Device::Cpu).unwrap();
    apply_adapter(&read_adapter(tmp.path()).unwrap(), &model.adapters, &model.vs).map_err(|e| format!("{e:#}"))?;
    let mut resumed = Trainer::new(model, trainer_config(STEPS)).unwrap();
    let at = resume(&mut resumed, tmp.path()).map_err(|e| format!("{e:#}"))?;
    ensure(at == split, || format!("resumed at step {at}, saved at {split}"))?;
    let b = batch();
    for step in split..STEPS {
        resumed.step(&b, step).unwrap();
    }
    let tensors = |t: &Trainer| -> Vec<(String, Tensor)> {
        let mut v: Vec<(String, Tensor)> =
            t.controller.named_params().into_iter().chain(t.trainable_vars().iter().map(|(n, x)| (n.clone(), x.shallow_clone()))).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (ours, theirs) = (tensors(&resumed), tensors(&straight));
    ensure(ours.len() == theirs.len(), || format!("{} trained tensors after resuming, {} straight", ours.len(), theirs.len()))?;
    for ((name, a), (_, b)) in ours.iter().zip(&theirs) {
        ensure(a.equal(b), || format!("{name} differs after resuming"))?;
    }
    ensure(resumed.controller.ranks() == straight.controller.ranks(), || "ranks differ after resuming".into())
}

/// A few steps under CPU bf16 autocast: the first loss within 0.05 of fp32's (same weights and
/// batch, dropout off), every loss finite, weights and optimizer state still float32.
fn bf16_trains(cfg: &MethodConfig) -> Result<(), String> {
    triadapt::precision::enable_bf16(Device::Cpu).map_err(|e| format!("{e:#}"))?;
    let b = batch();
    let first_fp32 = trainer_without_dropout(cfg, 12).step(&b, 0).unwrap().loss_value();
    let mut t = trainer_without_dropout_in(cfg, 12, true);
    let first = t.step(&b, 0).unwrap().loss_value();
    ensure((first - first_fp32).abs() <= 0.05, || format!("bf16 first loss {first} vs fp32 {first_fp32}"))?;
    for step in 1..12 {
        let loss = t.step(&b, step).unwrap().loss_value();
        ensure(loss.is_finite(), || format!("loss {loss} at step {step}"))?;
    }
    ensure(t.trainable().iter().all(|p| p.kind() == Kind::Float), || "a trainable tensor left float32".into())
}

/// Runs one check for one method (each its own test, so `cargo test conformance::lora` or
/// `conformance::starts_equal` selects and reports them one by one).
fn run(name: MethodName, check: Check) {
    let _rng = torch_rng();
    if let Err(e) = check(&quick(name)) {
        panic!("{name:?}: {e}");
    }
}

/// One module per method, one test per check. Every method of `MethodName::ALL` must be listed:
/// `every_method_has_its_conformance_tests` fails otherwise.
macro_rules! conformance_tests {
    ($($module:ident => $method:expr),* $(,)?) => {
        $(mod $module {
            use super::*;

            #[test]
            fn starts_equal_to_the_frozen_model() {
                run($method, starts_equal)
            }

            #[test]
            fn a_saved_adapter_loads_back_to_the_same_outputs() {
                run($method, save_load_round_trip)
            }

            #[test]
            fn merged_weights_equal_exported_factors_and_live_model() {
                run($method, merge_export_live)
            }

            #[test]
            fn a_resumed_run_is_bit_identical() {
                run($method, resume_is_exact)
            }

            #[test]
            fn trains_under_bf16_autocast() {
                run($method, bf16_trains)
            }
        })*

        #[test]
        fn every_method_has_its_conformance_tests() {
            let listed = [$($method),*];
            let missing: Vec<MethodName> = MethodName::ALL.into_iter().filter(|m| !listed.contains(m)).collect();
            assert!(missing.is_empty(), "methods without conformance tests (add them to conformance_tests!): {missing:?}");
        }
    };
}

conformance_tests! {
    full_ft => MethodName::Full,
    lora => MethodName::Lora,
    triadaptlora => MethodName::Triadapt,
    adalora => MethodName::Adalora,
    increlora => MethodName::Increlora,
}
