//! AdaLoRA against huggingface/peft: replays the parameter and gradient sequence recorded by
//! scripts/adalora_oracle.py (tests/fixtures/adalora) through `AdaLoraController::after_step`
//! and compares, step by step, the budget, the triplet scores, the threshold, the masked E, the
//! rank pattern and the orthogonal regularisation; then the adapters' update for a fixed input.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use tch::{Kind, Tensor};
use triadapt::optim::{AdamW, AdamWConfig};
use triadapt::peft::adalora::{AdaLoraAdapter, AdaLoraConfig, AdaLoraController};
use triadapt::peft::{shared, Adapter, RankController, Shared};

const ROLES: [&str; 3] = ["lora_A", "lora_B", "lora_E"];

fn fixture() -> (Value, HashMap<String, Tensor>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adalora");
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("sequence.json")).unwrap()).unwrap();
    let tensors = Tensor::read_safetensors(dir.join("sequence.safetensors")).unwrap().into_iter().collect();
    (meta, tensors)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

fn float(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// max |a - b| / max(max |b|, tiny)
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let scale = b.abs().max().double_value(&[]).max(1e-30);
    (a - b).abs().max().double_value(&[]) / scale
}

fn role_tensor(a: &AdaLoraAdapter, role: &str) -> Tensor {
    match role {
        "lora_A" => a.a.shallow_clone(),
        "lora_B" => a.b.shallow_clone(),
        _ => a.e.shallow_clone(),
    }
}

#[test]
fn adalora_matches_peft_step_by_step() {
    let _rng = crate::common::torch_rng();
    let (meta, o) = fixture();
    let c = &meta["config"];
    let config = AdaLoraConfig {
        init_rank: int(&c["init_r"]),
        target_rank: int(&c["target_r"]),
        tinit: int(&c["tinit"]),
        tfinal: int(&c["tfinal"]),
        delta_t: int(&c["deltaT"]),
        beta1: float(&c["beta1"]),
        beta2: float(&c["beta2"]),
        dropout: None,
    };
    let (alpha, total_steps, orth) = (float(&c["lora_alpha"]), int(&c["total_step"]), float(&c["orth_reg_weight"]));
    let names: Vec<String> = meta["modules"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap().to_string()).collect();

    let adapters: Vec<(String, Shared<AdaLoraAdapter>)> = names
        .iter()
        .map(|n| {
            let v = |role: &str| o[&format!("{n}.{role}.value")].get(0);
            (n.clone(), shared(AdaLoraAdapter::from_tensors(v("lora_A"), v("lora_B"), v("lora_E"), alpha)))
        })
        .collect();
    let mut ctl = AdaLoraController::new(config, adapters.clone(), total_steps, orth);
    assert_eq!(ctl.init_budget(), int(&meta["init_bgt"]));
    assert_eq!(ctl.target_budget(), int(&meta["target_bgt"]));
    assert_eq!(ctl.budget(), Some(int(&meta["target_bgt"])));
    let mut opt = AdamW::new(AdamWConfig::default());
    for (name, t) in ctl.named_params() {
        opt.add(&name, &t, 0, 0.0).unwrap();
    }

    let (mut worst_score, mut worst_reg, mut mask_steps) = (0f64, 0f64, 0);
    for s in meta["steps"].as_array().unwrap() {
        let step = int(&s["step"]);
        opt.zero_grad();
        for (n, a) in &adapters {
            let a = a.lock().unwrap();
            for role in ROLES {
                let p = role_tensor(&a, role);
                let value = o[&format!("{n}.{role}.value")].get(step);
                if role == "lora_E" && step % 2 == 1 {
                    // The oracle kept E from the previous step: ours must be the same already.
                    assert!(p.equal(&value), "step {step} {n}: E before the step differs from PEFT's");
                }
                tch::no_grad(|| p.shallow_clone().copy_(&value));
                // d/dp sum(p * g) = g exactly.
                (&p * o[&format!("{n}.{role}.grad")].get(step)).sum(Kind::Float).backward();
            }
        }

        let reg = ctl.regularization().unwrap().double_value(&[]);
        let want_reg = float(&s["reg"]);
        let r = (reg - want_reg).abs() / want_reg.abs();
        assert!(r <= 1e-6, "step {step}: regularisation {reg} vs PEFT {want_reg} (rel {r:e})");
        worst_reg = worst_reg.max(r);

        ctl.after_step(step, &mut opt).unwrap();
        let last = ctl.last().unwrap();
        assert_eq!(last.step, step);
        assert_eq!(last.budget, int(&s["budget"]), "step {step}: budget");
        let phase = s["phase"].as_str().unwrap();
        assert_eq!(last.masked, phase == "budget" || phase == "force", "step {step}: phase {phase}");
        if last.masked {
            mask_steps += 1;
            assert_eq!(last.k, int(&s["k"]), "step {step}: k");
            let scores = last.scores.as_ref().unwrap();
            let d = rel_diff(scores, &o["scores"].get(step));
            assert!(d <= 1e-6, "step {step}: triplet scores differ (rel {d:e})");
            worst_score = worst_score.max(d);
            let (th, want) = (last.threshold.unwrap(), float(&s["threshold"]));
            assert!((th - want).abs() <= 1e-6 * want.abs(), "step {step}: threshold {th} vs {want}");
        } else {
            assert!(last.scores.is_none() && last.threshold.is_none(), "step {step}");
        }

        let patterns = ctl.patterns();
        for (i, (n, a)) in adapters.iter().enumerate() {
            let want: Vec<bool> = match &s["rank_pattern"] {
                Value::Null => vec![true; ctl.config.init_rank as usize],
                p => p[n].as_array().unwrap().iter().map(|b| b.as_bool().unwrap()).collect(),
            };
            assert_eq!(patterns[i], (n.clone(), want.clone()), "step {step}: rank pattern");
            assert_eq!(ctl.ranks()[i].1, want.iter().filter(|&&k| k).count() as i64);
            let e = a.lock().unwrap().e.shallow_clone();
            let want_e = o[&format!("{n}.lora_E.masked")].get(step);
            assert!(e.equal(&want_e), "step {step} {n}: masked E {e:?} vs PEFT {want_e:?}");
        }
    }
    assert_eq!(mask_steps, 5, "the fixture masks at steps 4, 6, 8, 10 (budget) and 12 (forced)");
    eprintln!("triplet scores: max rel diff {worst_score:e}; regularisation: max rel diff {worst_reg:e}");

    // The update of each layer for a fixed input, with the final (masked) E.
    for (n, a) in &adapters {
        let a = a.lock().unwrap();
        let x = &o[&format!("{n}.forward.x")];
        let d = rel_diff(&tch::no_grad(|| a.delta(x)), &o[&format!("{n}.forward.delta")]);
        assert!(d <= 1e-6, "{n}: forward delta differs from SVDLinear's (rel {d:e})");
        let w = rel_diff(&tch::no_grad(|| a.delta_weight()), &o[&format!("{n}.forward.delta_weight")]);
        assert!(w <= 1e-6, "{n}: delta weight differs from get_delta_weight (rel {w:e})");
        eprintln!("{n}: forward rel diff {d:e}, delta weight rel diff {w:e}");
    }
}
