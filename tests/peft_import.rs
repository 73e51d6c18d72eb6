//! PEFT LoRA adapters in: folders written by the pinned huggingface/peft
//! (`scripts/peft_oracle.py import-fixtures`, tests/fixtures/peft_in) run through `predict` and
//! `merge` as PEFT runs them, LoRA starts from one, and what we do not implement is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tch::{Device, Kind, Tensor};
use triadapt::model::{HeadKind, ModelDir};
use triadapt::peft::import::read_peft_lora;
use triadapt::peft::method::{MethodConfig, MethodName};

use crate::common::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn case(name: &str) -> PathBuf {
    fixtures().join("peft_in").join(name)
}

fn triadapt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_triadapt")).current_dir(root()).env("OMP_NUM_THREADS", "1").args(args).output().expect("run triadapt")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "triadapt failed:\n{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn err(o: &Output) -> String {
    assert!(!o.status.success(), "expected a failure, got:\n{}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The v3_batch oracle inputs as `predict` JSON lines (padding included, as PEFT saw them).
/// Asserts `ours` is within the float32 reordering bound of PEFT's fixture logits (the 2-layer
/// fixture shape over the v3 oracle batch, `common::tolerance`).
fn assert_peft_close(what: &str, ours: &Tensor, peft: &Tensor) {
    crate::common::tolerance::assert_forward_close(what, "v3", oracle("v3_batch")["input_ids"].size()[1], ours, peft);
}

fn inputs_jsonl(dir: &Path) -> PathBuf {
    let o = oracle("v3_batch");
    let path = dir.join("inputs.jsonl");
    let rows: Vec<String> = (0..o["input_ids"].size()[0])
        .map(|i| {
            let row = |k: &str| Vec::<i64>::try_from(o[k].get(i)).unwrap();
            serde_json::json!({"input_ids": row("input_ids"), "attention_mask": row("attention_mask"), "token_type_ids": row("token_type_ids")}).to_string()
        })
        .collect();
    std::fs::write(&path, rows.join("\n") + "\n").unwrap();
    path
}

/// `predict` output as the oracle's layout: [batch, labels] or [batch, len, 2].
fn predicted(stdout: &str) -> Tensor {
    let rows: Vec<Tensor> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let vec = |k: &str| Tensor::from_slice(&serde_json::from_value::<Vec<f32>>(v[k].clone()).unwrap());
            if v.get("logits").is_some() {
                vec("logits")
            } else {
                Tensor::stack(&[vec("start_logits"), vec("end_logits")], 1)
            }
        })
        .collect();
    Tensor::stack(&rows, 0)
}

fn expected(name: &str) -> Tensor {
    let path = case(name).join("expected.safetensors");
    Tensor::read_safetensors(&path).unwrap().into_iter().find(|(k, _)| k == "logits").unwrap().1
}

#[test]
fn peft_lora_adapters_predict_what_peft_computes() {
    let tmp = tempfile::tempdir().unwrap();
    let input = inputs_jsonl(tmp.path());
    // Per-module ranks and alphas by pattern, modules_to_save head on a label-less backbone,
    // safetensors; and rsLoRA scaling, a regex target_modules, a QA head, adapter_model.bin.
    for name in ["cls_patterns", "qa_rslora_bin"] {
        let out = ok(&triadapt(&["predict", "--model", case(name).to_str().unwrap(), "--input", input.to_str().unwrap()]));
        assert_peft_close(&format!("{name}: predict against PEFT"), &predicted(&out), &expected(name));
    }
    // --base-model replaces base_model_name_or_path; a wrong --head is refused.
    let cls = case("cls_patterns");
    let out = ok(&triadapt(&[
        "predict",
        "--model",
        cls.to_str().unwrap(),
        "--base-model",
        "tests/fixtures/models/v3_backbone",
        "--input",
        input.to_str().unwrap(),
    ]));
    assert_peft_close("cls_patterns with --base-model", &predicted(&out), &expected("cls_patterns"));
    let e = err(&triadapt(&["predict", "--model", cls.to_str().unwrap(), "--head", "qa", "--input", input.to_str().unwrap()]));
    assert!(e.contains("--head Qa") && e.contains("Cls head"), "{e}");
}

#[test]
fn a_merged_peft_adapter_gives_peft_outputs_in_hf() {
    let tmp = tempfile::tempdir().unwrap();
    let merged = tmp.path().join("merged");
    ok(&triadapt(&["merge", case("cls_patterns").to_str().unwrap(), "--out", merged.to_str().unwrap()]));
    let out = tmp.path().join("logits.safetensors");
    let py = root().join(".venv/bin/python");
    let inputs = fixtures().join("oracle/v3_batch.safetensors");
    let o = Command::new(py)
        .current_dir(root())
        .args([
            "scripts/peft_oracle.py",
            "logits",
            "--model",
            merged.to_str().unwrap(),
            "--inputs",
            inputs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "HF oracle failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let hf = Tensor::read_safetensors(&out).unwrap().remove(0).1;
    assert_peft_close("HF on the merged PEFT adapter against PEFT", &hf, &expected("cls_patterns"));
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(merged.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["id2label"].as_object().unwrap().len(), 3, "{config}");
}

#[test]
fn unsupported_peft_adapters_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let input = inputs_jsonl(tmp.path());
    let predict = |dir: &Path| err(&triadapt(&["predict", "--model", dir.to_str().unwrap(), "--input", input.to_str().unwrap()]));
    let e = predict(&case("dora"));
    assert!(e.contains("use_dora") && e.contains("DoRA"), "{e}");
    let e = predict(&case("ia3"));
    assert!(e.contains("peft_type \"IA3\"") && e.contains("only LoRA"), "{e}");
    // A rank_pattern that disagrees with the stored factors names the module and the rank.
    let edited = tmp.path().join("edited");
    std::fs::create_dir(&edited).unwrap();
    for f in ["adapter_model.safetensors", "adapter_config.json"] {
        std::fs::copy(case("cls_patterns").join(f), edited.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(edited.join("adapter_config.json"))
        .unwrap()
        .replace("\"intermediate.dense\": 3", "\"intermediate.dense\": 5");
    std::fs::write(edited.join("adapter_config.json"), cfg).unwrap();
    let e = predict(&edited);
    assert!(e.contains("deberta.encoder.layer.0.intermediate.dense") && e.contains("rank 5"), "{e}");
    // LoRA on a matrix the backbone does not adapt (the pooler).
    let pooler = tmp.path().join("pooler");
    std::fs::create_dir(&pooler).unwrap();
    std::fs::copy(case("cls_patterns").join("adapter_config.json"), pooler.join("adapter_config.json")).unwrap();
    let mut tensors = Tensor::read_safetensors(case("cls_patterns").join("adapter_model.safetensors")).unwrap();
    tensors.retain(|(k, _)| !k.starts_with("base_model.model.pooler."));
    tensors.push(("base_model.model.pooler.dense.lora_A.weight".into(), Tensor::ones([4, 32], (Kind::Float, Device::Cpu))));
    tensors.push(("base_model.model.pooler.dense.lora_B.weight".into(), Tensor::ones([32, 4], (Kind::Float, Device::Cpu))));
    Tensor::write_safetensors(&tensors, pooler.join("adapter_model.safetensors")).unwrap();
    let e = predict(&pooler);
    assert!(e.contains("LoRA on `pooler.dense` is not supported"), "{e}");
}

fn lora_method(targets: &[&str]) -> MethodConfig {
    let mut cfg = MethodConfig { name: MethodName::Lora, ..Default::default() };
    cfg.lora.rank = 8; // not PEFT's 4/3/2: the adapter's ranks win
    cfg.lora_alpha = 16.0;
    cfg.lora_dropout = 0.0;
    cfg.target_modules = targets.iter().map(|t| t.to_string()).collect();
    cfg
}

#[test]
fn lora_starts_from_a_peft_adapter_exactly() {
    let _rng = torch_rng();
    let peft = read_peft_lora(&case("cls_patterns")).unwrap();
    let cfg = lora_method(&["query_proj", "value_proj", "attention.output.dense", "intermediate.dense"]);
    let mut dir = ModelDir::open(&model_dir("v3_backbone")).unwrap();
    dir.config.num_labels = Some(3);
    let m = triadapt::peft::attach(&dir, HeadKind::Cls, &cfg, Device::Cpu).unwrap();
    triadapt::peft::import::start_from_peft(&m.setup, &peft, &m.vs).unwrap();
    let ranks: Vec<i64> = m.adapters.iter().map(|(_, a)| a.lock().unwrap().rank()).collect();
    assert_eq!(ranks.iter().sum::<i64>(), 2 * (4 + 4 + 4 + 3) - 2, "PEFT's ranks (layer 1 query_proj has 2): {ranks:?}");
    let o = oracle("v3_batch");
    let logits = run_eval(&m.model, &o).logits;
    assert_peft_close("LoRA started from the PEFT adapter against PEFT", &logits, &expected("cls_patterns"));
    // Other target matrices than the adapter's: both sides named.
    let cfg = lora_method(&["query_proj", "key_proj", "value_proj", "attention.output.dense"]);
    let m = triadapt::peft::attach(&dir, HeadKind::Cls, &cfg, Device::Cpu).unwrap();
    let e = format!("{:#}", triadapt::peft::import::start_from_peft(&m.setup, &peft, &m.vs).unwrap_err());
    assert!(
        e.contains("layer.0.intermediate.dense") && e.contains("layer.0.attention.self.key_proj") && e.contains("target_modules"),
        "{e}"
    );
}

/// The whole path through the CLI: a LoRA run, exported for PEFT, starts a second run
/// (`--init-adapter`, a learning rate too small to move anything), whose adapter then predicts
/// what the first run's does; `eval` reads the PEFT folder too.
#[test]
fn train_init_adapter_continues_an_exported_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, peft, b) = (tmp.path().join("a"), tmp.path().join("peft"), tmp.path().join("b"));
    let base =
        ["train", "--config", "experiments/synthetic_rte.yaml", "--method", "lora", "--set", "max_steps=12", "--set", "eval_steps=12"];
    let mut args: Vec<&str> = base.to_vec();
    args.extend(["--out", a.to_str().unwrap()]);
    ok(&triadapt(&args));
    ok(&triadapt(&["export-peft", a.to_str().unwrap(), "--checkpoint", "last", "--out", peft.to_str().unwrap()]));
    let mut args: Vec<&str> = base.to_vec();
    args.extend([
        "--set",
        "optim.lr=1e-12",
        "--set",
        "max_steps=1",
        "--init-adapter",
        peft.to_str().unwrap(),
        "--out",
        b.to_str().unwrap(),
    ]);
    ok(&triadapt(&args));
    let stored = std::fs::read_to_string(b.join("config.yaml")).unwrap();
    assert!(stored.contains(&format!("init_adapter: {}", peft.display())), "{stored}");
    let input = root().join("tests/fixtures/inputs/demo.jsonl");
    let predict = |dir: &Path| {
        predicted(&ok(&triadapt(&[
            "predict",
            "--model",
            dir.to_str().unwrap(),
            "--checkpoint",
            "last",
            "--input",
            input.to_str().unwrap(),
        ])))
    };
    let (first, second, via_peft) = (predict(&a), predict(&b), predict(&peft));
    assert!(max_abs_diff(&first, &Tensor::zeros_like(&first)) > 0.0);
    assert_close("run started from the exported adapter", &second, &first, 1e-5);
    assert_close("the exported PEFT folder itself", &via_peft, &first, 1e-5);
    let eval = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&ok(&triadapt(&[
            "eval",
            "--model",
            dir.to_str().unwrap(),
            "--task",
            "rte",
            "--data-dir",
            "data/synthetic/rte",
            "--checkpoint",
            "last",
        ])))
        .unwrap()
    };
    assert_eq!(eval(&peft)["metrics"], eval(&a)["metrics"]);
    // Only LoRA starts from an adapter.
    let c = tmp.path().join("c");
    let mut args: Vec<&str> = base.to_vec();
    args[4] = "triadapt";
    args.extend(["--init-adapter", peft.to_str().unwrap(), "--out", c.to_str().unwrap()]);
    let e = err(&triadapt(&args));
    assert!(e.contains("key `init_adapter`") && e.contains("lora only"), "{e}");
}
