//! SQuAD 2.0 end to end, as HF transformers' `examples/pytorch/question-answering/run_qa.py` with
//! `version_2_with_negative`: the JSON files, features over a sliding window of the context,
//! training labels, n-best decoding with the null-score threshold, and the official v2
//! evaluation (`crate::metrics::squad_v2_eval`).
//!
//! - Features (`prepare_train_features` / `prepare_validation_features`): `[CLS] question [SEP]
//!   context [SEP]`, token types 0 then 1, only the context truncated; a context longer than the
//!   room left (`max_len - question - 3`) is cut into windows that overlap by `doc_stride` tokens,
//!   as the fast tokenizer's overflow (starts 0, room - stride, ... up to the first window that
//!   reaches the end). Questions are left-stripped as run_qa does.
//! - Labels: the first answer's first and last token when the window holds the whole answer,
//!   else both on `[CLS]` (0); unanswerable questions: 0/0. HF's start search can run past the
//!   window's last context token into `[SEP]`/padding when the answer starts in that token; ours
//!   stops at the context's end (what HF means).
//! - Decoding (`postprocess_qa_predictions`): per question, over all its features, the null
//!   score is the smallest `start[0] + end[0]`; the `n_best` highest start and end logits of each
//!   feature pair into spans, skipping tokens outside the context, `end < start` and spans over
//!   `max_answer_length` tokens; the `n_best` best candidates plus the null one are sorted, and the
//!   answer is "" when `null - best non-null span` exceeds `null_score_diff_threshold`. Quirks kept:
//!   with no span candidate at all HF's fallback text is "empty" (score 0); a span whose character
//!   offsets are (0, 0) counts as the null answer. Ties between equal logits go to the later
//!   position (numpy's stable argsort, reversed); HF's padding positions (it pads to `max_len`) are
//!   never candidates anyway, so we rank only the real tokens.
//! - Metrics: the official evaluate-v2.0.py, in percent as that script reports them (`exact`,
//!   `f1`, `HasAns_exact`, `HasAns_f1`, `NoAns_exact`, `NoAns_f1` and the `*total` counts);
//!   GLUE metrics elsewhere are fractions.
//!
//! Offsets are character (Unicode scalar) positions, as Python's `str` indices and SQuAD's
//! `answer_start`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::batch::Batch;
use super::tokenizer::SpmTokenizer;
use crate::metrics::{squad_v2_eval, SquadGold, SquadScores, SQUAD_NA_PROB_THRESH};

/// SQuAD 2.0 feature and decoding settings (the HF run_qa defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SquadConfig {
    pub doc_stride: usize,
    pub max_answer_length: usize,
    pub n_best: usize,
    /// Predict no answer when null score - best span score exceeds this.
    pub null_score_diff_threshold: f64,
}

impl Default for SquadConfig {
    fn default() -> Self {
        SquadConfig { doc_stride: 128, max_answer_length: 30, n_best: 20, null_score_diff_threshold: 0.0 }
    }
}

/// The task name in `RunConfig.task`.
pub const TASK: &str = "squad2";
/// The metric that picks the best evaluation.
pub const MAIN_METRIC: &str = "f1";

/// The two files of the official distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SquadSplit {
    Train,
    Dev,
}

impl SquadSplit {
    pub fn file_name(self) -> &'static str {
        match self {
            SquadSplit::Train => "train-v2.0.json",
            SquadSplit::Dev => "dev-v2.0.json",
        }
    }
}

/// One gold answer: its text and where it starts in the context (in characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub text: String,
    pub answer_start: usize,
}

/// One question with its context (shared by the questions of a paragraph). No answers means
/// unanswerable.
#[derive(Debug, Clone, PartialEq)]
pub struct SquadExample {
    pub id: String,
    pub question: String,
    pub context: Arc<str>,
    pub answers: Vec<Answer>,
}

impl SquadExample {
    pub fn is_impossible(&self) -> bool {
        self.answers.is_empty()
    }
}

#[derive(Deserialize)]
struct RawFile {
    data: Vec<RawArticle>,
}

#[derive(Deserialize)]
struct RawArticle {
    paragraphs: Vec<RawParagraph>,
}

#[derive(Deserialize)]
struct RawParagraph {
    context: String,
    qas: Vec<RawQa>,
}

#[derive(Deserialize)]
struct RawQa {
    id: String,
    question: String,
    #[serde(default)]
    answers: Vec<RawAnswer>,
    #[serde(default)]
    is_impossible: Option<bool>,
}

#[derive(Deserialize)]
struct RawAnswer {
    text: String,
    answer_start: i64,
}

/// Byte position of every char of `s`, plus `s.len()`.
fn char_starts(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain(std::iter::once(s.len())).collect()
}

/// `s[begin..end]` in chars (clamped to the text).
fn char_slice<'a>(s: &'a str, starts: &[usize], begin: usize, end: usize) -> &'a str {
    let n = starts.len() - 1;
    let (b, e) = (begin.min(n), end.min(n));
    if e <= b {
        ""
    } else {
        &s[starts[b]..starts[e]]
    }
}

/// Reads a SQuAD 2.0 JSON file (`data -> paragraphs -> context, qas -> id, question, answers
/// [{text, answer_start}], is_impossible`; other keys such as `plausible_answers` are ignored).
///
/// Errors name the file: malformed or truncated JSON with its line and column and the JSON path
/// reached; duplicate question ids, an answerable question without answers or an unanswerable
/// one with answers by question id. With `check_spans` (the training file, whose `answer_start`
/// makes the labels) every answer must be the context's text at `answer_start`, else an error
/// names the question id; the dev file's positions are not used (the evaluation compares texts).
pub fn read_squad(path: &Path, check_spans: bool) -> Result<Vec<SquadExample>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // serde_json's message ends with "at line L column C"; the JSON path says where in the tree.
    let json_error = |at: String, e: serde_json::Error| {
        let at = at.trim_end_matches(".?");
        let within = if at.is_empty() || at == "." || at == "?" { String::new() } else { format!(" (in {at})") };
        anyhow::anyhow!("{}: not valid SQuAD 2.0 JSON: {e}{within}", path.display())
    };
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let raw: RawFile = serde_path_to_error::deserialize(&mut de).map_err(|e| json_error(e.path().to_string(), e.into_inner()))?;
    de.end().map_err(|e| json_error(String::new(), e))?;
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for article in raw.data {
        for para in article.paragraphs {
            let context: Arc<str> = Arc::from(para.context);
            let starts = if check_spans { char_starts(&context) } else { Vec::new() };
            for qa in para.qas {
                let at = || format!("{}: question {:?}", path.display(), qa.id);
                if !seen.insert(qa.id.clone()) {
                    bail!("{}: the id appears more than once", at());
                }
                match qa.is_impossible {
                    Some(true) if !qa.answers.is_empty() => {
                        bail!("{}: is_impossible is true but it has {} answer(s)", at(), qa.answers.len())
                    }
                    Some(false) if qa.answers.is_empty() => bail!("{}: is_impossible is false but it has no answers", at()),
                    _ => {}
                }
                let mut answers = Vec::with_capacity(qa.answers.len());
                for a in qa.answers {
                    if a.answer_start < 0 {
                        bail!("{}: answer {:?} has a negative answer_start {}", at(), a.text, a.answer_start);
                    }
                    let start = a.answer_start as usize;
                    if check_spans {
                        let end = start + a.text.chars().count();
                        if end >= starts.len() || char_slice(&context, &starts, start, end) != a.text {
                            bail!(
                                "{}: answer {:?} is not the context's text at answer_start {start} (found {:?}; the context has {} characters)",
                                at(), a.text, char_slice(&context, &starts, start, end), starts.len() - 1
                            );
                        }
                    }
                    answers.push(Answer { text: a.text, answer_start: start });
                }
                out.push(SquadExample { id: qa.id, question: qa.question, context: context.clone(), answers });
            }
        }
    }
    Ok(out)
}

/// The file of `split` in `dir`.
pub fn split_path(dir: &Path, split: SquadSplit) -> PathBuf {
    dir.join(split.file_name())
}

/// Reads `split` from `dir` (answer positions checked for the training file).
pub fn load_split(dir: &Path, split: SquadSplit) -> Result<Vec<SquadExample>> {
    if !dir.is_dir() {
        bail!("squad2 data directory {} does not exist (run `triadapt fetch squad2` or set data_dir)", dir.display());
    }
    let path = split_path(dir, split);
    if !path.is_file() {
        bail!("{}: no {} (SQuAD 2.0 needs train-v2.0.json and dev-v2.0.json)", dir.display(), split.file_name());
    }
    read_squad(&path, split == SquadSplit::Train)
}

/// One window of one question, as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct QaFeature {
    /// The question's index in the example list the features were built from.
    pub example: usize,
    /// `[CLS] question [SEP] context window [SEP]`, unpadded.
    pub input_ids: Vec<i64>,
    /// Position in `input_ids` of the window's first context token.
    pub context_start: usize,
    /// Character span in the context of each context token of the window, in order (token
    /// `context_start + i` has `offsets[i]`).
    pub offsets: Vec<(u32, u32)>,
    /// Training labels: the answer's first and last token, or 0 (`[CLS]`).
    pub start_position: i64,
    pub end_position: i64,
}

impl QaFeature {
    /// 0 for `[CLS] question [SEP]`, 1 for the context and its `[SEP]`.
    pub fn token_type_ids(&self) -> Vec<i64> {
        (0..self.input_ids.len()).map(|i| i64::from(i >= self.context_start)).collect()
    }

    /// The character span of token `i`, `None` outside the context (HF's `None` offsets).
    pub fn offset(&self, i: usize) -> Option<(usize, usize)> {
        let j = i.checked_sub(self.context_start)?;
        self.offsets.get(j).map(|&(b, e)| (b as usize, e as usize))
    }
}

/// The context windows `[start, end)` of `n` tokens with `room` tokens per window and `stride`
/// tokens of overlap, as the `tokenizers` overflow (right truncation). One window when it fits.
pub fn windows(n: usize, room: usize, stride: usize) -> Result<Vec<(usize, usize)>> {
    if n <= room {
        return Ok(vec![(0, n)]);
    }
    ensure!(room > stride, "a window has room for {room} context tokens, which must be more than doc_stride ({stride})");
    let step = room - stride;
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + room).min(n);
        out.push((start, end));
        if end == n {
            return Ok(out);
        }
        start += step;
    }
}

/// run_qa's labels within one window: `offsets` are the window's context tokens, which start at
/// `context_start` in the feature; `answer` is the first answer's character span.
pub fn label_positions(offsets: &[(u32, u32)], context_start: usize, answer: Option<(usize, usize)>) -> (i64, i64) {
    let Some((start_char, end_char)) = answer else { return (0, 0) };
    let (Some(first), Some(last)) = (offsets.first(), offsets.last()) else { return (0, 0) };
    if !(first.0 as usize <= start_char && last.1 as usize >= end_char) {
        return (0, 0);
    }
    let mut s = 0;
    while s < offsets.len() && offsets[s].0 as usize <= start_char {
        s += 1;
    }
    let mut e = offsets.len() as isize - 1;
    while e >= 0 && offsets[e as usize].1 as usize >= end_char {
        e -= 1;
    }
    ((context_start + s - 1) as i64, (context_start as isize + e + 1) as i64)
}

/// The features of `examples` (see the module doc) for sequences of at most `max_len` tokens.
/// Contexts are tokenized once per paragraph. An error names the question whose question leaves
/// no room for windows that overlap by `doc_stride` tokens.
pub fn build_features(tok: &SpmTokenizer, examples: &[SquadExample], max_len: usize, doc_stride: usize) -> Result<Vec<QaFeature>> {
    let mut out = Vec::with_capacity(examples.len());
    // The last context's (text, ids, offsets): the questions of a paragraph share it.
    type Tokenized = (Arc<str>, Vec<i64>, Vec<(u32, u32)>);
    let mut cache: Option<Tokenized> = None;
    for (index, ex) in examples.iter().enumerate() {
        let hit = cache.as_ref().is_some_and(|(c, _, _)| Arc::ptr_eq(c, &ex.context) || **c == *ex.context);
        if !hit {
            let (ids, spans) = tok.ids_with_offsets(&ex.context);
            let spans = spans.into_iter().map(|(b, e)| (b as u32, e as u32)).collect();
            cache = Some((ex.context.clone(), ids, spans));
        }
        let (_, c_ids, c_offsets) = cache.as_ref().expect("context tokenized");
        let q_ids = tok.ids(ex.question.trim_start());
        let fixed = q_ids.len() + 3;
        if fixed + c_ids.len() > max_len && fixed + doc_stride >= max_len {
            bail!(
                "question {:?}: its {} tokens leave {} of max_seq_length {max_len} for the context, not more than doc_stride {doc_stride} \
                 (raise max_seq_length or lower squad.doc_stride)",
                ex.id,
                q_ids.len(),
                max_len.saturating_sub(fixed)
            );
        }
        let room = max_len.saturating_sub(fixed);
        let answer = ex.answers.first().map(|a| (a.answer_start, a.answer_start + a.text.chars().count()));
        for (s, e) in windows(c_ids.len(), room, doc_stride).with_context(|| format!("question {:?}", ex.id))? {
            let mut input_ids = Vec::with_capacity(fixed + e - s);
            input_ids.push(tok.cls_id());
            input_ids.extend(&q_ids);
            input_ids.push(tok.sep_id());
            let context_start = input_ids.len();
            input_ids.extend(&c_ids[s..e]);
            input_ids.push(tok.sep_id());
            let offsets = c_offsets[s..e].to_vec();
            let (start_position, end_position) = label_positions(&offsets, context_start, answer);
            out.push(QaFeature { example: index, input_ids, context_start, offsets, start_position, end_position });
        }
    }
    Ok(out)
}

/// A padded batch of the features at `indices`, on `device`; labels are `[batch, 2]` (start, end).
pub fn make_batch(features: &[QaFeature], indices: &[usize], pad_id: i64, device: Device) -> Batch {
    let len = indices.iter().map(|&i| features[i].input_ids.len()).max().unwrap_or(1);
    let n = indices.len();
    let mut ids = vec![pad_id; n * len];
    let mut types = vec![0i64; n * len];
    let mut mask = vec![0i64; n * len];
    let mut labels = Vec::with_capacity(2 * n);
    for (row, &i) in indices.iter().enumerate() {
        let f = &features[i];
        let base = row * len;
        ids[base..base + f.input_ids.len()].copy_from_slice(&f.input_ids);
        types[base + f.context_start..base + f.input_ids.len()].fill(1);
        mask[base..base + f.input_ids.len()].fill(1);
        labels.extend([f.start_position, f.end_position]);
    }
    let t = |v: Vec<i64>, cols: usize| Tensor::from_slice(&v).view([n as i64, cols as i64]).to_kind(Kind::Int64).to_device(device);
    Batch { input_ids: t(ids, len), attention_mask: t(mask, len), token_type_ids: t(types, len), labels: t(labels, 2) }
}

/// Predicted answer texts ("" = no answer) and `null score - best span score` per question id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QaPredictions {
    pub text: BTreeMap<String, String>,
    pub score_diff: BTreeMap<String, f64>,
}

#[derive(Debug, Clone)]
struct Candidate {
    offsets: (usize, usize),
    score: f32,
    start_logit: f32,
    end_logit: f32,
}

/// The `n` highest logits' positions, best first; equal logits: the later position first.
fn top_n(logits: &[f32], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(b.cmp(&a)));
    idx.truncate(n);
    idx
}

/// HF's `postprocess_qa_predictions` with `version_2_with_negative` (see the module doc).
/// `start_logits[i]`/`end_logits[i]` belong to `features[i]` (one value per token of its
/// `input_ids`; longer rows, e.g. padded ones, are cut to the feature's length).
pub fn postprocess(
    examples: &[SquadExample],
    features: &[QaFeature],
    start_logits: &[Vec<f32>],
    end_logits: &[Vec<f32>],
    cfg: &SquadConfig,
) -> Result<QaPredictions> {
    ensure!(
        features.len() == start_logits.len() && features.len() == end_logits.len(),
        "{} features but {} start and {} end logit rows",
        features.len(),
        start_logits.len(),
        end_logits.len()
    );
    let mut per_example: Vec<Vec<usize>> = vec![Vec::new(); examples.len()];
    for (fi, f) in features.iter().enumerate() {
        ensure!(f.example < examples.len(), "feature {fi} belongs to question {} of {}", f.example, examples.len());
        per_example[f.example].push(fi);
    }
    let mut out = QaPredictions::default();
    for (ex, feats) in examples.iter().zip(&per_example) {
        let mut null: Option<Candidate> = None;
        let mut prelim = Vec::new();
        for &fi in feats {
            let f = &features[fi];
            let n = f.input_ids.len();
            ensure!(start_logits[fi].len() >= n && end_logits[fi].len() >= n, "feature {fi}: fewer logits than its {n} tokens");
            let (s, e) = (&start_logits[fi][..n], &end_logits[fi][..n]);
            let null_score = s[0] + e[0];
            if null.as_ref().is_none_or(|c| c.score > null_score) {
                null = Some(Candidate { offsets: (0, 0), score: null_score, start_logit: s[0], end_logit: e[0] });
            }
            let ends = top_n(e, cfg.n_best);
            for si in top_n(s, cfg.n_best) {
                for &ei in &ends {
                    let (Some(a), Some(b)) = (f.offset(si), f.offset(ei)) else { continue };
                    if ei < si || ei - si + 1 > cfg.max_answer_length {
                        continue;
                    }
                    prelim.push(Candidate { offsets: (a.0, b.1), score: s[si] + e[ei], start_logit: s[si], end_logit: e[ei] });
                }
            }
        }
        let null = null.with_context(|| format!("question {:?} has no features", ex.id))?;
        let null_score = null.score;
        prelim.push(null.clone());
        // Python's sorted(reverse=True) is stable: equal scores keep their order.
        prelim.sort_by(|a, b| b.score.total_cmp(&a.score));
        prelim.truncate(cfg.n_best);
        if !prelim.iter().any(|c| c.offsets == (0, 0)) {
            prelim.push(null);
        }
        let starts = char_starts(&ex.context);
        let mut preds: Vec<(String, f32, f32)> = prelim
            .iter()
            .map(|c| (char_slice(&ex.context, &starts, c.offsets.0, c.offsets.1).to_string(), c.start_logit, c.end_logit))
            .collect();
        if preds.is_empty() || (preds.len() == 1 && preds[0].0.is_empty()) {
            preds.insert(0, ("empty".to_string(), 0.0, 0.0));
        }
        let (text, diff) = match preds.iter().find(|p| !p.0.is_empty()) {
            Some((text, s, e)) => {
                let diff = null_score - s - e;
                let pred = if f64::from(diff) > cfg.null_score_diff_threshold { String::new() } else { text.clone() };
                (pred, f64::from(diff))
            }
            // Every candidate is empty text (HF would fail here): no answer.
            None => (String::new(), f64::INFINITY),
        };
        out.text.insert(ex.id.clone(), text);
        out.score_diff.insert(ex.id.clone(), diff);
    }
    Ok(out)
}

/// The official evaluation's gold answers (all answer texts; none = unanswerable).
pub fn gold(examples: &[SquadExample]) -> Vec<SquadGold> {
    examples.iter().map(|e| SquadGold { id: e.id.clone(), answers: e.answers.iter().map(|a| a.text.clone()).collect() }).collect()
}

/// The official SQuAD v2.0 evaluation of `predictions` (no na_probs: the raw scores).
pub fn evaluate(predictions: &BTreeMap<String, String>, examples: &[SquadExample]) -> Result<SquadScores> {
    squad_v2_eval(predictions, &gold(examples), None, SQUAD_NA_PROB_THRESH)
}

/// The scores under the official script's names, in percent (counts as numbers); the HasAns /
/// NoAns scores are absent when the dev set has no question of that kind, as in the script.
pub fn metrics_map(s: &SquadScores) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    m.insert("exact".to_string(), s.exact);
    m.insert("f1".to_string(), s.f1);
    m.insert("total".to_string(), s.total as f64);
    m.insert("HasAns_total".to_string(), s.has_ans_total as f64);
    m.insert("NoAns_total".to_string(), s.no_ans_total as f64);
    for (k, v) in
        [("HasAns_exact", s.has_ans_exact), ("HasAns_f1", s.has_ans_f1), ("NoAns_exact", s.no_ans_exact), ("NoAns_f1", s.no_ans_f1)]
    {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_overlap_by_the_stride_and_end_at_the_context_end() {
        assert_eq!(windows(10, 20, 4).unwrap(), vec![(0, 10)]);
        assert_eq!(windows(20, 20, 4).unwrap(), vec![(0, 20)]);
        assert_eq!(windows(21, 10, 4).unwrap(), vec![(0, 10), (6, 16), (12, 21)]);
        assert_eq!(windows(16, 10, 4).unwrap(), vec![(0, 10), (6, 16)]);
        assert!(windows(21, 4, 4).is_err());
    }

    #[test]
    fn labels_cover_the_answer_or_point_at_cls() {
        // Tokens "ab" "cd" "ef" at 0-2, 3-5, 6-8 of "ab cd ef", context from position 3.
        let offs = [(0, 2), (3, 5), (6, 8)];
        assert_eq!(label_positions(&offs, 3, Some((3, 5))), (4, 4));
        assert_eq!(label_positions(&offs, 3, Some((0, 8))), (3, 5));
        assert_eq!(label_positions(&offs, 3, Some((4, 7))), (4, 5)); // mid-token: the covering tokens
        assert_eq!(label_positions(&offs, 3, Some((6, 10))), (0, 0)); // runs past the window
        assert_eq!(label_positions(&offs[1..], 3, Some((0, 2))), (0, 0)); // before the window
        assert_eq!(label_positions(&offs, 3, None), (0, 0));
        // The answer in the window's last token (HF's loop would run into [SEP]).
        assert_eq!(label_positions(&offs, 3, Some((6, 8))), (5, 5));
    }

    #[test]
    fn top_n_breaks_ties_towards_later_positions() {
        assert_eq!(top_n(&[1.0, 3.0, 3.0, 2.0], 3), vec![2, 1, 3]);
    }
}
