//! Fine-tuning methods on the tiny fixture model, beyond the checks every method passes
//! (tests/conformance.rs: start equal to HF, save/load, merge = export = live, exact resume,
//! bf16): every method trains and TriAdaptLoRA ends at its budget, TriAdaptLoRA's growth layout
//! and importance by hand (docs/method.md, "TriAdaptLoRA"), the allocators against the reference
//! oracle, parameter counts as the papers count them, host reads per step, and bad settings
//! naming the key. The schedules' worked checks are unit tests in src/peft/schedule.rs.

use crate::common::*;
use tch::{Device, Kind, Tensor};
use triadapt::peft::method::{MethodConfig, MethodName};
use triadapt::peft::triadapt::{GrowthMode, TriAdapter};
use triadapt::peft::Adapter;

#[test]
fn triadapt_per_rank_growth_keeps_old_entries_and_adds_triangles() {
    let _rng = crate::common::torch_rng();
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
    let _rng = crate::common::torch_rng();
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
    let _rng = crate::common::torch_rng();
    let mut a = TriAdapter::new(4, 4, 2, 8.0, 0.02, Device::Cpu);
    a.l = Tensor::from_slice(&[1f32, 0., 2., 3.]).view([2, 2]);
    a.u = Tensor::from_slice(&[1f32, 4., 0., -1.]).view([2, 2]);
    // C = [[2, 4], [2, 2]]: ||C||_F = sqrt(4 + 16 + 4 + 4) = sqrt(28); I = sqrt(28) / 2.
    assert!((a.importance() - 28f64.sqrt() / 2.0).abs() < 1e-6);
}

#[test]
fn triadapt_delta_and_raw_scores_follow_the_importance() {
    let _rng = crate::common::torch_rng();
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
    let _rng = crate::common::torch_rng();
    let total = 40;
    for name in [MethodName::Full, MethodName::Lora, MethodName::Triadapt] {
        let cfg = method(name);
        let mut t = trainer(&cfg, total);
        let b = batch();
        let mut losses = Vec::new();
        for step in 0..total {
            losses.push(t.step(&b, step).unwrap().loss_value());
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
    let _rng = crate::common::torch_rng();
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

/// One replayed allocation against the oracle's: its step, k, and the ranks after the grants.
fn check_allocation(name: &str, e: &serde_json::Value, t: i64, k: usize, grants: Vec<(usize, i64)>, ranks: &mut [i64]) {
    assert_eq!(e["step"].as_i64(), Some(t), "{name}: allocation at step {t}, the oracle's is at {}", e["step"]);
    assert_eq!(e["k"].as_i64(), Some(k as i64), "{name}: k at step {t}");
    for (i, g) in grants {
        ranks[i] += g;
    }
    let want: Vec<i64> = e["ranks_after"].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect();
    assert_eq!(ranks, want.as_slice(), "{name}: ranks after step {t}");
}

/// TriAdaptLoRA's and IncreLoRA's allocators against scripts/allocator_oracle.py, written from
/// the reference code (`RankAllocator` of the authors' `single.py` and of IncreLoRA): the same
/// recorded score sequences give the same k and the same rank of every matrix at every
/// allocation step, under both thresholds and both budget modes.
#[test]
fn allocators_replay_the_reference_oracle_step_by_step() {
    let _rng = crate::common::torch_rng();
    use triadapt::peft::increlora::{update_emas, IncreloraSchedule};
    use triadapt::peft::schedule::{BudgetMode, ThresholdKind, TriadaptSchedule};
    let path = fixtures().join("allocators/cases.json");
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let int = |v: &serde_json::Value| v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"));
    let floats = |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let cases = meta["cases"].as_array().unwrap();
    let (mut checked, mut passed_budget) = (0, 0);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mode = match case["budget"].as_str().unwrap() {
            "reference" => BudgetMode::Reference,
            "strict" => BudgetMode::Strict,
            other => panic!("{name}: budget {other}"),
        };
        let n = int(&case["n"]) as usize;
        let mut ranks = vec![int(&case["init_rank"]); n];
        let (warmup, interval, total_steps) = (int(&case["warmup"]), int(&case["interval"]), int(&case["total_steps"]));
        let expected = case["allocations"].as_array().unwrap();
        let mut next = 0usize;
        let budget;
        if case["method"] == "triadapt" {
            let kind = match case["threshold"].as_str().unwrap() {
                "linear" => ThresholdKind::Linear,
                "exponential" => ThresholdKind::Exponential,
                other => panic!("{name}: threshold {other}"),
            };
            budget = int(&case["ref_rank"]) * n as i64;
            let dr = int(&case["growth_step"]);
            for t in 0..total_steps {
                let recorded = expected.get(next);
                let schedule = TriadaptSchedule { threshold: kind, warmup, interval, total_steps, top_k: 0, dr, mode };
                let plan = schedule.allocation(t, &ranks, budget, || {
                    floats(&recorded.unwrap_or_else(|| panic!("{name}: an allocation at step {t} the oracle does not have"))["scores"])
                });
                let Some((k, grants)) = plan else { continue };
                check_allocation(name, &expected[next], t, k, grants, &mut ranks);
                next += 1;
                checked += 1;
            }
        } else {
            budget = int(&case["target_rank"]) * n as i64;
            let (top_h, add_r) = (int(&case["top_h"]) as usize, int(&case["incre_rank_num"]));
            let (b1, b2) = (case["beta1"].as_f64().unwrap(), case["beta2"].as_f64().unwrap());
            let raw = case["raw_scores"].as_array().unwrap();
            let (mut ipt, mut unc) = (vec![0.0; n], vec![0.0; n]);
            for t in 0..total_steps {
                let total: i64 = ranks.iter().sum();
                if total >= budget {
                    break;
                }
                update_emas(&mut ipt, &mut unc, &floats(&raw[t as usize]), b1, b2);
                let scores: Vec<f64> = ipt.iter().zip(&unc).map(|(i, u)| i * u).collect();
                let schedule = IncreloraSchedule { warmup, interval, top_h, add_r, mode };
                let Some((k, grants)) = schedule.allocation(t, total, budget, || scores.clone()) else {
                    continue;
                };
                let e = expected.get(next).unwrap_or_else(|| panic!("{name}: an allocation at step {t} the oracle does not have"));
                assert_eq!(scores, floats(&e["scores"]), "{name}: ipt x unc at step {t}");
                check_allocation(name, e, t, k, grants, &mut ranks);
                next += 1;
                checked += 1;
            }
        }
        assert_eq!(next, expected.len(), "{name}: {} of the oracle's allocations never happened", expected.len() - next);
        let final_total: i64 = ranks.iter().sum();
        match mode {
            BudgetMode::Strict => assert_eq!(final_total, budget, "{name}: strict must land on the budget"),
            BudgetMode::Reference => passed_budget += usize::from(final_total > budget),
        }
        if name == "increlora_tiny_reference" {
            assert_eq!(final_total, 592, "n = 72, target 8, top_h 10, add 4: the reference ends at 592");
        }
        if name == "increlora_tiny_strict" {
            assert_eq!(final_total, 576);
        }
    }
    assert!(checked > 100 && passed_budget >= 2, "{checked} allocations checked, {passed_budget} reference cases past the budget");
}

/// #Params as the papers count it, by hand on the tiny model (hidden 32, intermediate 64, 2
/// layers, 3 labels): LoRA rank 2 has 2 (d_in + d_out) per matrix: 4 x 2 x 64 + 2 x 2 x 96 =
/// 896 per layer, 1792 in all; TriAdaptLoRA at rank 1 has d_in + d_out + r (r + 1) = 66 or 98,
/// 4 x 66 + 2 x 98 = 460 per layer, 920 in all. The head (pooler 32 x 32 + 32, classifier
/// 32 x 3 + 3 = 1155) is counted apart.
#[test]
fn adapter_and_head_parameters_are_counted_apart() {
    let _rng = crate::common::torch_rng();
    let mut lora = method(MethodName::Lora);
    lora.lora.rank = 2;
    let t = trainer(&lora, 10);
    assert_eq!((t.adapter_param_count(), t.head_param_count()), (1792, 1155));
    assert_eq!(t.trainable_count(), 1792 + 1155);
    let t = trainer(&method(MethodName::Triadapt), 10);
    assert_eq!((t.adapter_param_count(), t.head_param_count()), (920, 1155));
}

/// AdaLoRA's #Params is its paper's: the kept triplets, so a finished run reports the final
/// budget (target 2 x 12 matrices), while every r_init triplet still counts as trainable.
#[test]
fn adalora_reports_its_final_budget_as_its_paper() {
    let _rng = crate::common::torch_rng();
    let mut cfg = method(MethodName::Adalora);
    (cfg.adalora.init_rank, cfg.adalora.target_rank, cfg.adalora.tinit, cfg.adalora.tfinal, cfg.adalora.delta_t) = (3, 2, 2, 4, 2);
    let mut t = trainer(&cfg, 12);
    // Per layer (hidden 32, intermediate 64): four 32 x 32 matrices (32 + 32 + 1 scalars per
    // triplet) and two 32 <-> 64 ones (32 + 64 + 1); two layers.
    let per_rank_of_every_matrix = 2 * (4 * 65 + 2 * 97);
    assert_eq!(t.adapter_param_count(), 3 * per_rank_of_every_matrix);
    let b = batch();
    for step in 0..12 {
        t.step(&b, step).unwrap();
    }
    let ranks = t.controller.ranks();
    assert_eq!(ranks.iter().map(|(_, r)| r).sum::<i64>(), 2 * 12, "the final budget");
    let width = |name: &str| {
        if name.ends_with("intermediate.dense") || (name.ends_with("output.dense") && !name.contains("attention")) {
            97
        } else {
            65
        }
    };
    let kept: i64 = ranks.iter().map(|(n, r)| r * width(n)).sum();
    assert_eq!(t.adapter_param_count(), kept);
    assert_eq!(t.trainable_count() - t.head_param_count(), 3 * per_rank_of_every_matrix, "every triplet still trains");
}

/// TriAdaptLoRA reads its importance before the step's update, where the reference calls its
/// allocator (after clipping, before `optimizer.step()`): the grants follow the scores of
/// `before_step` even when the update then reorders them, and the grown entries are born at t+1.
#[test]
fn triadapt_allocates_from_the_importance_before_the_update() {
    let _rng = crate::common::torch_rng();
    use triadapt::optim::{AdamW, AdamWConfig};
    use triadapt::peft::schedule::ThresholdKind;
    use triadapt::peft::triadapt::{TriAdaptConfig, TriAdaptController};
    use triadapt::peft::RankController;
    let make = || {
        let mut a = TriAdapter::new(4, 4, 1, 8.0, 0.02, Device::Cpu);
        a.l = Tensor::from_slice(&[1f32]).view([1, 1]).set_requires_grad(true);
        a.u = Tensor::from_slice(&[0f32]).view([1, 1]).set_requires_grad(true);
        triadapt::peft::shared(a)
    };
    let adapters = vec![("m0".to_string(), make()), ("m1".to_string(), make())];
    let cfg = TriAdaptConfig {
        ref_rank: 2,
        warmup_steps: 1,
        interval: 1,
        threshold: ThresholdKind::Fixed,
        top_k: 1,
        growth_step: Some(1),
        ..Default::default()
    };
    let mut c = TriAdaptController::new(cfg, adapters.clone(), 100, 0.0);
    let mut opt = AdamW::new(AdamWConfig::default());
    for (name, p) in c.named_params() {
        opt.add(&name, &p, 0, 0.0).unwrap();
    }
    // Before step 2's update m0 has moved most since initialisation ...
    adapters[0].1.lock().unwrap().l = Tensor::from_slice(&[3f32]).view([1, 1]).set_requires_grad(true);
    c.before_step(2).unwrap();
    // ... then "the update" moves m1 far more: too late for this step's allocation.
    adapters[1].1.lock().unwrap().l = Tensor::from_slice(&[30f32]).view([1, 1]).set_requires_grad(true);
    c.after_step(2, &mut opt).unwrap();
    let ranks: Vec<i64> = c.ranks().into_iter().map(|(_, r)| r).collect();
    assert_eq!(ranks, vec![2, 1]);
    let [_, _, birth] = opt.state("m0.lora_A").unwrap();
    assert_eq!(Vec::<f32>::try_from(birth.select(1, 0)).unwrap(), vec![0.0, 3.0]);
    // Nothing was pending for a step without allocation.
    c.before_step(3).unwrap();
    c.after_step(3, &mut opt).unwrap();
    assert_eq!(c.ranks().into_iter().map(|(_, r)| r).sum::<i64>(), 4, "step 3 grows m1 (budget 4)");
}

/// `method(name)` with IncreLoRA and AdaLoRA allocating within a 12-step run: IncreLoRA after
/// step 4 every 4 steps, AdaLoRA's budget phase from step 4 with a mask every 3 steps and the
/// final phase from step 10 (TriAdaptLoRA: `method`'s warm-up 4, interval 4).
fn allocating_early(name: MethodName) -> MethodConfig {
    let mut cfg = method(name);
    cfg.increlora.init_warmup = 4;
    cfg.increlora.incre_interval = 4;
    cfg.adalora.tinit = 4;
    cfg.adalora.tfinal = 2;
    cfg.adalora.delta_t = 3;
    cfg
}

/// No training step waits for the device except where it must: every device-to-host read of
/// the training path goes through `triadapt::device::read_*`, which counts them. A step makes
/// none unless its rank controller allocates; an allocation step makes exactly one (TriAdaptLoRA
/// and IncreLoRA all the scores; AdaLoRA the threshold with all the scores), never one per
/// matrix.
#[test]
fn training_steps_read_nothing_back_except_at_allocations() {
    let _rng = crate::common::torch_rng();
    use triadapt::device::host_reads;
    let b = batch();
    let total = 12;
    for name in MethodName::ALL {
        let cfg = allocating_early(name);
        let mut t = trainer(&cfg, total);
        for step in 0..total {
            let before = host_reads();
            t.step(&b, step).unwrap();
            let reads = host_reads() - before;
            let allocating = match name {
                MethodName::Triadapt => step > 4 && step % 4 == 0,
                MethodName::Increlora => step > 4 && step % 4 == 0,
                // Mask steps of the budget phase (t_i < t < T - t_f, every dT) and the forced
                // mask at T - t_f.
                MethodName::Adalora => (step > 4 && step < 10 && step % 3 == 0) || step == 10,
                _ => false,
            };
            let limit = if allocating { 1 } else { 0 };
            assert!(reads <= limit, "{name:?} step {step}: {reads} device-to-host reads (at most {limit})");
            if allocating {
                assert!(reads >= 1, "{name:?} step {step}: an allocation step without reading its scores?");
            }
        }
    }
}

/// The flat buffers (one clipping and one AdamW update per buffer, the tensor ops a GPU runs,
/// here under `tensor_ops_only`) give the same bits as the per-tensor path, the oracle, over a
/// run in which every adaptive method grows or masks, for both AdamW variants. Compared: every
/// step's loss and gradient norm, and at the end every trainable tensor and its optimizer state.
/// (On float32 CPU tensors both run the one-pass kernel per tensor.)
#[test]
fn flat_buffers_train_bit_for_bit_like_one_tensor_at_a_time() {
    use triadapt::optim::AdamWVariant;
    let _rng = crate::common::torch_rng();
    let b = batch();
    let total = 12;
    for name in MethodName::ALL {
        for variant in [AdamWVariant::Torch, AdamWVariant::LegacyHf] {
            let cfg = allocating_early(name);
            let run = |flat: bool, tensor_ops_only: bool| {
                tch::manual_seed(7);
                let dir = triadapt::model::ModelDir::open(&crate::common::model_dir("v3")).unwrap();
                let model = triadapt::peft::attach(&dir, triadapt::model::HeadKind::Cls, &cfg, tch::Device::Cpu).unwrap();
                let mut tc = crate::common::trainer_config(total);
                tc.optim.adamw = variant;
                // A low clipping threshold, so that clipping scales the gradients.
                tc.optim.max_grad_norm = 0.5;
                let mut t = triadapt::train::Trainer::new(model, tc).unwrap();
                t.opt.set_flat(flat);
                t.opt.set_tensor_ops_only(tensor_ops_only);
                let mut trace = Vec::new();
                for step in 0..total {
                    let s = t.step(&b, step).unwrap();
                    trace.push((s.loss.double_value(&[]), s.grad_norm.map(|g| g.double_value(&[]))));
                }
                let names: Vec<String> = t.opt.names().map(str::to_string).collect();
                let state: Vec<(String, Vec<Tensor>)> = names
                    .into_iter()
                    .map(|n| {
                        let [m, v, birth] = t.opt.state(&n).unwrap();
                        let tensors = vec![t.opt.value(&n).unwrap().copy(), m.copy(), v.copy(), birth.contiguous()];
                        (n, tensors)
                    })
                    .collect();
                let expect = if flat && tensor_ops_only { total as u64 } else { 0 };
                assert_eq!(t.opt.flat_updates(), expect, "{name:?}: updates through the flat buffers");
                (trace, state, t.controller.ranks())
            };
            {
                let ops = true;
                let (oracle_trace, oracle_state, oracle_ranks) = run(false, ops);
                let (trace, state, ranks) = run(true, ops);
                let flat = true;
                let what = format!("{name:?} {variant:?} flat {flat} tensor ops {ops}");
                assert_eq!(trace, oracle_trace, "{what}: losses or gradient norms differ");
                assert_eq!(ranks, oracle_ranks, "{what}: ranks differ");
                assert_eq!(state.len(), oracle_state.len(), "{what}");
                for ((n, a), (_, b)) in state.iter().zip(&oracle_state) {
                    for (x, y) in a.iter().zip(b) {
                        assert!(x.equal(y), "{what}: {n} differs from the per-tensor path");
                    }
                }
            }
        }
    }
}

/// Under bf16 autocast, frozen weights cast once (`model::linear::Bf16Copy`) train bit for bit
/// like casting them at each use, as autocast alone does: every step's loss, and the trained
/// tensors at the end.
#[test]
fn bf16_frozen_weights_cast_once_train_bit_for_bit_like_casting_at_each_use() {
    let _rng = crate::common::torch_rng();
    triadapt::precision::enable_bf16(Device::Cpu).unwrap();
    let b = batch();
    let total = 6;
    for name in [MethodName::Lora, MethodName::Adalora, MethodName::Triadapt] {
        let cfg = method(name);
        let run = || {
            let mut t = trainer_in(&cfg, total, true);
            let losses: Vec<f64> = (0..total).map(|step| t.step(&b, step).unwrap().loss_value()).collect();
            let values: Vec<Tensor> = t.trainable().iter().map(|v| v.copy()).collect();
            (losses, values)
        };
        let (losses, values) = run();
        let (each_losses, each_values) = triadapt::model::linear::casting_at_each_use(run);
        assert_eq!(losses, each_losses, "{name:?}: losses differ");
        for (a, b) in values.iter().zip(&each_values) {
            assert!(a.equal(b), "{name:?}: a trained tensor differs");
        }
    }
}
