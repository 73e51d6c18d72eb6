//! The official SQuAD v2.0 evaluation (`evaluate-v2.0.py`): answer normalisation, exact match
//! and F1, the has-answer / no-answer breakdown.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

/// The official script's default `--na-prob-thresh`.
pub const SQUAD_NA_PROB_THRESH: f64 = 1.0;

/// Python's `str.isspace` (what `str.split()` splits on): Unicode White_Space plus the ASCII
/// separators U+001C..U+001F, which Python counts and Rust's `char::is_whitespace` does not.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python 3's `\w` on `str`, approximated by `char::is_alphanumeric() || '_'`. Python's `\w` is
/// letters (L*), numbers (N*) and `_`; Rust's alphabetic also admits Other_Alphabetic marks
/// (Mn/Mc such as U+0345, Hebrew points, Indic vowel signs) and circled letters (So), and newer
/// Unicode versions assign more characters. Only an article glued to such a character without a
/// separator is affected (Python would remove it, we keep it).
fn is_py_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replace every maximal run of word characters equal to `a`, `an` or `the` by one space: exactly
/// what Python's `re.sub(r'\b(a|an|the)\b', ' ', text)` does, since a match must start and end
/// at word boundaries.
fn remove_articles(text: &str) -> String {
    fn flush(out: &mut String, run: &str) {
        if matches!(run, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut run_start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if is_py_word(c) {
            run_start.get_or_insert(i);
        } else {
            if let Some(s) = run_start.take() {
                flush(&mut out, &text[s..i]);
            }
            out.push(c);
        }
    }
    if let Some(s) = run_start {
        flush(&mut out, &text[s..]);
    }
    out
}

/// The official `normalize_answer`: lower-case (full Unicode lowering, like Python's
/// `str.lower`, final sigma included), drop ASCII punctuation (`string.punctuation`; Unicode
/// punctuation such as `’`, `—`, `¿` stays), replace the whole words a/an/the by a space, and
/// collapse whitespace (Python's definition) to single spaces. Unicode-version differences
/// between Python's and Rust's case tables affect only recently added characters.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punc: String = lower.chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let no_articles = remove_articles(&no_punc);
    no_articles.split(is_py_space).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The official `get_tokens`: the normalised answer split on whitespace; empty for "".
pub fn get_tokens(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    normalize_answer(s).split(is_py_space).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

/// The official `compute_exact`: 1.0 if the normalised strings are equal, else 0.0.
pub fn compute_exact(gold: &str, pred: &str) -> f64 {
    f64::from(u8::from(normalize_answer(gold) == normalize_answer(pred)))
}

/// The official `compute_f1`: token-overlap F1 with multiset intersection. If either side has no
/// tokens (a no-answer), 1.0 when both have none, else 0.0. Same float operations as the script.
pub fn compute_f1(gold: &str, pred: &str) -> f64 {
    let gold_toks = get_tokens(gold);
    let pred_toks = get_tokens(pred);
    if gold_toks.is_empty() || pred_toks.is_empty() {
        return f64::from(u8::from(gold_toks == pred_toks));
    }
    let mut gold_counts: HashMap<&str, usize> = HashMap::new();
    for t in &gold_toks {
        *gold_counts.entry(t).or_default() += 1;
    }
    let mut num_same = 0usize;
    for t in &pred_toks {
        if let Some(c) = gold_counts.get_mut(t.as_str()) {
            if *c > 0 {
                *c -= 1;
                num_same += 1;
            }
        }
    }
    if num_same == 0 {
        return 0.0;
    }
    let precision = 1.0 * num_same as f64 / pred_toks.len() as f64;
    let recall = 1.0 * num_same as f64 / gold_toks.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// One SQuAD v2.0 dev question: its id and gold answer texts (empty for unanswerable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SquadGold {
    pub id: String,
    pub answers: Vec<String>,
}

/// The official script's output, in percent; serialised with its key names. The HasAns / NoAns
/// scores are `None` (and omitted) when the dev set has no question of that kind, as the script
/// omits them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SquadScores {
    pub exact: f64,
    pub f1: f64,
    pub total: usize,
    #[serde(rename = "HasAns_exact", skip_serializing_if = "Option::is_none")]
    pub has_ans_exact: Option<f64>,
    #[serde(rename = "HasAns_f1", skip_serializing_if = "Option::is_none")]
    pub has_ans_f1: Option<f64>,
    #[serde(rename = "HasAns_total")]
    pub has_ans_total: usize,
    #[serde(rename = "NoAns_exact", skip_serializing_if = "Option::is_none")]
    pub no_ans_exact: Option<f64>,
    #[serde(rename = "NoAns_f1", skip_serializing_if = "Option::is_none")]
    pub no_ans_f1: Option<f64>,
    #[serde(rename = "NoAns_total")]
    pub no_ans_total: usize,
}

/// The official SQuAD v2.0 evaluation. Per question: the gold answers are those whose
/// normalised text is non-empty (`[""]` if none), EM and F1 are maxima over them; then, as
/// `apply_no_ans_threshold`, if the question's no-answer probability exceeds `na_prob_thresh`
/// both scores become 1 for an unanswerable question and 0 for an answerable one. Without
/// `na_probs` every probability is 0.0, as the script assumes (so with the default threshold 1.0
/// the raw scores stand). "Answerable" means the raw answer list is non-empty, as the script's
/// `qid_to_has_ans`. Scores are summed in `gold` order and reported as `100 * sum / count`.
///
/// Where the script would crash or silently drop questions this errors instead: empty `gold`,
/// duplicate ids, a question without a prediction (the script skips it for the totals, then
/// fails in the HasAns/NoAns breakdown), or `na_probs` lacking a question. Predictions for ids
/// not in `gold` are ignored, as by the script.
pub fn squad_v2_eval(
    preds: &BTreeMap<String, String>,
    gold: &[SquadGold],
    na_probs: Option<&BTreeMap<String, f64>>,
    na_prob_thresh: f64,
) -> Result<SquadScores> {
    ensure!(!gold.is_empty(), "SQuAD evaluation: no gold questions");
    let mut seen = HashSet::new();
    let mut missing = Vec::new();
    for g in gold {
        ensure!(seen.insert(g.id.as_str()), "SQuAD evaluation: duplicate question id `{}`", g.id);
        if !preds.contains_key(&g.id) {
            missing.push(g.id.as_str());
        }
    }
    ensure!(
        missing.is_empty(),
        "SQuAD evaluation: {} question(s) without a prediction, e.g. `{}`",
        missing.len(),
        missing[..missing.len().min(5)].join("`, `")
    );

    // (exact, f1) sums over all / answerable / unanswerable questions, and the two counts.
    let (mut all, mut has, mut no) = ((0.0f64, 0.0f64), (0.0f64, 0.0f64), (0.0f64, 0.0f64));
    let (mut n_has, mut n_no) = (0usize, 0usize);
    for g in gold {
        let pred = &preds[&g.id];
        let has_ans = !g.answers.is_empty();
        let mut golds: Vec<&str> = g.answers.iter().map(String::as_str).filter(|a| !normalize_answer(a).is_empty()).collect();
        if golds.is_empty() {
            golds.push("");
        }
        let mut exact = golds.iter().map(|a| compute_exact(a, pred)).fold(f64::NEG_INFINITY, f64::max);
        let mut f1 = golds.iter().map(|a| compute_f1(a, pred)).fold(f64::NEG_INFINITY, f64::max);
        let na_prob = match na_probs {
            None => 0.0,
            Some(m) => match m.get(&g.id) {
                Some(&p) => p,
                None => bail!("SQuAD evaluation: no no-answer probability for `{}`", g.id),
            },
        };
        if na_prob > na_prob_thresh {
            let v = if has_ans { 0.0 } else { 1.0 };
            exact = v;
            f1 = v;
        }
        all.0 += exact;
        all.1 += f1;
        if has_ans {
            has.0 += exact;
            has.1 += f1;
            n_has += 1;
        } else {
            no.0 += exact;
            no.1 += f1;
            n_no += 1;
        }
    }
    let pct = |sum: f64, n: usize| 100.0 * sum / n as f64;
    let sub = |sum: f64, n: usize| (n > 0).then(|| pct(sum, n));
    Ok(SquadScores {
        exact: pct(all.0, gold.len()),
        f1: pct(all.1, gold.len()),
        total: gold.len(),
        has_ans_exact: sub(has.0, n_has),
        has_ans_f1: sub(has.1, n_has),
        has_ans_total: n_has,
        no_ans_exact: sub(no.0, n_no),
        no_ans_f1: sub(no.1, n_no),
        no_ans_total: n_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::test_util::{close, map};

    #[test]
    fn normalize_answer_like_the_official_script() {
        assert_eq!(normalize_answer("The Cat!"), "cat");
        assert_eq!(normalize_answer("  A  man,  an apple and THE   pear. "), "man apple and pear");
        // Articles only as whole words.
        assert_eq!(normalize_answer("theatre another anthem"), "theatre another anthem");
        // Punctuation goes before articles: "the-cat" -> "thecat" stays one word.
        assert_eq!(normalize_answer("the-cat"), "thecat");
        // '_' is punctuation (removed), and a word character for \b.
        assert_eq!(normalize_answer("a_the"), "athe");
        // Unicode punctuation is kept but is not a word character, so articles next to it go.
        assert_eq!(normalize_answer("the—end ¿a?"), "—end ¿");
        assert_eq!(normalize_answer("l’the"), "l’");
        // Python's whitespace includes U+001F and NBSP.
        assert_eq!(normalize_answer("the\u{1f}cat\u{a0}dog"), "cat dog");
        assert_eq!(normalize_answer("ΟΔΟΣ"), "οδος");
        assert_eq!(get_tokens(""), Vec::<String>::new());
        assert_eq!(get_tokens("the"), Vec::<String>::new());
        assert_eq!(get_tokens("The big dog"), ["big", "dog"]);
    }

    #[test]
    fn exact_and_f1_hand_cases() {
        assert_eq!(compute_exact("cat", "The Cat!"), 1.0);
        assert_eq!(compute_exact("cat", "cats"), 0.0);
        // pred "the big red dog" -> [big, red, dog]; gold "red dog" -> [red, dog]: common 2,
        // precision 2/3, recall 1 -> 2*(2/3)/(5/3) = 0.8.
        close(compute_f1("red dog", "the big red dog"), 0.8);
        // Multiset overlap: gold [dog, dog, cat], pred [dog, dog, dog]: common = min(2, 3) = 2
        // dogs, p = 2/3, r = 2/3 -> 2/3.
        close(compute_f1("dog dog cat", "dog dog dog"), 2.0 / 3.0);
        assert_eq!(compute_f1("red dog", "blue cat"), 0.0);
        // No-answer: both empty -> 1, one empty -> 0.
        assert_eq!(compute_f1("", ""), 1.0);
        assert_eq!(compute_f1("", "x"), 0.0);
        assert_eq!(compute_f1("x", ""), 0.0);
        // An answer that normalises to nothing counts as no-answer.
        assert_eq!(compute_f1("the", ""), 1.0);
    }

    fn gold(id: &str, answers: &[&str]) -> SquadGold {
        SquadGold { id: id.into(), answers: answers.iter().map(|s| s.to_string()).collect() }
    }

    fn preds(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|&(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn squad_eval_breakdown() {
        let g = vec![
            gold("q1", &["red dog", "a big red dog"]), // max over golds
            gold("q2", &["Paris"]),
            gold("q3", &[]), // unanswerable
            gold("q4", &[]),
        ];
        let p = preds(&[
            ("q1", "the big red dog"), // gold 2 normalises to "big red dog": EM 1, F1 1
            ("q2", "in Paris"),        // EM 0, F1: p=1/2, r=1 -> 2/3
            ("q3", ""),                // EM 1, F1 1
            ("q4", "x"),               // EM 0, F1 0
            ("extra", "ignored"),
        ]);
        let s = squad_v2_eval(&p, &g, None, SQUAD_NA_PROB_THRESH).unwrap();
        // exact = 100 * (1+0+1+0)/4 = 50; f1 = 100 * (1 + 2/3 + 1 + 0)/4 = 66.67.
        close(s.exact, 50.0);
        close(s.f1, 100.0 * (1.0 + 2.0 / 3.0 + 1.0) / 4.0);
        assert_eq!((s.total, s.has_ans_total, s.no_ans_total), (4, 2, 2));
        close(s.has_ans_exact.unwrap(), 50.0);
        close(s.has_ans_f1.unwrap(), 100.0 * (1.0 + 2.0 / 3.0) / 2.0);
        close(s.no_ans_exact.unwrap(), 50.0);
        close(s.no_ans_f1.unwrap(), 50.0);

        // na probabilities over 0.5 force no-answer: q2 (answerable) -> 0, q4 -> 1.
        let na = map(&[("q1", 0.1), ("q2", 0.9), ("q3", 0.2), ("q4", 0.6)]);
        let s = squad_v2_eval(&p, &g, Some(&na), 0.5).unwrap();
        close(s.exact, 75.0);
        close(s.f1, 75.0);
        close(s.has_ans_f1.unwrap(), 50.0);
        close(s.no_ans_f1.unwrap(), 100.0);
        // Equal to the threshold is not above it.
        let na = map(&[("q1", 0.5), ("q2", 0.5), ("q3", 0.5), ("q4", 0.5)]);
        close(squad_v2_eval(&p, &g, Some(&na), 0.5).unwrap().exact, 50.0);

        // Only answerable questions: NoAns scores absent, and omitted from JSON.
        let s = squad_v2_eval(&p, &g[..2], None, 1.0).unwrap();
        assert_eq!(s.no_ans_exact, None);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"HasAns_exact\":50.0") && !json.contains("NoAns_exact"), "{json}");
        let back: SquadScores = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);

        // Answers that normalise to nothing: gold [""], but still an answerable question.
        let s = squad_v2_eval(&preds(&[("q", "")]), &[gold("q", &["The"])], None, 1.0).unwrap();
        assert_eq!((s.exact, s.has_ans_total), (100.0, 1));
    }

    #[test]
    fn squad_eval_errors() {
        let g = vec![gold("q1", &["x"]), gold("q2", &[])];
        let err = squad_v2_eval(&preds(&[("q1", "x")]), &g, None, 1.0).unwrap_err().to_string();
        assert!(err.contains("q2"), "{err}");
        let p = preds(&[("q1", "x"), ("q2", "")]);
        let na = map(&[("q1", 0.0)]);
        assert!(squad_v2_eval(&p, &g, Some(&na), 1.0).unwrap_err().to_string().contains("q2"));
        let dup = vec![gold("q1", &["x"]), gold("q1", &[])];
        assert!(squad_v2_eval(&p, &dup, None, 1.0).unwrap_err().to_string().contains("duplicate"));
        assert!(squad_v2_eval(&p, &[], None, 1.0).is_err());
    }
}
