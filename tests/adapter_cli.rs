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
    let list: Vec<serde_json::Value> = jobs
        .iter()
        .enumerate()
        .map(|(i, (model, peft))| serde_json::json!({"model": model, "peft": peft, "head": "cls", "inputs": inputs, "out": dir.join(format!("oracle_{i}.safetensors"))}))
        .collect();
    let file = dir.join("jobs.json");
    std::fs::write(&file, serde_json::Value::Array(list).to_string()).unwrap();
    let o = Command::new(root().join(".venv/bin/python")).current_dir(root()).args(["scripts/peft_oracle.py", "logits", "--jobs"]).arg(&file).output().expect("the venv's python (make test creates it)");
    assert!(o.status.success(), "oracle failed:\n{}", String::from_utf8_lossy(&o.stderr));
    (0..jobs.len())
        .map(|i| Tensor::read_safetensors(dir.join(format!("oracle_{i}.safetensors"))).unwrap().into_iter().find(|(n, _)| n == "logits").unwrap().1)
        .collect()
}

#[test]
fn merged_and_peft_exports_of_a_trained_run_give_our_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let o = crate::common::oracle("v3_batch");
    let inputs = tmp.path().join("inputs.safetensors");
    Tensor::write_safetensors(&[("input_ids", &o["input_ids"]), ("attention_mask", &o["attention_mask"]), ("token_type_ids", &o["token_type_ids"])], &inputs).unwrap();
    let (mut jobs, mut ours_all) = (Vec::new(), Vec::new());
    for method in ["triadapt", "adalora"] {
        let run = tmp.path().join(method);
        let extra: &[&str] = if method == "adalora" {
            &["--set", "method.adalora.tinit=5", "--set", "method.adalora.tfinal=10", "--set", "method.adalora.delta_t=5"]
        } else {
            &[]
        };
        let mut args = vec!["train", "--config", "experiments/synthetic_rte.yaml", "--method", method, "--out", run.to_str().unwrap(), "--set", "max_steps=40", "--set", "eval_steps=40"];
        args.extend_from_slice(extra);
        triadapt(&args);
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
