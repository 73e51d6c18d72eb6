//! Exports against HF transformers 4.57.6 and huggingface/peft 0.17.1: our LoRA equals PEFT's on
//! the committed fixture (tests/fixtures/peft, scripts/peft_oracle.py lora-fixture); merged
//! checkpoints and PEFT adapter directories of LoRA, TriAdaptLoRA (grown to mixed ranks) and an
//! adapter that uses the default SVD `lora_factors` (with some rank-0 modules) give our logits
//! when HF / PEFT load them (scripts/peft_oracle.py logits, run from the test).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use serde_json::{json, Value};
use tch::{nn, Device, Kind, Tensor};
use triadapt::model::linear::LAYER_MATRICES;
use triadapt::model::{HeadKind, ModelDir, PlainLinearFactory};
use triadapt::peft::export::{export_peft, head_tensors, merged_weights, write_hf_checkpoint};
use triadapt::peft::lora::LoraConfig;
use triadapt::peft::method::{MethodConfig, MethodName, MethodSetup};
use triadapt::peft::triadapt::GrowthMode;
use triadapt::peft::{dyn_adapters, Adapter, AdapterFactory, DynAdapter, TargetSpec};

/// Asserts `ours` is within the float32 reordering bound of `reference` for a forward pass of the
/// 2-layer fixture shape over the oracle batch of `head` (`common::tolerance`).
fn assert_fixture_close(what: &str, head: HeadKind, ours: &Tensor, reference: &Tensor) {
    let (model, batch) = if head == HeadKind::Qa { ("v3_qa", "v3_qa") } else { ("v3", "v3_batch") };
    crate::common::tolerance::assert_forward_close(what, model, oracle(batch)["input_ids"].size()[1], ours, reference);
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn inputs_file(head: HeadKind) -> PathBuf {
    let name = if head == HeadKind::Qa { "v3_qa" } else { "v3_batch" };
    fixtures().join("oracle").join(format!("{name}.safetensors"))
}

fn lora_config() -> MethodConfig {
    MethodConfig { name: MethodName::Lora, lora_alpha: 8.0, lora: LoraConfig { rank: 2, dropout: None }, ..Default::default() }
}

/// Random values of `t`'s shape (N(0, std^2)), written into it in place.
fn randomise(t: &Tensor, std: f64) {
    tch::no_grad(|| t.shallow_clone().copy_(&(t.randn_like() * std)));
}

/// Adds noise to the head's parameters, so that an export which drops the trained head fails.
fn perturb_head(vs: &nn::VarStore, head: HeadKind) {
    let prefixes = triadapt::model::heads::head_prefixes(head);
    for (name, var) in vs.variables() {
        if prefixes.iter().any(|p| name.starts_with(p)) {
            tch::no_grad(|| var.shallow_clone().copy_(&(&var + var.randn_like() * 0.05)));
        }
    }
}

#[test]
fn lora_matches_peft_on_the_fixture() {
    let _rng = crate::common::torch_rng();
    let cfg = lora_config();
    let setup = MethodSetup::new(&cfg);
    let (_vs, model, _) = ModelDir::open(&model_dir("v3")).unwrap().load(HeadKind::Cls, setup.factory(), Device::Cpu).unwrap();
    let MethodSetup::Lora(factory) = &setup else { unreachable!() };
    let adapters = factory.adapters();
    let path = fixtures().join("peft/lora_v3.safetensors");
    let fx: HashMap<String, Tensor> =
        Tensor::read_safetensors(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).into_iter().collect();
    let mut fixture_modules: Vec<&str> = fx.keys().filter_map(|k| k.strip_suffix(".lora_A")).collect();
    fixture_modules.sort();
    let mut ours: Vec<&str> = adapters.iter().map(|(n, _)| n.as_str()).collect();
    ours.sort();
    assert_eq!(ours, fixture_modules, "LoRA targets differ from the fixture's");
    for (name, a) in &adapters {
        let a = a.lock().unwrap();
        assert_eq!(a.scaling, 4.0);
        tch::no_grad(|| {
            a.a.shallow_clone().copy_(&fx[&format!("{name}.lora_A")]);
            a.b.shallow_clone().copy_(&fx[&format!("{name}.lora_B")]);
        });
    }
    let base = oracle("v3_batch");
    let out = run_eval(&model, &base);
    assert!(max_abs_diff(&fx["logits"], &base["logits"]) > 0.1, "the fixture's update must change the logits");
    assert_fixture_close("LoRA logits against PEFT", HeadKind::Cls, &out.logits, &fx["logits"]);
}

/// A test-only adapter with a fixed dense update of a given rank (possibly 0) that relies on the
/// trait's default SVD `lora_factors`.
#[derive(Debug)]
struct DenseUpdate {
    dw: Tensor,
    rank: i64,
}

impl Adapter for DenseUpdate {
    fn delta(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.dw.tr())
    }
    fn delta_weight(&self) -> Tensor {
        self.dw.shallow_clone()
    }
    fn rank(&self) -> i64 {
        self.rank
    }
    fn params(&self) -> Vec<(&'static str, Tensor)> {
        vec![("dense", self.dw.shallow_clone())]
    }
    fn trainable_count(&self) -> i64 {
        self.dw.numel() as i64
    }
    fn set_tensor(&mut self, role: &str, _value: Tensor) -> anyhow::Result<()> {
        anyhow::bail!("the test adapter has no tensor {role}")
    }
}

/// Rank (m + 2 * layer) mod 4 for matrix m of LAYER_MATRICES: every rank 0..3, zeros included.
fn dense_rank(name: &str) -> i64 {
    let (layer, within) = triadapt::peft::targets::split_layer_path(name).unwrap();
    let m = LAYER_MATRICES.iter().position(|x| *x == within).unwrap() as i64;
    (m + 2 * layer) % 4
}

/// One exported model: what we compute, and where its exports went.
struct Case {
    label: &'static str,
    head: HeadKind,
    base: PathBuf,
    logits: Tensor,
    merged: PathBuf,
    peft: PathBuf,
    ranks: Vec<(String, i64)>,
}

/// Builds the model on `base` with `factory`, lets `adapters` set and hand over the adapters,
/// perturbs the head, computes our logits and writes both exports under `tmp/label`.
fn build(
    tmp: &Path,
    label: &'static str,
    base: &str,
    head: HeadKind,
    factory: &dyn triadapt::model::LinearFactory,
    adapters: impl FnOnce() -> Vec<(String, DynAdapter)>,
) -> Case {
    let dir = ModelDir::open(&model_dir(base)).unwrap();
    let (vs, model, _) = dir.load(head, factory, Device::Cpu).unwrap();
    let adapters = adapters();
    perturb_head(&vs, head);
    let logits = run_eval(&model, &oracle(if head == HeadKind::Qa { "v3_qa" } else { "v3_batch" })).logits;
    let (merged, peft) = (tmp.join(label).join("merged"), tmp.join(label).join("peft"));
    let weights = merged_weights(&vs, &adapters).unwrap();
    let names: Vec<String> = weights.iter().map(|(n, _)| n.clone()).collect();
    let mut var_names: Vec<String> = vs.variables().into_keys().collect();
    var_names.sort();
    assert_eq!(names, var_names, "{label}: merged_weights must hold every model tensor");
    write_hf_checkpoint(&merged, &dir, head, &weights, None).unwrap();
    let exported = export_peft(&peft, &adapters, &head_tensors(&vs, head), dir.dir.to_str().unwrap(), head).unwrap();
    let ranks: Vec<(String, i64)> = adapters.iter().map(|(n, a)| (n.clone(), a.lock().unwrap().rank())).collect();
    assert_eq!(exported, ranks.iter().filter(|(_, r)| *r > 0).cloned().collect::<Vec<_>>(), "{label}: exported ranks");
    // Our own loader reads the merged checkpoint back to the same logits.
    let (_vs2, plain, _) = ModelDir::open(&merged).unwrap().load(head, &PlainLinearFactory, Device::Cpu).unwrap();
    let again = run_eval(&plain, &oracle(if head == HeadKind::Qa { "v3_qa" } else { "v3_batch" })).logits;
    assert_fixture_close(&format!("{label}: merged checkpoint reloaded by us"), head, &again, &logits);
    Case { label, head, base: dir.dir.clone(), logits, merged, peft, ranks }
}

fn lora_case(tmp: &Path, label: &'static str, base: &str, head: HeadKind) -> Case {
    let cfg = lora_config();
    let setup = MethodSetup::new(&cfg);
    let MethodSetup::Lora(f) = &setup else { unreachable!() };
    build(tmp, label, base, head, f, || {
        let adapters = f.adapters();
        for (_, a) in &adapters {
            let a = a.lock().unwrap();
            randomise(&a.a, 0.2);
            randomise(&a.b, 0.1);
        }
        dyn_adapters(&adapters)
    })
}

fn triadapt_case(tmp: &Path) -> Case {
    let mut cfg = MethodConfig { name: MethodName::Triadapt, lora_alpha: 8.0, ..Default::default() };
    cfg.triadapt.init_rank = 1;
    cfg.triadapt.init_std = 0.3;
    let setup = MethodSetup::new(&cfg);
    let MethodSetup::Triadapt(f) = &setup else { unreachable!() };
    build(tmp, "triadapt", "v3", HeadKind::Cls, f, || {
        let adapters = f.adapters();
        for (i, (_, a)) in adapters.iter().enumerate() {
            let mut a = a.lock().unwrap();
            let mode = if i % 2 == 0 { GrowthMode::PerRank } else { GrowthMode::Block };
            match i % 4 {
                1 => a.grow(1, mode, 0.3),
                2 => a.grow(2, mode, 0.3),
                3 => {
                    a.grow(1, mode, 0.3);
                    a.grow(2, mode, 0.3);
                }
                _ => {}
            }
            randomise(&a.b, 0.1);
        }
        dyn_adapters(&adapters)
    })
}

fn dense_case(tmp: &Path) -> Case {
    let factory = AdapterFactory::new(TargetSpec::default(), 0.0, |name, d_in, d_out, dev| {
        let r = dense_rank(name);
        let f = (Kind::Float, dev);
        let dw = (Tensor::randn([d_out, r], f) * 0.3).matmul(&(Tensor::randn([r, d_in], f) * 0.3));
        DenseUpdate { dw, rank: r }
    });
    build(tmp, "svd", "v3", HeadKind::Cls, &factory, || dyn_adapters(&factory.adapters()))
}

fn python() -> PathBuf {
    repo().join(".venv/bin/python")
}

/// Runs every job in one oracle process; returns the logits of each job.
fn oracle_logits(tmp: &Path, jobs: &[(&Path, Option<&Path>, HeadKind)]) -> Vec<Tensor> {
    let specs: Vec<Value> = jobs
        .iter()
        .enumerate()
        .map(|(i, (model, peft, head))| {
            json!({
                "model": model,
                "peft": peft,
                "head": if *head == HeadKind::Qa { "qa" } else { "cls" },
                "inputs": inputs_file(*head),
                "out": tmp.join(format!("oracle_{i}.safetensors")),
            })
        })
        .collect();
    let jobs_file = tmp.join("jobs.json");
    std::fs::write(&jobs_file, serde_json::to_string_pretty(&specs).unwrap()).unwrap();
    let py = python();
    let out = Command::new(&py)
        .arg(repo().join("scripts/peft_oracle.py"))
        .args(["logits", "--jobs"])
        .arg(&jobs_file)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} ({e}); create the venv with `make venv`", py.display()));
    assert!(out.status.success(), "peft_oracle.py failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    (0..jobs.len())
        .map(|i| {
            let path = tmp.join(format!("oracle_{i}.safetensors"));
            let t: HashMap<String, Tensor> = Tensor::read_safetensors(&path).unwrap().into_iter().collect();
            t["logits"].shallow_clone()
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

#[test]
fn merged_and_peft_exports_match_hf_and_peft() {
    let _rng = crate::common::torch_rng();
    tch::manual_seed(11);
    let tmp = tempfile::tempdir().unwrap();
    let cases = vec![
        lora_case(tmp.path(), "lora", "v3", HeadKind::Cls),
        triadapt_case(tmp.path()),
        dense_case(tmp.path()),
        lora_case(tmp.path(), "lora_qa", "v3_qa", HeadKind::Qa),
    ];

    // The TriAdaptLoRA and SVD cases really have mixed ranks, rank-0 modules in the SVD case.
    let distinct = |c: &Case| c.ranks.iter().map(|(_, r)| *r).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(distinct(&cases[1]).into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(distinct(&cases[2]).into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);

    for c in &cases {
        // adapter_config.json: one rank per module, alpha == r (scaling 1), rank-0 modules left out.
        let config = read_json(&c.peft.join("adapter_config.json"));
        let want: BTreeMap<String, i64> = c.ranks.iter().filter(|(_, r)| *r > 0).cloned().collect();
        let got: BTreeMap<String, i64> = serde_json::from_value(config["rank_pattern"].clone()).unwrap();
        assert_eq!(got, want, "{}: rank_pattern", c.label);
        assert_eq!(config["alpha_pattern"], config["rank_pattern"], "{}: alpha_pattern", c.label);
        let targets: Vec<String> = serde_json::from_value(config["target_modules"].clone()).unwrap();
        let in_order: Vec<String> = c.ranks.iter().filter(|(_, r)| *r > 0).map(|(n, _)| n.clone()).collect();
        assert_eq!(targets, in_order, "{}: target_modules", c.label);
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["task_type"], if c.head == HeadKind::Qa { "QUESTION_ANS" } else { "SEQ_CLS" });
        let merged_config = read_json(&c.merged.join("config.json"));
        let class = if c.head == HeadKind::Qa { "DebertaV2ForQuestionAnswering" } else { "DebertaV2ForSequenceClassification" };
        assert_eq!(merged_config["architectures"], json!([class]), "{}: merged config.json", c.label);
        assert!(c.merged.join("spm.model").is_file(), "{}: spm.model not copied", c.label);
    }

    let mut jobs: Vec<(&Path, Option<&Path>, HeadKind)> = Vec::new();
    for c in &cases {
        jobs.push((&c.merged, None, c.head));
        jobs.push((&c.base, Some(&c.peft), c.head));
    }
    let hf = oracle_logits(tmp.path(), &jobs);
    for (i, c) in cases.iter().enumerate() {
        let base = oracle(if c.head == HeadKind::Qa { "v3_qa" } else { "v3_batch" });
        if c.head == HeadKind::Cls {
            assert!(max_abs_diff(&c.logits, &base["logits"]) > 0.05, "{}: the update must change the logits", c.label);
        }
        let (merged, peft) = (&hf[2 * i], &hf[2 * i + 1]);
        assert_fixture_close(&format!("{}: HF on the merged checkpoint", c.label), c.head, merged, &c.logits);
        assert_fixture_close(&format!("{}: PEFT on base + adapter", c.label), c.head, peft, &c.logits);
    }
}

#[test]
fn export_peft_refuses_an_all_zero_update_and_a_missing_head() {
    let _rng = crate::common::torch_rng();
    let tmp = tempfile::tempdir().unwrap();
    let zero: DynAdapter =
        std::sync::Arc::new(std::sync::Mutex::new(DenseUpdate { dw: Tensor::zeros([4, 3], (Kind::Float, Device::Cpu)), rank: 0 }));
    let adapters = vec![("deberta.encoder.layer.0.attention.self.query_proj".to_string(), zero)];
    let w = |r: i64, c: i64| Tensor::zeros([r, c], (Kind::Float, Device::Cpu));
    let head = vec![("classifier.weight".to_string(), w(3, 4)), ("pooler.dense.weight".to_string(), w(4, 4))];
    let err = export_peft(tmp.path(), &adapters, &head, "base", HeadKind::Cls).unwrap_err();
    assert!(err.to_string().contains("rank 0"), "{err}");
    let err = export_peft(tmp.path(), &adapters, &head[..1], "base", HeadKind::Cls).unwrap_err();
    assert!(err.to_string().contains("pooler."), "{err}");
}

/// A merged checkpoint carries the head's label fields whatever the base config had: trained on
/// a backbone-only config without labels (as `microsoft/deberta-v3-base` on the hub) or on one
/// with another label count, HF's `AutoModelForSequenceClassification` loads it (no size
/// mismatch) and gives our logits; `id2label` names the task's classes and `problem_type` is
/// `regression` for STS-B, `single_label_classification` otherwise.
#[test]
fn merged_checkpoints_carry_the_task_labels_for_any_base_config() {
    let _rng = crate::common::torch_rng();
    tch::manual_seed(5);
    let tmp = tempfile::tempdir().unwrap();
    // The backbone-only fixture with its label fields removed.
    let bare = tmp.path().join("bare_base");
    std::fs::create_dir_all(&bare).unwrap();
    for f in ["model.safetensors", "spm.model"] {
        std::fs::copy(model_dir("v3_backbone").join(f), bare.join(f)).unwrap();
    }
    let mut config = read_json(&model_dir("v3_backbone").join("config.json"));
    for k in ["id2label", "label2id", "num_labels"] {
        config.as_object_mut().unwrap().remove(k);
    }
    std::fs::write(bare.join("config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let three = model_dir("v3_backbone"); // backbone weights, three labels in its config
                                          // (label, base model, task, labels, problem type, label names)
    type Case<'a> = (&'a str, &'a Path, &'a str, i64, Option<&'a str>, &'a [&'a str]);
    let cases: [Case; 5] = [
        ("stsb_bare", bare.as_path(), "stsb", 1, Some("regression"), &["LABEL_0"]),
        ("mnli_bare", bare.as_path(), "mnli", 3, Some("single_label_classification"), &["entailment", "neutral", "contradiction"]),
        ("rte_bare", bare.as_path(), "rte", 2, Some("single_label_classification"), &["entailment", "not_entailment"]),
        ("stsb_three", three.as_path(), "stsb", 1, Some("regression"), &["LABEL_0"]),
        ("sst2_three", three.as_path(), "sst2", 2, Some("single_label_classification"), &["negative", "positive"]),
    ];
    let mut ours = Vec::new();
    let mut merged_dirs = Vec::new();
    for (label, base, task, labels, problem, names) in cases {
        let mut dir = ModelDir::open(base).unwrap();
        dir.config.num_labels = Some(labels);
        dir.config.id2label = None;
        let setup = MethodSetup::new(&lora_config());
        let MethodSetup::Lora(f) = &setup else { unreachable!() };
        let (vs, model, _) = dir.load(HeadKind::Cls, f, Device::Cpu).unwrap();
        for (_, a) in f.adapters() {
            let a = a.lock().unwrap();
            randomise(&a.a, 0.2);
            randomise(&a.b, 0.1);
        }
        perturb_head(&vs, HeadKind::Cls);
        let logits = run_eval(&model, &oracle("v3_batch")).logits;
        assert_eq!(logits.size()[1], labels, "{label}");
        let merged = tmp.path().join(label);
        write_hf_checkpoint(&merged, &dir, HeadKind::Cls, &merged_weights(&vs, &dyn_adapters(&f.adapters())).unwrap(), Some(task)).unwrap();
        let c = read_json(&merged.join("config.json"));
        let id2label: BTreeMap<String, String> = serde_json::from_value(c["id2label"].clone()).unwrap();
        let want: BTreeMap<String, String> = names.iter().enumerate().map(|(i, n)| (i.to_string(), n.to_string())).collect();
        assert_eq!(id2label, want, "{label}: id2label");
        assert_eq!(c["label2id"][names[0]], 0, "{label}: label2id");
        assert_eq!(c["problem_type"].as_str(), problem, "{label}: problem_type");
        assert!(c.get("num_labels").is_none(), "{label}: num_labels must not contradict id2label");
        ours.push(logits);
        merged_dirs.push(merged);
    }
    let jobs: Vec<(&Path, Option<&Path>, HeadKind)> = merged_dirs.iter().map(|m| (m.as_path(), None, HeadKind::Cls)).collect();
    let hf = oracle_logits(tmp.path(), &jobs);
    for ((case, ours), hf) in cases.iter().zip(&ours).zip(&hf) {
        assert_fixture_close(
            &format!("{}: HF AutoModelForSequenceClassification on the merged checkpoint", case.0),
            HeadKind::Cls,
            hf,
            ours,
        );
    }
}
