//! The `triadapt` binary end to end: predict and tokenize agree with the HF fixtures, and bad
//! input is an error naming the file and line.

use std::process::Command;

use crate::common::tolerance::assert_forward_close;
use crate::common::*;

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
    assert_forward_close("predict logits", "v3", len, &tch::Tensor::from_slice(&logits), &o["logits"].get(1));
    assert_eq!(hidden.len() as i64, len);
    let hf_hidden = o["last_hidden_state"].get(1).narrow(0, 0, len);
    let ours = tch::Tensor::from_slice(&hidden.concat()).view([len, -1]);
    assert_forward_close("predict --hidden", "v3", len, &ours, &hf_hidden);
}

#[test]
fn predict_text_and_qa_head_run_on_the_demo_inputs() {
    let demo = fixtures().join("inputs/demo.jsonl");
    let n = std::fs::read_to_string(&demo).unwrap().lines().count();
    let cls = stdout_lines(&triadapt(&["predict", "--model", model_dir("v3").to_str().unwrap(), "--input", demo.to_str().unwrap()]));
    assert_eq!(cls.len(), n);
    assert!(cls.iter().all(|l| l["logits"].as_array().map(|a| a.len()) == Some(3)));
    let qa = stdout_lines(&triadapt(&[
        "predict",
        "--head",
        "qa",
        "--model",
        model_dir("v3_qa").to_str().unwrap(),
        "--input",
        demo.to_str().unwrap(),
    ]));
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
    let out = stdout_lines(&triadapt(&[
        "tokenize",
        "--model",
        model_dir("v3").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--max-len",
        &max_len,
        "--pad",
    ]));
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

/// `predict --bf16` on CPU against HF's own bf16 output (scripts/make_bf16_fixture.py: the same
/// batch under `torch.autocast("cpu", dtype=torch.bfloat16)`). bf16 keeps 8 bits of mantissa:
/// logits of size ~2 carry rounding steps of ~0.008, and HF's bf16 logits differ from its fp32
/// ones by up to 0.0126; ours must be within 0.02 of HF's bf16 logits, closer to them than the
/// fp32 logits are, and the run must actually be in bf16 (not equal to fp32).
#[test]
fn predict_bf16_gives_hf_bf16_logits() {
    let o = oracle("v3_batch");
    let bf16 = oracle("v3_bf16");
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let mut lines = Vec::new();
    for row in 0..4 {
        let len = o["attention_mask"].get(row).sum(tch::Kind::Int64).int64_value(&[]);
        let ids: Vec<i64> = Vec::try_from(o["input_ids"].get(row).narrow(0, 0, len)).unwrap();
        lines.push(serde_json::json!({ "input_ids": ids }).to_string());
    }
    std::fs::write(&input, lines.join("\n")).unwrap();
    let model = model_dir("v3");
    let out = stdout_lines(&triadapt(&["predict", "--bf16", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()]));
    let ours: Vec<f32> = out.iter().flat_map(|l| serde_json::from_value::<Vec<f32>>(l["logits"].clone()).unwrap()).collect();
    let ours = tch::Tensor::from_slice(&ours).view([4, 3]);
    let d_hf = max_abs_diff(&ours, &bf16["logits_bf16"]);
    let d_fp32 = max_abs_diff(&ours, &o["logits"]);
    eprintln!("predict --bf16: max |ours - HF bf16| = {d_hf:e}, max |ours - fp32| = {d_fp32:e}");
    assert!(d_hf <= 0.02, "bf16 logits differ from HF's bf16 by {d_hf}");
    assert!(d_fp32 > 0.0, "predict --bf16 gave the fp32 logits exactly: autocast did not run");
}

/// Every subcommand's `--help` ends with examples, and each example's flags are ones that
/// subcommand accepts (clap rejects unknown flags before doing any work: `--help` appended to an
/// example's flags must still print help, not an error).
#[test]
fn every_subcommand_help_ends_with_working_examples() {
    use clap::{CommandFactory, Parser};
    // In process: the command line is the library's, so no example has to start the binary.
    let mut cli = triadapt::cli::Cli::command();
    cli.build();
    let subs: Vec<clap::Command> = cli.get_subcommands().filter(|s| s.get_name() != "help").cloned().collect();
    assert!(subs.len() >= 14, "{:?}", subs.iter().map(|s| s.get_name()).collect::<Vec<_>>());
    for mut sub in subs {
        let name = sub.get_name().to_string();
        let help = sub.render_long_help().to_string();
        let examples: Vec<&str> =
            help.lines().skip_while(|l| !l.starts_with("Examples:")).skip(1).filter(|l| l.trim_start().starts_with("triadapt ")).collect();
        assert!(examples.len() >= 2, "{name} --help has {} examples:\n{help}", examples.len());
        for ex in examples {
            // Every flag and value of the example parses (a pipe or redirection ends it).
            let words: Vec<&str> = ex.split_whitespace().take_while(|w| *w != "|" && *w != ">").collect();
            if let Err(e) = triadapt::cli::Cli::try_parse_from(&words) {
                panic!("example `{ex}` of {name} does not parse: {e}");
            }
        }
    }
    let mut bash = Vec::new();
    clap_complete::generate(clap_complete::Shell::Bash, &mut triadapt::cli::Cli::command(), "triadapt", &mut bash);
    assert!(String::from_utf8_lossy(&bash).contains("_triadapt"), "bash completions");
    // And the binary prints the same top-level help.
    let top = triadapt(&["--help"]);
    assert!(top.status.success() && String::from_utf8_lossy(&top.stdout).contains("Commands:"));
}

/// Every config key (the leaves of the default RunConfig) is documented: in the README's
/// config-key list and in `train --help`, so a new key cannot be added silently.
#[test]
fn every_config_key_is_in_the_readme_and_train_help() {
    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    // Blocks of one method are listed as `method.<block>.*` in --help.
                    leaves(&key, v, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut keys = Vec::new();
    leaves("", &serde_json::to_value(triadapt::config::RunConfig::default()).unwrap(), &mut keys);
    assert!(keys.len() > 50, "{keys:?}");
    let readme = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let help = String::from_utf8(triadapt(&["train", "--help"]).stdout).unwrap();
    for key in &keys {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(readme.contains(&format!("`{leaf}`")) || readme.contains(&format!("`{key}`")), "config key {key} is not in README.md");
        let block = key.rsplit_once('.').map_or("", |(block, _)| block);
        let in_help = help.contains(leaf) || (!block.is_empty() && help.contains(&format!("{block}.*")));
        assert!(in_help, "config key {key} is not in `train --help`");
    }
}
