//! Fine-tuning methods on the tiny fixture model: the adapted model starts equal to the frozen
//! one, TriAdaptLoRA grows as spec 1.1 says, every method trains, and bad settings name the key.

mod common;

use common::*;
use tch::{Device, Kind, Tensor};
use triadapt::peft::method::{MethodConfig, MethodName};
use triadapt::peft::triadapt::{GrowthMode, TriAdapter};
use triadapt::peft::Adapter;


#[test]
fn adapted_models_start_equal_to_the_frozen_model() {
    let o = oracle("v3_batch");
    for name in [MethodName::Lora, MethodName::Triadapt] {
        let t = trainer(&method(name), 10);
        let out = run_eval(&t.model, &o);
        assert_close(&format!("{name:?} logits at step 0"), &out.logits, &o["logits"], 1e-6);
    }
}

#[test]
fn triadapt_per_rank_growth_keeps_old_entries_and_adds_triangles() {
    tch::manual_seed(3);
    let mut a = TriAdapter::new(6, 5, 1, 8.0, 0.02, Device::Cpu);
    tch::no_grad(|| {
        let _ = a.b.shallow_clone().fill_(0.5); // make B's old column recognisable
    });
    a.grow(1, GrowthMode::PerRank, 0.02);
    let (old_a, old_b, old_l, old_u) = (a.a.copy(), a.b.copy(), a.l.copy(), a.u.copy());
    a.grow(2, GrowthMode::PerRank, 0.02);
    assert_eq!(a.rank(), 4);
    assert_eq!(a.a.size(), [4, 6]);
    assert_eq!(a.b.size(), [5, 4]);
    assert!(a.a.narrow(0, 0, 2).equal(&old_a));
    assert!(a.b.narrow(1, 0, 2).equal(&old_b));
    assert!(a.l.narrow(0, 0, 2).narrow(1, 0, 2).equal(&old_l));
    assert!(a.u.narrow(0, 0, 2).narrow(1, 0, 2).equal(&old_u));
    // L is lower and U upper triangular (diagonals included); the masks are exactly the triangles.
    let ones = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
    assert!(a.l_mask.equal(&ones.tril(0)) && a.u_mask.equal(&ones.triu(0)));
    assert!(a.l.triu(1).abs().max().double_value(&[]) == 0.0);
    assert!(a.u.tril(-1).abs().max().double_value(&[]) == 0.0);
    // New rows/columns are random (non-zero), and B's new columns are not the old 0.5.
    assert!(a.l.get(3).narrow(0, 0, 4).abs().min().double_value(&[]) > 0.0);
    assert!(a.u.select(1, 3).abs().min().double_value(&[]) > 0.0);
    assert!(a.b.narrow(1, 2, 2).ne(0.5).all().int64_value(&[]) == 1);
    // Parameters: r*d_in + r*d_out + r(r+1).
    assert_eq!(a.trainable_count(), 4 * 6 + 4 * 5 + 4 * 5);
}

#[test]
fn triadapt_block_growth_appends_full_blocks() {
    tch::manual_seed(3);
    let mut a = TriAdapter::new(6, 5, 2, 8.0, 0.02, Device::Cpu);
    a.grow(2, GrowthMode::Block, 0.02);
    let expect_l = Tensor::from_slice(&[1f32, 0., 0., 0., 1., 1., 0., 0., 1., 1., 1., 1., 1., 1., 1., 1.]).view([4, 4]);
    let expect_u = Tensor::from_slice(&[1f32, 1., 1., 1., 0., 1., 1., 1., 0., 0., 1., 1., 0., 0., 1., 1.]).view([4, 4]);
    assert!(a.l_mask.equal(&expect_l), "{}", a.l_mask);
    assert!(a.u_mask.equal(&expect_u), "{}", a.u_mask);
}

#[test]
fn triadapt_importance_is_the_normalised_frobenius_norm() {
    let mut a = TriAdapter::new(4, 4, 2, 8.0, 0.02, Device::Cpu);
    a.l = Tensor::from_slice(&[1f32, 0., 2., 3.]).view([2, 2]);
    a.u = Tensor::from_slice(&[1f32, 4., 0., -1.]).view([2, 2]);
    // C = [[2, 4], [2, 2]]: ||C||_F = sqrt(4 + 16 + 4 + 4) = sqrt(28); I = sqrt(28) / 2.
    assert!((a.importance() - 28f64.sqrt() / 2.0).abs() < 1e-6);
}

#[test]
fn triadapt_delta_and_raw_scores_follow_the_importance() {
    use triadapt::peft::triadapt::{ImportanceMode, TriAdaptConfig, TriAdaptController};
    let make = |l: f32| {
        let mut a = TriAdapter::new(4, 4, 1, 8.0, 0.02, Device::Cpu);
        a.l = Tensor::from_slice(&[l]).view([1, 1]);
        a.u = Tensor::from_slice(&[0f32]).view([1, 1]);
        triadapt::peft::shared(a)
    };
    let adapters = vec![("m0".to_string(), make(1.0)), ("m1".to_string(), make(2.0))];
    let cfg = TriAdaptConfig { importance: ImportanceMode::Delta, ..Default::default() };
    let mut c = TriAdaptController::new(cfg, adapters.clone(), 100, 0.0);
    adapters[0].1.lock().unwrap().l = Tensor::from_slice(&[4f32]).view([1, 1]);
    // Delta: I now minus I at initialisation = (4 - 1, 2 - 2).
    assert_eq!(c.scores(), vec![3.0, 0.0]);
    adapters[1].1.lock().unwrap().l = Tensor::from_slice(&[-5f32]).view([1, 1]);
    // ... and then minus I at the previous allocation step.
    assert_eq!(c.scores(), vec![0.0, 3.0]);
    let mut raw = TriAdaptController::new(TriAdaptConfig { importance: ImportanceMode::Raw, ..Default::default() }, adapters, 100, 0.0);
    assert_eq!(raw.scores(), vec![4.0, 5.0]);
}

#[test]
fn every_method_trains_and_triadapt_ends_at_its_budget() {
    let total = 40;
    for name in [MethodName::Full, MethodName::Lora, MethodName::Triadapt] {
        let cfg = method(name);
        let mut t = trainer(&cfg, total);
        let b = batch();
        let mut losses = Vec::new();
        for step in 0..total {
            losses.push(t.step(&b, step).unwrap().loss);
            if let Some(budget) = t.controller.budget() {
                let sum: i64 = t.controller.ranks().iter().map(|(_, r)| r).sum();
                assert!(sum <= budget, "{name:?}: total rank {sum} above budget {budget} at step {step}");
            }
        }
        let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
        let last: f64 = losses[total as usize - 5..].iter().sum::<f64>() / 5.0;
        assert!(last < 0.5 * first, "{name:?}: loss did not fall enough ({first} -> {last})");
        if name == MethodName::Triadapt {
            let sum: i64 = t.controller.ranks().iter().map(|(_, r)| r).sum();
            assert_eq!(Some(sum), t.controller.budget(), "TriAdaptLoRA must end at its budget");
        }
    }
}

#[test]
fn bad_method_settings_name_the_key() {
    let err = |cfg: &MethodConfig, total: i64| format!("{}", cfg.validate(2, total).unwrap_err());
    let mut c = method(MethodName::Lora);
    c.lora.rank = 0;
    assert!(err(&c, 100).contains("method.lora.rank"));
    let mut c = method(MethodName::Triadapt);
    c.triadapt.ref_rank = 0;
    assert!(err(&c, 100).contains("method.triadapt.ref_rank"));
    let mut c = method(MethodName::Triadapt);
    c.triadapt.warmup_steps = 100;
    assert!(err(&c, 100).contains("method.triadapt.warmup_steps"));
    let mut c = method(MethodName::Lora);
    c.target_modules = vec!["query".into()];
    assert!(err(&c, 100).contains("target_modules"));
    let unknown: Result<MethodConfig, _> = serde_json::from_str(r#"{"name": "dora"}"#);
    assert!(unknown.unwrap_err().to_string().contains("dora"));
    assert!(format!("{}", "dora".parse::<MethodName>().unwrap_err()).contains("method.name"));
}
