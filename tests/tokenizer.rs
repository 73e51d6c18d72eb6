//! Token ids equal HF DebertaV2Tokenizer's (fixture cases from scripts/make_fixtures.py),
//! including unknown characters, pairs and longest-first truncation.

use serde::Deserialize;
use triadapt::data::tokenizer::SpmTokenizer;

#[derive(Deserialize)]
struct Case {
    name: String,
    text_a: String,
    text_b: Option<String>,
    max_len: usize,
    input_ids: Vec<i64>,
    token_type_ids: Vec<i64>,
    attention_mask: Vec<i64>,
}

#[test]
fn every_fixture_case_matches_hf() {
    let tok = SpmTokenizer::from_file(&crate::common::fixtures().join("spm.model")).unwrap();
    let text = std::fs::read_to_string(crate::common::fixtures().join("tokenizer/cases.jsonl")).unwrap();
    let mut failures = Vec::new();
    let mut count = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: Case = serde_json::from_str(line).unwrap();
        count += 1;
        let enc = tok.encode(&case.text_a, case.text_b.as_deref(), case.max_len, true);
        if enc.input_ids != case.input_ids || enc.token_type_ids != case.token_type_ids || enc.attention_mask != case.attention_mask {
            failures.push(format!("{}: ours {:?}\n   hf {:?}", case.name, enc.input_ids, case.input_ids));
        }
    }
    assert!(count >= 20, "expected the fixture's cases, found {count}");
    assert!(failures.is_empty(), "{} of {count} cases differ:\n{}", failures.len(), failures.join("\n"));
}
