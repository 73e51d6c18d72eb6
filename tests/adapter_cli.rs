//! `triadapt merge` and `triadapt export-peft` on a trained run folder: HF transformers on the
//! merged checkpoint and PEFT on the exported adapter give triadapt's logits (Python oracle).

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{Device, Tensor};
use triadapt::commands::adapter::load_adapted;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn triadapt(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_triadapt")).current_dir(root()).env("OMP_NUM_THREADS", "1").args(args).output().unwrap();
    assert!(o.status.success(), "triadapt {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// HF transformers / peft logits for several (model, adapter) jobs in one Python process (torch
/// and transformers are imported once).
fn oracle_jobs(jobs: &[(PathBuf, Option<PathBuf>)], inputs: &Path, dir: &Path) -> Vec<Tensor> {
    let jobs: Vec<(PathBuf, Option<PathBuf>, &str)> = jobs.iter().map(|(m, p)| (m.clone(), p.clone(), "adapted")).collect();
    oracle_jobs_with_position_query(&jobs, inputs, dir)
}

/// As [`oracle_jobs`], each job with the relative-position path of its query projections
/// (`adapted`: stock HF + PEFT; `frozen`: the IncreLoRA/AdaLoRA GLUE harnesses').
fn oracle_jobs_with_position_query(jobs: &[(PathBuf, Option<PathBuf>, &str)], inputs: &Path, dir: &Path) -> Vec<Tensor> {
    let list: Vec<serde_json::Value> = jobs
        .iter()
        .enumerate()
        .map(|(i, (model, peft, pq))| serde_json::json!({"model": model, "peft": peft, "head": "cls", "inputs": inputs, "out": dir.join(format!("oracle_{i}.safetensors")), "position_query": pq}))
        .collect();
    let file = dir.join("jobs.json");
    std::fs::write(&file, serde_json::Value::Array(list).to_string()).unwrap();
    let o = Command::new(root().join(".venv/bin/python"))
        .current_dir(root())
        .args(["scripts/peft_oracle.py", "logits", "--jobs"])
        .arg(&file)
        .output()
        .expect("the venv's python (make test creates it)");
    assert!(o.status.success(), "oracle failed:\n{}", String::from_utf8_lossy(&o.stderr));
    (0..jobs.len())
        .map(|i| {
            Tensor::read_safetensors(dir.join(format!("oracle_{i}.safetensors")))
                .unwrap()
                .into_iter()
                .find(|(n, _)| n == "logits")
                .unwrap()
                .1
        })
        .collect()
}

/// The v3 oracle batch, and its inputs written to `dir` for the Python oracle.
fn oracle_inputs(dir: &Path) -> (std::collections::HashMap<String, Tensor>, PathBuf) {
    let o = crate::common::oracle("v3_batch");
    let inputs = dir.join("inputs.safetensors");
    Tensor::write_safetensors(
        &[("input_ids", &o["input_ids"]), ("attention_mask", &o["attention_mask"]), ("token_type_ids", &o["token_type_ids"])],
        &inputs,
    )
    .unwrap();
    (o, inputs)
}

/// `triadapt train` of `method` on the bundled synthetic task into `out`, with `--set` overrides.
fn train_synthetic(method: &str, out: &Path, sets: &[&str]) {
    let mut args = vec!["train", "--config", "experiments/synthetic_rte.yaml", "--method", method, "--out", out.to_str().unwrap()];
    for set in sets {
        args.extend(["--set", set]);
    }
    triadapt(&args);
}

#[test]
fn merged_and_peft_exports_of_a_trained_run_give_our_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (o, inputs) = oracle_inputs(tmp.path());
    let (mut jobs, mut ours_all) = (Vec::new(), Vec::new());
    for method in ["triadapt", "adalora"] {
        let run = tmp.path().join(method);
        let mut sets = vec!["max_steps=40", "eval_steps=40"];
        if method == "adalora" {
            sets.extend(["method.adalora.tinit=5", "method.adalora.tfinal=10", "method.adalora.delta_t=5"]);
        }
        train_synthetic(method, &run, &sets);
        let (merged, peft) = (tmp.path().join(format!("{method}_merged")), tmp.path().join(format!("{method}_peft")));
        triadapt(&["merge", run.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
        triadapt(&["export-peft", run.to_str().unwrap(), "--out", peft.to_str().unwrap()]);

        let a = load_adapted(&run, triadapt::train::checkpoint::Which::Last, None, Device::Cpu).unwrap();
        let ours = tch::no_grad(|| a.model.forward_t(&o["input_ids"], &o["attention_mask"], &o["token_type_ids"], false).logits);
        jobs.push((merged.clone(), None));
        jobs.push((a.model_dir.dir.clone(), Some(peft.clone())));
        ours_all.push((method, ours.shallow_clone()));
        // The adapter actually changed the model (otherwise the comparison proves little).
        let base = tch::no_grad(|| {
            let dir = triadapt::model::ModelDir::open(&a.model_dir.dir).unwrap();
            let mut dir = dir;
            dir.config.num_labels = Some(2);
            let (vs, m, _) = dir.load(triadapt::model::HeadKind::Cls, &triadapt::model::PlainLinearFactory, Device::Cpu).unwrap();
            let saved = triadapt::peft::save::read_adapter(&run.join("adapter")).unwrap();
            triadapt::peft::save::apply_adapter(&saved, &[], &vs).unwrap();
            m.forward_t(&o["input_ids"], &o["attention_mask"], &o["token_type_ids"], false).logits
        });
        let effect = crate::common::max_abs_diff(&base, &ours);
        assert!(effect > 1e-6, "{method}: the adapter has no effect ({effect:e})");
    }
    let theirs = oracle_jobs(&jobs, &inputs, tmp.path());
    for (i, (method, ours)) in ours_all.iter().enumerate() {
        crate::common::assert_close(&format!("{method}: HF on the merged checkpoint"), &theirs[2 * i], ours, 1e-5);
        crate::common::assert_close(&format!("{method}: PEFT on the exported adapter"), &theirs[2 * i + 1], ours, 1e-5);
    }
}

/// `method.position_query: frozen` computes the IncreLoRA/AdaLoRA GLUE harnesses' attention: HF +
/// PEFT with `query_proj`'s frozen layer on the relative-position path (`peft_oracle.py`,
/// `position_query: frozen`) give our logits, and stock HF + PEFT does not. Without a pooler
/// update (`method.train_pooler: false`) the saved pooler is the base model's initial one.
#[test]
fn frozen_position_query_is_the_glue_harness_attention() {
    let tmp = tempfile::tempdir().unwrap();
    let (o, inputs) = oracle_inputs(tmp.path());
    let (run, peft) = (tmp.path().join("run"), tmp.path().join("peft"));
    let frozen = ["method.position_query=frozen", "method.train_pooler=false"];
    train_synthetic("lora", &run, &[&["max_steps=30", "eval_steps=30"][..], &frozen].concat());
    triadapt(&["export-peft", run.to_str().unwrap(), "--out", peft.to_str().unwrap()]);
    let a = load_adapted(&run, triadapt::train::checkpoint::Which::Last, None, Device::Cpu).unwrap();
    let ours = tch::no_grad(|| a.model.forward_t(&o["input_ids"], &o["attention_mask"], &o["token_type_ids"], false).logits);

    let base = a.model_dir.dir.clone();
    let jobs = [(base.clone(), Some(peft.clone()), "frozen"), (base, Some(peft), "adapted")];
    let theirs = oracle_jobs_with_position_query(&jobs, &inputs, tmp.path());
    crate::common::assert_close("the GLUE harness's attention (PEFT, frozen query on positions)", &theirs[0], &ours, 1e-5);
    let stock = crate::common::max_abs_diff(&theirs[1], &ours);
    assert!(stock > 1e-4, "stock HF + PEFT gives our frozen-path logits ({stock:e}): the switch changed nothing");

    // The pooler did not train: the adapter holds the tensors the run drew at its start.
    let saved: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(run.join("adapter/adapter_model.safetensors")).unwrap().into_iter().collect();
    let first = tmp.path().join("first");
    train_synthetic("lora", &first, &[&["max_steps=1", "eval_steps=1", "optim.lr=1e-12"][..], &frozen].concat());
    let initial: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(first.join("adapter/adapter_model.safetensors")).unwrap().into_iter().collect();
    assert!(saved["pooler.dense.weight"].equal(&initial["pooler.dense.weight"]), "the frozen pooler moved");
    assert!(!saved["classifier.weight"].equal(&initial["classifier.weight"]), "the classifier must still train");
}
