//! The `triadapt` binary end to end: predict and tokenize agree with the HF fixtures, and bad
//! input is an error naming the file and line.

mod common;

use std::process::Command;

use common::*;

fn triadapt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_triadapt")).args(args).output().expect("run triadapt")
}

fn stdout_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(out.status.success(), "triadapt failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn predict_on_ids_gives_hf_logits_and_hidden_states() {
    // Row 1 of the HF batch, without its padding: a lone sequence must give the same numbers.
    let o = oracle("v3_batch");
    let len = o["attention_mask"].get(1).sum(tch::Kind::Int64).int64_value(&[]);
    let ids: Vec<i64> = Vec::try_from(o["input_ids"].get(1).narrow(0, 0, len)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, serde_json::json!({ "input_ids": ids }).to_string()).unwrap();
    let model = model_dir("v3");
    let out = triadapt(&["predict", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap(), "--hidden"]);
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1);
    let logits: Vec<f32> = serde_json::from_value(lines[0]["logits"].clone()).unwrap();
    let hidden: Vec<Vec<f32>> = serde_json::from_value(lines[0]["last_hidden_state"].clone()).unwrap();
    let hf_logits: Vec<f32> = Vec::try_from(o["logits"].get(1)).unwrap();
    for (a, b) in logits.iter().zip(&hf_logits) {
        assert!((a - b).abs() <= 1e-5, "logits {logits:?} vs HF {hf_logits:?}");
    }
    assert_eq!(hidden.len() as i64, len);
    let hf_hidden = o["last_hidden_state"].get(1).narrow(0, 0, len);
    let ours = tch::Tensor::from_slice(&hidden.concat()).view([len, -1]);
    assert_close("predict --hidden", &ours, &hf_hidden, 1e-5);
}

#[test]
fn predict_text_and_qa_head_run_on_the_demo_inputs() {
    let demo = fixtures().join("inputs/demo.jsonl");
    let n = std::fs::read_to_string(&demo).unwrap().lines().count();
    let cls = stdout_lines(&triadapt(&["predict", "--model", model_dir("v3").to_str().unwrap(), "--input", demo.to_str().unwrap()]));
    assert_eq!(cls.len(), n);
    assert!(cls.iter().all(|l| l["logits"].as_array().map(|a| a.len()) == Some(3)));
    let qa = stdout_lines(&triadapt(&["predict", "--head", "qa", "--model", model_dir("v3_qa").to_str().unwrap(), "--input", demo.to_str().unwrap()]));
    assert!(qa.iter().all(|l| l["start_logits"].is_array() && l["end_logits"].is_array()));
}

#[test]
fn tokenize_command_matches_hf_ids() {
    let text = std::fs::read_to_string(fixtures().join("tokenizer/cases.jsonl")).unwrap();
    let case: serde_json::Value = serde_json::from_str(text.lines().find(|l| l.contains("\"pair\"")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, serde_json::json!({"text_a": case["text_a"], "text_b": case["text_b"]}).to_string()).unwrap();
    let max_len = case["max_len"].to_string();
    let out = stdout_lines(&triadapt(&["tokenize", "--model", model_dir("v3").to_str().unwrap(), "--input", input.to_str().unwrap(), "--max-len", &max_len, "--pad"]));
    assert_eq!(out[0]["input_ids"], case["input_ids"]);
    assert_eq!(out[0]["token_type_ids"], case["token_type_ids"]);
}

#[test]
fn bad_input_line_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    std::fs::write(&input, "{\"input_ids\": [1, 5, 2]}\n{\"input_ids\": [1, 5000, 2]}\n").unwrap();
    let out = triadapt(&["predict", "--model", model_dir("v3").to_str().unwrap(), "--input", input.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in.jsonl") && err.contains("line 2") && err.contains("5000"), "{err}");
    std::fs::write(&input, "{\"input_ids\": [1, 5, 2]}\nnot json\n").unwrap();
    let out = triadapt(&["predict", "--model", model_dir("v3").to_str().unwrap(), "--input", input.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in.jsonl:2"), "{err}");
}

#[test]
fn asking_for_cuda_without_a_gpu_is_a_clear_error() {
    if tch::Cuda::is_available() {
        return; // the GPU machine: the request is valid there
    }
    let demo = fixtures().join("inputs/demo.jsonl");
    let out = triadapt(&["predict", "--device", "cuda", "--model", model_dir("v3").to_str().unwrap(), "--input", demo.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CUDA is not available"));
}
