//! Every supported checkpoint format loads and gives HF's logits; every kind of bad checkpoint is
//! an error that names the file, tensor or key at fault.

use std::path::Path;

use crate::common::tolerance::assert_forward_close;
use crate::common::*;
use tch::{Device, Tensor};
use triadapt::model::{HeadKind, ModelDir, PlainLinearFactory, WeightFormat};

fn logits_of(dir: &Path, kind: HeadKind) -> Tensor {
    let md = ModelDir::open(dir).unwrap();
    let (_vs, m, _) = md.load(kind, &PlainLinearFactory, Device::Cpu).unwrap();
    run_eval(&m, &oracle("v3_batch")).logits
}

fn load_err(dir: &Path) -> String {
    let err = ModelDir::open(dir).and_then(|md| md.load(HeadKind::Cls, &PlainLinearFactory, Device::Cpu).map(|_| ()));
    format!("{:#}", err.expect_err("loading should fail"))
}

/// A copy of the v3 model directory with its weights replaced by `tensors`.
fn v3_with_tensors(tmp: &Path, tensors: &[(String, Tensor)]) {
    std::fs::copy(model_dir("v3").join("config.json"), tmp.join("config.json")).unwrap();
    Tensor::write_safetensors(tensors, tmp.join("model.safetensors")).unwrap();
}

fn v3_tensors() -> Vec<(String, Tensor)> {
    Tensor::read_safetensors(model_dir("v3").join("model.safetensors")).unwrap()
}

#[test]
fn pytorch_bin_gives_hf_logits() {
    let md = ModelDir::open(&model_dir("v3_bin")).unwrap();
    assert_eq!(md.format, WeightFormat::PytorchBin);
    let o = oracle("v3_batch");
    assert_forward_close(
        "pytorch_model.bin logits",
        "v3_bin",
        o["input_ids"].size()[1],
        &logits_of(&model_dir("v3_bin"), HeadKind::Cls),
        &o["logits"],
    );
}

#[test]
fn rust_bert_ot_gives_hf_logits() {
    // rust-bert's rust_model.ot is LibTorch's C++ module archive of named tensors (HF names).
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(model_dir("v3").join("config.json"), tmp.path().join("config.json")).unwrap();
    let tensors = v3_tensors();
    Tensor::save_multi(&tensors, tmp.path().join("rust_model.ot")).unwrap();
    assert_eq!(ModelDir::open(tmp.path()).unwrap().format, WeightFormat::RustBertOt);
    let o = oracle("v3_batch");
    assert_forward_close("rust_model.ot logits", "v3", o["input_ids"].size()[1], &logits_of(tmp.path(), HeadKind::Cls), &o["logits"]);
}

#[test]
fn backbone_only_checkpoint_loads_into_a_head_model_and_reports_the_head() {
    let md = ModelDir::open(&model_dir("v3_backbone")).unwrap();
    let (_vs, m, report) = md.load(HeadKind::Cls, &PlainLinearFactory, Device::Cpu).unwrap();
    assert_eq!(report.initialised, ["classifier.bias", "classifier.weight", "pooler.dense.bias", "pooler.dense.weight"]);
    // The backbone is v3's, so its hidden states are HF's.
    let o = oracle("v3_batch");
    assert_forward_close(
        "backbone-only hidden state",
        "v3_backbone",
        o["input_ids"].size()[1],
        &run_eval(&m, &o).last_hidden_state,
        &o["last_hidden_state"],
    );
}

#[test]
fn a_classification_checkpoint_loads_into_a_qa_model_ignoring_the_other_head() {
    let md = ModelDir::open(&model_dir("v3")).unwrap();
    let (_vs, _m, report) = md.load(HeadKind::Qa, &PlainLinearFactory, Device::Cpu).unwrap();
    assert_eq!(report.initialised, ["qa_outputs.bias", "qa_outputs.weight"]);
    assert!(report.ignored.iter().any(|n| n == "classifier.weight"));
}

#[test]
fn missing_directory_config_or_weights_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = load_err(&tmp.path().join("nope"));
    assert!(err.contains("does not exist"), "{err}");
    let err = load_err(tmp.path());
    assert!(err.contains("no config.json"), "{err}");
    std::fs::copy(model_dir("v3").join("config.json"), tmp.path().join("config.json")).unwrap();
    let err = load_err(tmp.path());
    assert!(err.contains("no weights file") && err.contains("model.safetensors"), "{err}");
}

#[test]
fn truncated_weights_are_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(model_dir("v3").join("config.json"), tmp.path().join("config.json")).unwrap();
    let bytes = std::fs::read(model_dir("v3").join("model.safetensors")).unwrap();
    std::fs::write(tmp.path().join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(tmp.path());
    assert!(err.contains("model.safetensors") && err.contains("cannot read"), "{err}");
}

#[test]
fn shape_mismatch_names_the_tensor_and_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = v3_tensors();
    let name = "deberta.encoder.layer.1.intermediate.dense.weight";
    let slot = tensors.iter_mut().find(|(n, _)| n == name).unwrap();
    slot.1 = Tensor::zeros([48, 32], (tch::Kind::Float, Device::Cpu));
    v3_with_tensors(tmp.path(), &tensors);
    let err = load_err(tmp.path());
    assert!(err.contains(name) && err.contains("[48, 32]") && err.contains("[64, 32]"), "{err}");
}

#[test]
fn missing_backbone_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let name = "deberta.encoder.layer.0.attention.self.value_proj.bias";
    let tensors: Vec<_> = v3_tensors().into_iter().filter(|(n, _)| n != name).collect();
    v3_with_tensors(tmp.path(), &tensors);
    let err = load_err(tmp.path());
    assert!(err.contains("missing tensor") && err.contains(name), "{err}");
}

#[test]
fn unknown_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors = v3_tensors();
    tensors.push(("deberta.encoder.layer.0.attention.self.extra_proj.weight".into(), Tensor::zeros([2], (tch::Kind::Float, Device::Cpu))));
    v3_with_tensors(tmp.path(), &tensors);
    let err = load_err(tmp.path());
    assert!(err.contains("unknown tensor") && err.contains("extra_proj"), "{err}");
}

#[test]
fn unsupported_config_values_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(model_dir("v3").join("config.json")).unwrap();
    let mut cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (key, value, expect) in [
        ("conv_kernel_size", serde_json::json!(4), "conv_kernel_size"),
        ("conv_act", serde_json::json!("swish"), "conv_act"),
        ("conv_groups", serde_json::json!(5), "conv_groups"),
        ("pos_att_type", serde_json::json!(["p2c", "p2p"]), "p2p"),
        ("hidden_act", serde_json::json!("swish"), "hidden_act"),
    ] {
        let mut c = cfg.clone();
        if key != "conv_kernel_size" && key.starts_with("conv_") {
            c["conv_kernel_size"] = serde_json::json!(3);
        }
        c[key] = value;
        std::fs::write(tmp.path().join("config.json"), serde_json::to_string(&c).unwrap()).unwrap();
        let err = format!("{:#}", ModelDir::open(tmp.path()).expect_err("must reject"));
        assert!(err.contains(expect) && err.contains("config.json"), "{key}: {err}");
    }
    cfg["hidden_size"] = serde_json::json!("wide");
    std::fs::write(tmp.path().join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let err = format!("{:#}", ModelDir::open(tmp.path()).expect_err("must reject"));
    assert!(err.contains("hidden_size"), "{err}");
}
