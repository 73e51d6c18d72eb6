//! The backbone and heads against HF transformers 4.57.6 (fixtures from scripts/make_fixtures.py):
//! logits, last hidden states and gradients within the float32 reordering bounds of
//! `common::tolerance` (derived from the model's depth and widths, so they hold on any CPU).

use crate::common::tolerance::{assert_forward_close, gradient_bound};
use crate::common::*;
use tch::Tensor;
use triadapt::model::HeadKind;

fn seq_len(o: &std::collections::HashMap<String, Tensor>) -> i64 {
    o["input_ids"].size()[1]
}

fn check_cls(model: &str, oracle_name: &str) {
    let (_vs, m) = load(model, HeadKind::Cls);
    let o = oracle(oracle_name);
    let out = run_eval(&m, &o);
    assert_forward_close(&format!("{oracle_name} logits"), model, seq_len(&o), &out.logits, &o["logits"]);
    if let Some(h) = o.get("last_hidden_state") {
        assert_forward_close(&format!("{oracle_name} last hidden state"), model, seq_len(&o), &out.last_hidden_state, h);
    }
}

#[test]
fn v3_padded_batch_of_mixed_lengths_matches_hf() {
    check_cls("v3", "v3_batch");
}

#[test]
fn v3_sequence_longer_than_half_the_buckets_matches_hf() {
    let o = oracle("v3_long");
    assert!(o["input_ids"].size()[1] > 128, "the long fixture must pass position_buckets/2");
    check_cls("v3", "v3_long");
}

#[test]
fn v2_pairs_with_token_types_and_absolute_positions_match_hf() {
    check_cls("v2", "v2_pairs");
}

#[test]
fn regression_head_matches_hf() {
    check_cls("v3_regression", "v3_regression");
}

#[test]
fn qa_head_matches_hf() {
    let (_vs, m) = load("v3_qa", HeadKind::Qa);
    let o = oracle("v3_qa");
    let out = run_eval(&m, &o);
    let n = seq_len(&o);
    assert_forward_close("start logits", "v3_qa", n, &out.logits.select(2, 0), &o["start_logits"]);
    assert_forward_close("end logits", "v3_qa", n, &out.logits.select(2, 1), &o["end_logits"]);
    assert_forward_close("qa last hidden state", "v3_qa", n, &out.last_hidden_state, &o["last_hidden_state"]);
}

/// Gradient of sum(logits) (dropout off) with respect to layer 0's query_proj and the classifier.
fn check_grad(model: &str, oracle_name: &str) {
    let (vs, m) = load(model, HeadKind::Cls);
    let o = oracle(oracle_name);
    let out = m.forward_t(&o["input_ids"], &o["attention_mask"], &o["token_type_ids"], false);
    out.logits.sum(tch::Kind::Float).backward();
    let vars = vs.variables();
    let bound = gradient_bound(model, seq_len(&o));
    let checked = [
        ("deberta.encoder.layer.0.attention.self.query_proj.weight", "grad_query_weight"),
        ("classifier.weight", "grad_classifier_weight"),
        ("deberta.encoder.conv.conv.weight", "grad_conv_weight"),
    ];
    for (name, key) in checked.into_iter().filter(|(_, key)| o.contains_key(*key)) {
        let ours = vars[name].grad();
        let hf: &Tensor = &o[key];
        let rel = max_abs_diff(&ours, hf) / hf.abs().max().double_value(&[]);
        eprintln!("{oracle_name}: gradient of {name}: relative error {rel:e} (bound {bound:e})");
        assert!(rel <= bound, "{oracle_name}: gradient of {name}: relative error {rel:e} > {bound:e}");
    }
}

#[test]
fn v3_gradients_match_hf() {
    check_grad("v3", "v3_grad");
}

#[test]
fn v2_gradients_match_hf() {
    check_grad("v2", "v2_grad");
}

/// DeBERTa-v2-xlarge's convolution beside layer 0 (2 groups, GELU) on a padded batch: logits,
/// last hidden state, and the gradients of layer 0's query, the classifier and the convolution.
#[test]
fn v2_xlarge_convolution_layer_matches_hf() {
    check_cls("v2_conv", "v2_conv_batch");
    assert!(oracle("v2_conv_grad").contains_key("grad_conv_weight"));
    check_grad("v2_conv", "v2_conv_grad");
}

#[test]
fn relative_positions_use_log_buckets_past_half_the_buckets() {
    // Hand computation of HF's make_log_bucket_position with bucket 256, max 512 (mid 128):
    // |d| <= 128 stays d; |d| = 200 -> ceil(ln(200/128) / ln(511/128) * 127) + 128 = 169.
    let rel = triadapt::model::deberta::relative_positions(300, 256, 512, tch::Device::Cpu);
    let at = |q: i64, k: i64| rel.int64_value(&[q, k]);
    assert_eq!(at(5, 2), 3);
    assert_eq!(at(130, 2), 128);
    let expected = ((200f64 / 128.0).ln() / (511f64 / 128.0).ln() * 127.0).ceil() as i64 + 128;
    assert_eq!(expected, 169);
    assert_eq!(at(200, 0), expected);
    assert_eq!(at(0, 200), -expected);
}
