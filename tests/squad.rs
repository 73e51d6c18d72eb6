//! SQuAD 2.0 end to end on the tiny data of tests/fixtures/squad (scripts/make_squad_fixture.py):
//! features equal to the HF run_qa oracle (ids, windows, offsets, labels), answer offsets that map
//! back to the answer text, HF's postprocessing on hand-made logits, a `triadapt train` run that
//! writes the official metric names, and clear errors for bad files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use triadapt::config::SquadConfig;
use triadapt::data::squad::{self, QaFeature, SquadExample, SquadSplit};
use triadapt::data::tokenizer::SpmTokenizer;
use triadapt::metrics::normalize_answer;

const MAX_LEN: usize = 64;
const STRIDE: usize = 16;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn squad_dir() -> PathBuf {
    crate::common::fixtures().join("squad")
}

fn tokenizer() -> SpmTokenizer {
    SpmTokenizer::from_file(&crate::common::fixtures().join("spm.model")).unwrap()
}

fn load(split: SquadSplit) -> Vec<SquadExample> {
    squad::load_split(&squad_dir(), split).unwrap()
}

/// `text[begin..end]` in characters.
fn chars(text: &str, begin: usize, end: usize) -> String {
    text.chars().skip(begin).take(end.saturating_sub(begin)).collect()
}

#[derive(Deserialize)]
struct OracleFeature {
    id: String,
    input_ids: Vec<i64>,
    token_type_ids: Vec<i64>,
    offsets: Vec<Option<(usize, usize)>>,
    start_position: i64,
    end_position: i64,
}

#[derive(Deserialize)]
struct Oracle {
    max_len: usize,
    doc_stride: usize,
    train: Vec<OracleFeature>,
    dev: Vec<OracleFeature>,
}

fn oracle() -> Oracle {
    let path = squad_dir().join(format!("features_{MAX_LEN}_{STRIDE}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn features_equal_the_hf_run_qa_oracle() {
    let o = oracle();
    assert_eq!((o.max_len, o.doc_stride), (MAX_LEN, STRIDE));
    let tok = tokenizer();
    for (split, want) in [(SquadSplit::Train, &o.train), (SquadSplit::Dev, &o.dev)] {
        let examples = load(split);
        let got = squad::build_features(&tok, &examples, MAX_LEN, STRIDE).unwrap();
        assert_eq!(got.len(), want.len(), "{split:?}: number of features");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let what = format!("{split:?} feature {i} ({})", w.id);
            assert_eq!(examples[g.example].id, w.id, "{what}: question");
            assert_eq!(g.input_ids, w.input_ids, "{what}: input_ids");
            assert_eq!(g.token_type_ids(), w.token_type_ids, "{what}: token_type_ids");
            let offsets: Vec<Option<(usize, usize)>> = (0..g.input_ids.len()).map(|t| g.offset(t)).collect();
            assert_eq!(offsets, w.offsets, "{what}: offsets");
            assert_eq!((g.start_position, g.end_position), (w.start_position, w.end_position), "{what}: labels");
            assert!(g.input_ids.len() <= MAX_LEN, "{what}: longer than max_len");
        }
    }
}

/// The features of each question, in order.
fn by_question(features: &[QaFeature]) -> BTreeMap<usize, Vec<&QaFeature>> {
    let mut m: BTreeMap<usize, Vec<&QaFeature>> = BTreeMap::new();
    for f in features {
        m.entry(f.example).or_default().push(f);
    }
    m
}

#[test]
fn windows_overlap_by_the_stride_and_answers_outside_a_window_point_at_cls() {
    let tok = tokenizer();
    let examples = load(SquadSplit::Train);
    let features = squad::build_features(&tok, &examples, MAX_LEN, STRIDE).unwrap();
    let (mut multi, mut cls_answerable, mut inside) = (0, 0, 0);
    for (&q, feats) in &by_question(&features) {
        let ex = &examples[q];
        // Window count: room = max_len - question - 3 tokens of context per window, each next
        // window advancing room - stride tokens.
        let n_ctx = tok.ids(&ex.context).len();
        let room = MAX_LEN - tok.ids(ex.question.trim_start()).len() - 3;
        let expected = if n_ctx <= room { 1 } else { 1 + (n_ctx - room).div_ceil(room - STRIDE) };
        assert_eq!(feats.len(), expected, "{}: {n_ctx} context tokens, room {room}", ex.id);
        if feats.len() > 1 {
            multi += 1;
        }
        for pair in feats.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let a_ctx = &a.input_ids[a.context_start..a.input_ids.len() - 1];
            let b_ctx = &b.input_ids[b.context_start..b.input_ids.len() - 1];
            assert_eq!(a_ctx.len(), room, "{}: a window before the last is full", ex.id);
            assert_eq!(&a_ctx[room - STRIDE..], &b_ctx[..STRIDE], "{}: consecutive windows share doc_stride tokens", ex.id);
            assert_eq!(&a.offsets[room - STRIDE..], &b.offsets[..STRIDE], "{}: and their offsets", ex.id);
            assert!(a.offsets[room - STRIDE - 1] < b.offsets[0], "{}: no more than stride", ex.id);
        }
        for f in feats {
            assert_eq!(f.input_ids[0], tok.cls_id());
            assert_eq!(*f.input_ids.last().unwrap(), tok.sep_id());
            assert_eq!(f.input_ids[f.context_start - 1], tok.sep_id());
            let Some(a) = ex.answers.first() else {
                assert_eq!((f.start_position, f.end_position), (0, 0), "{}: unanswerable on [CLS]", ex.id);
                continue;
            };
            let (sc, ec) = (a.answer_start, a.answer_start + a.text.chars().count());
            let (lo, hi) = (f.offsets[0].0 as usize, f.offsets.last().unwrap().1 as usize);
            if lo <= sc && ec <= hi {
                inside += 1;
                assert!(
                    f.start_position >= f.context_start as i64 && f.end_position >= f.start_position,
                    "{}: labels in the context",
                    ex.id
                );
            } else {
                cls_answerable += 1;
                assert_eq!((f.start_position, f.end_position), (0, 0), "{}: answer outside the window -> [CLS]", ex.id);
            }
        }
    }
    assert!(multi >= 5 && cls_answerable >= 5 && inside >= 20, "the fixture should exercise windows: {multi} {cls_answerable} {inside}");
}

#[test]
fn labelled_offsets_map_back_to_the_exact_answer_text() {
    let tok = tokenizer();
    let examples = load(SquadSplit::Train);
    let features = squad::build_features(&tok, &examples, MAX_LEN, STRIDE).unwrap();
    let groups = by_question(&features);
    let (mut checked, mut exact) = (0, 0);
    for (q, ex) in examples.iter().enumerate() {
        let Some(a) = ex.answers.first() else { continue };
        let labelled: Vec<&&QaFeature> = groups[&q].iter().filter(|f| f.start_position > 0).collect();
        assert!(!labelled.is_empty(), "{}: the answer fits in some window", ex.id);
        for f in labelled {
            let (b, _) = f.offset(f.start_position as usize).unwrap();
            let (_, e) = f.offset(f.end_position as usize).unwrap();
            let span = chars(&ex.context, b, e);
            let what = format!("{}: tokens {}..={} of the window give {span:?}", ex.id, f.start_position, f.end_position);
            // The labelled tokens cover the answer; where a token runs past it (`1450.` is one
            // piece) only punctuation may be extra, which the official normalisation drops.
            assert!(span.contains(a.text.as_str()), "{what}");
            assert_eq!(normalize_answer(&span), normalize_answer(&a.text), "{what}");
            exact += usize::from(span == a.text);
            checked += 1;
        }
    }
    assert!(checked >= 20 && exact * 10 >= checked * 8, "{exact} exact of {checked}");
}

#[test]
fn offsets_keep_the_ids_and_follow_the_text() {
    let tok = tokenizer();
    let texts = ["  The cat  sat,\tnear 中文  the 1,000 mat.  ", "x 中 y", "Å starts here", "ﬁne day", "", "   ", "a\n\nb"];
    for t in texts {
        let (ids, offs) = tok.ids_with_offsets(t);
        assert_eq!(ids, tok.ids(t), "{t:?}");
        assert_eq!(ids.len(), offs.len());
        let n = t.chars().count();
        let mut prev = 0;
        for &(b, e) in &offs {
            assert!(prev <= b && b <= e && e <= n, "{t:?}: {offs:?}");
            prev = e;
        }
    }
    let text = "  The cat  sat,\tnear 中文  the 1,000 mat.  ";
    let (ids, offs) = tok.ids_with_offsets(text);
    let pieces: Vec<String> = offs.iter().map(|&(b, e)| chars(text, b, e)).collect();
    // Sentencepiece's pieces of this text (scripts/make_squad_fixture.py's oracle trims the
    // whitespace it folds into `▁`): ▁The ▁cat ▁sa t , ▁near ▁ 中文(UNK) ▁the ▁1 , 000 ▁ma t .
    assert_eq!(pieces, ["The", "cat", "sa", "t", ",", "near", "", "中文", "the", "1", ",", "000", "ma", "t", "."]);
    assert_eq!(ids[7], 3, "one [UNK] for the unknown run");
    assert_eq!(offs[6], (21, 21), "a lone ▁ sits at the next character");
}

#[derive(Deserialize)]
struct PostCase {
    n_best: usize,
    max_answer_length: usize,
    null_score_diff_threshold: f64,
    predictions: BTreeMap<String, String>,
    score_diff: BTreeMap<String, f64>,
}

#[derive(Deserialize)]
struct PostFeature {
    example_id: String,
    offsets: Vec<Option<(usize, usize)>>,
    start_logits: Vec<f32>,
    end_logits: Vec<f32>,
}

#[derive(Deserialize)]
struct PostExample {
    id: String,
    context: String,
}

#[derive(Deserialize)]
struct PostFixture {
    examples: Vec<PostExample>,
    features: Vec<PostFeature>,
    cases: Vec<PostCase>,
}

#[test]
fn postprocessing_matches_hf_on_hand_made_logits() {
    let fx: PostFixture = serde_json::from_str(&std::fs::read_to_string(squad_dir().join("postprocess.json")).unwrap()).unwrap();
    let examples: Vec<SquadExample> = fx
        .examples
        .iter()
        .map(|e| SquadExample { id: e.id.clone(), question: "?".into(), context: e.context.as_str().into(), answers: vec![] })
        .collect();
    let features: Vec<QaFeature> = fx
        .features
        .iter()
        .map(|f| {
            let context_start = f.offsets.iter().position(Option::is_some).unwrap();
            let offsets: Vec<(u32, u32)> =
                f.offsets.iter().skip(context_start).map_while(|o| o.map(|(b, e)| (b as u32, e as u32))).collect();
            QaFeature {
                example: examples.iter().position(|e| e.id == f.example_id).unwrap(),
                input_ids: vec![0; f.offsets.len()],
                context_start,
                offsets,
                start_position: 0,
                end_position: 0,
            }
        })
        .collect();
    let starts: Vec<Vec<f32>> = fx.features.iter().map(|f| f.start_logits.clone()).collect();
    let ends: Vec<Vec<f32>> = fx.features.iter().map(|f| f.end_logits.clone()).collect();
    let mut got_all = Vec::new();
    for case in &fx.cases {
        let cfg = SquadConfig {
            doc_stride: 0,
            max_answer_length: case.max_answer_length,
            n_best: case.n_best,
            null_score_diff_threshold: case.null_score_diff_threshold,
        };
        let got = squad::postprocess(&examples, &features, &starts, &ends, &cfg).unwrap();
        assert_eq!(
            got.text, case.predictions,
            "n_best {} max_answer_length {} threshold {}",
            case.n_best, case.max_answer_length, case.null_score_diff_threshold
        );
        for (id, d) in &case.score_diff {
            assert!((got.score_diff[id] - d).abs() < 1e-6, "{id}: score diff {} vs HF {d}", got.score_diff[id]);
        }
        got_all.push(got.text);
    }
    // The decisions the fixture was made to show (worked out by hand in the script's comments).
    let p = |case: usize, id: &str| got_all[case][id].clone();
    assert_eq!(p(0, "fox"), "jumps over the lazy dog", "best span across two windows");
    assert_eq!(p(1, "fox"), "brown fox", "max_answer_length 3 drops the five-token span");
    assert_eq!(p(0, "rain"), "", "the null score beats the best span by 1.5");
    assert_eq!(p(4, "rain"), "quiet harbor", "threshold 5 keeps the span");
    assert_eq!(p(0, "bread"), "and", "an end before its start is skipped");
    assert_eq!(p(2, "none"), "empty", "HF's fallback text when no span is left");
    assert_eq!(p(0, "none"), "");
}

#[test]
fn perfect_predictions_score_100_under_the_official_names() {
    let dev = load(SquadSplit::Dev);
    // A gold answer that normalises to "" (e.g. "The") does not count as gold: answer another.
    let best =
        |e: &SquadExample| e.answers.iter().find(|a| !normalize_answer(&a.text).is_empty()).map_or(String::new(), |a| a.text.clone());
    let preds: BTreeMap<String, String> = dev.iter().map(|e| (e.id.clone(), best(e))).collect();
    let m = squad::metrics_map(&squad::evaluate(&preds, &dev).unwrap());
    for k in ["exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"] {
        assert_eq!(m[k], 100.0, "{k}");
    }
    assert_eq!(m["total"], dev.len() as f64);
    let none: BTreeMap<String, String> = dev.iter().map(|e| (e.id.clone(), String::new())).collect();
    let m = squad::metrics_map(&squad::evaluate(&none, &dev).unwrap());
    assert_eq!((m["HasAns_f1"], m["NoAns_f1"]), (0.0, 100.0));
    assert!((m["f1"] - 100.0 * m["NoAns_total"] / m["total"]).abs() < 1e-9);
}

fn triadapt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_triadapt")).current_dir(root()).env("OMP_NUM_THREADS", "1").args(args).output().expect("run triadapt")
}

const CONFIG: &str = "\
task: squad2
data_dir: tests/fixtures/squad
model: data/tiny-deberta-v3
max_seq_length: 64
batch_size: 8
eval_batch_size: 32
max_steps: 10
eval_steps: 5
seed: 3
squad:
  doc_stride: 16
  max_answer_length: 8
optim:
  lr: 5.0e-3
  warmup_steps: 2
method:
  name: lora
  lora:
    rank: 2
";

fn train(dir: &Path, sets: &[&str]) -> std::process::Output {
    let cfg = dir.join("squad.yaml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let out = dir.join("run");
    let mut args = vec!["train", "--config", cfg.to_str().unwrap(), "--out", out.to_str().unwrap()];
    for s in sets {
        args.extend(["--set", s]);
    }
    triadapt(&args)
}

#[test]
fn triadapt_trains_and_evaluates_squad2_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let o = train(tmp.path(), &[]);
    assert!(o.status.success(), "triadapt failed:\n{}", String::from_utf8_lossy(&o.stderr));
    let out = tmp.path().join("run");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "finished");
    assert_eq!(m["task"], "squad2");
    assert_eq!(m["main_metric"], "f1");
    assert_eq!(m["steps"], 10);
    let dev = load(SquadSplit::Dev);
    for key in ["best_metrics", "final_metrics"] {
        let metrics = m[key].as_object().unwrap();
        for name in ["exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1"] {
            let v = metrics[name].as_f64().unwrap_or_else(|| panic!("{key}.{name} missing"));
            assert!((0.0..=100.0).contains(&v), "{key}.{name} = {v} (percent)");
        }
        assert_eq!(metrics["total"].as_f64().unwrap(), dev.len() as f64);
        assert_eq!(metrics["HasAns_total"].as_f64().unwrap() + metrics["NoAns_total"].as_f64().unwrap(), dev.len() as f64);
    }
    assert_eq!(m["best_score"], m["best_metrics"]["f1"]);
    // The answers of the last evaluation, scored again, give its metrics.
    let preds: BTreeMap<String, String> = serde_json::from_str(&std::fs::read_to_string(out.join("predictions.json")).unwrap()).unwrap();
    assert_eq!(preds.len(), dev.len());
    let again = squad::metrics_map(&squad::evaluate(&preds, &dev).unwrap());
    assert_eq!(again["f1"], m["final_metrics"]["f1"].as_f64().unwrap());
    for f in [
        "config.yaml",
        "curve.csv",
        "rank_history.csv",
        "rank_pattern.json",
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let adapter: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter/adapter_config.json")).unwrap()).unwrap();
    assert_eq!(adapter["head"], "qa");
    // `triadapt eval` on the run folder: the saved adapter and QA head, the run's windows and
    // decoding settings, give the final evaluation's answers and scores again.
    let e = triadapt(&["eval", "--model", out.to_str().unwrap(), "--task", "squad2", "--predictions"]);
    assert!(e.status.success(), "eval failed:\n{}", String::from_utf8_lossy(&e.stderr));
    let e: serde_json::Value = serde_json::from_slice(&e.stdout).unwrap();
    assert_eq!(e["examples"], dev.len());
    assert_eq!(serde_json::from_value::<BTreeMap<String, String>>(e["predictions"].clone()).unwrap(), preds);
    for name in ["exact", "f1", "HasAns_f1", "NoAns_exact", "total"] {
        assert_eq!(e["metrics"][name], m["final_metrics"][name], "{name}");
    }
    // A GLUE task on a QA run is refused with the reason.
    let e = triadapt(&["eval", "--model", out.to_str().unwrap(), "--task", "rte"]);
    let err = String::from_utf8_lossy(&e.stderr);
    assert!(!e.status.success() && err.contains("Qa head") && err.contains("rte"), "{err}");
    let curve = std::fs::read_to_string(out.join("curve.csv")).unwrap();
    assert_eq!(curve.lines().count(), 11);
    assert!(curve.lines().all(|l| !l.contains("NaN")), "{curve}");
}

#[test]
fn bad_squad_files_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let train_text = std::fs::read_to_string(squad_dir().join("train-v2.0.json")).unwrap();
    let dev_text = std::fs::read_to_string(squad_dir().join("dev-v2.0.json")).unwrap();

    // A truncated file: the error names the file and the position (line and column).
    let d = tmp.path().join("truncated");
    std::fs::create_dir_all(&d).unwrap();
    let cut: String = train_text.chars().take(train_text.chars().count() / 2).collect();
    let cut_lines = cut.matches('\n').count() + 1; // serde_json counts lines from 1
    std::fs::write(d.join("train-v2.0.json"), &cut).unwrap();
    std::fs::write(d.join("dev-v2.0.json"), &dev_text).unwrap();
    let err = format!("{:#}", squad::read_squad(&d.join("train-v2.0.json"), true).unwrap_err());
    assert!(err.contains("train-v2.0.json") && err.contains(&format!("line {cut_lines} column")) && err.contains("EOF"), "{err}");
    let o = train(tmp.path(), &[&format!("data_dir={}", d.display())]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("train-v2.0.json") && stderr.contains(&format!("line {cut_lines} column")), "{stderr}");

    // A wrong type names the JSON path.
    let bad = tmp.path().join("bad_type.json");
    std::fs::write(&bad, r#"{"data": [{"paragraphs": [{"context": "a b", "qas": [{"id": 7, "question": "q", "answers": []}]}]}]}"#)
        .unwrap();
    let err = format!("{:#}", squad::read_squad(&bad, true).unwrap_err());
    assert!(err.contains("bad_type.json") && err.contains("line 1 column") && err.contains("data[0].paragraphs[0].qas[0].id"), "{err}");

    // An answer that is not the context's text at answer_start: named by question id.
    let wrong = train_text.replacen("\"answer_start\": 0", "\"answer_start\": 1", 1);
    assert_ne!(wrong, train_text);
    let f = tmp.path().join("wrong_start.json");
    std::fs::write(&f, &wrong).unwrap();
    let err = format!("{:#}", squad::read_squad(&f, true).unwrap_err());
    assert!(err.contains("wrong_start.json") && err.contains("\"tr0000\"") && err.contains("answer_start 1"), "{err}");
    assert!(squad::read_squad(&f, false).is_ok(), "dev files' positions are not used");

    // A duplicate id and an answerable question without answers.
    let dup = train_text.replacen("\"tr0001\"", "\"tr0000\"", 1);
    let f = tmp.path().join("dup.json");
    std::fs::write(&f, &dup).unwrap();
    let err = format!("{:#}", squad::read_squad(&f, true).unwrap_err());
    assert!(err.contains("\"tr0000\"") && err.contains("more than once"), "{err}");
    let f = tmp.path().join("no_answers.json");
    std::fs::write(&f, r#"{"data": [{"paragraphs": [{"context": "a b", "qas": [{"id": "q1", "question": "q", "answers": [], "is_impossible": false}]}]}]}"#).unwrap();
    let err = format!("{:#}", squad::read_squad(&f, true).unwrap_err());
    assert!(err.contains("\"q1\"") && err.contains("no answers"), "{err}");

    // A missing file and a stride that does not fit.
    let err = format!("{:#}", squad::load_split(tmp.path(), SquadSplit::Dev).unwrap_err());
    assert!(err.contains("dev-v2.0.json"), "{err}");
    let o = train(tmp.path(), &["squad.doc_stride=64"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("squad.doc_stride"));
}
