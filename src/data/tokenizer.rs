//! The DeBERTaV2 sentencepiece tokenizer (rust_tokenizers), made to give the ids HF's
//! `DebertaV2Tokenizer` gives: `[CLS] a [SEP] (b [SEP])`, segment ids, HF's longest-first
//! truncation, padding and attention mask.

use std::path::Path;

use anyhow::{Context, Result};
use rust_tokenizers::tokenizer::{DeBERTaV2Tokenizer, Tokenizer as _};
use rust_tokenizers::vocab::Vocab as _;
use serde::Serialize;

/// One encoded example, padded to `max_len` when padding was asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Encoding {
    pub input_ids: Vec<i64>,
    pub token_type_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
}

pub struct SpmTokenizer {
    inner: DeBERTaV2Tokenizer,
    pad_id: i64,
    cls_id: i64,
    sep_id: i64,
    unk_id: i64,
}

/// How many tokens to drop from the end of the first and second text so that `len_a + len_b`
/// loses `to_remove` tokens, as HF's `longest_first` strategy splits it: first even out the
/// lengths, then take the rest half from each (the odd one from the second text).
pub fn longest_first_split(len_a: usize, len_b: usize, to_remove: usize) -> (usize, usize) {
    let first = len_a.abs_diff(len_b).min(to_remove);
    let second = to_remove - first;
    if len_a > len_b {
        (first + second / 2, second - second / 2)
    } else {
        (second / 2, first + second - second / 2)
    }
}

/// Sentencepiece's default normaliser drops leading and trailing whitespace and collapses runs
/// of whitespace (tabs and newlines included) into one space; rust_tokenizers does not.
pub fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl SpmTokenizer {
    /// Loads `spm.model`; HF DeBERTa-v3 uses no lower-casing and no accent stripping.
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = DeBERTaV2Tokenizer::from_file(path, false, false, false)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{}: cannot load the sentencepiece model", path.display()))?;
        let vocab = inner.vocab();
        let id = |t: &str| vocab.token_to_id(t);
        let (pad_id, cls_id, sep_id, unk_id) = (id("[PAD]"), id("[CLS]"), id("[SEP]"), id("[UNK]"));
        Ok(SpmTokenizer { inner, pad_id, cls_id, sep_id, unk_id })
    }

    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    pub fn cls_id(&self) -> i64 {
        self.cls_id
    }

    pub fn sep_id(&self) -> i64 {
        self.sep_id
    }

    /// Token ids of one text without special tokens. An unknown character gives one `[UNK]`, as
    /// in HF (rust_tokenizers gives one per UTF-8 byte of characters outside the vocabulary).
    pub fn ids(&self, text: &str) -> Vec<i64> {
        self.ids_with_offsets(text).0
    }

    /// Token ids of one text (exactly those of `ids`) and each token's character span
    /// `[begin, end)` in `text` (char indices, not bytes), for extractive QA.
    ///
    /// Spans cover what the token stands for without the whitespace sentencepiece folds into
    /// its `▁` (so `▁world` in "hello  world" spans "world"); tokens follow each other without
    /// overlap. A token that is only `▁` (before an unknown character) has an empty span at the
    /// next non-whitespace character, and one `[UNK]` spans the whole run of unknown characters.
    /// These are sentencepiece's own piece offsets (`encode(..., out_type="immutable_proto")`)
    /// with surrounding whitespace trimmed. Whitespace is collapsed before rust_tokenizers sees
    /// the text (as sentencepiece's normaliser does), so positions are mapped back through that.
    pub fn ids_with_offsets(&self, text: &str) -> (Vec<i64>, Vec<(usize, usize)>) {
        // The collapsed text, and for each of its chars the char index in `text` (plus the end).
        let mut collapsed = String::with_capacity(text.len());
        let mut back: Vec<usize> = Vec::with_capacity(text.len() + 1);
        let mut pending_space = false;
        let mut n_chars = 0;
        for (i, c) in text.chars().enumerate() {
            n_chars = i + 1;
            if c.is_whitespace() {
                pending_space = !collapsed.is_empty();
                continue;
            }
            if pending_space {
                collapsed.push(' ');
                back.push(i - 1);
                pending_space = false;
            }
            collapsed.push(c);
            back.push(i);
        }
        back.push(n_chars);
        let is_space: Vec<bool> = collapsed.chars().map(|c| c == ' ').collect();
        let skip_spaces = |mut p: usize| {
            while p < is_space.len() && is_space[p] {
                p += 1;
            }
            p
        };

        let toks = self.inner.tokenize_with_offsets(&collapsed);
        let mut ids = Vec::with_capacity(toks.tokens.len());
        let mut spans = Vec::with_capacity(toks.tokens.len());
        let mut last_unk_offset = None;
        let mut prev_end = 0usize; // in collapsed chars
        for (i, (tok, offset)) in toks.tokens.iter().zip(&toks.offsets).enumerate() {
            let id = self.inner.vocab().token_to_id(tok);
            let refs = &toks.reference_offsets[i];
            // The last collapsed char this token stands for: the last char that is not a `▁`
            // (whose reference is the whitespace it replaced, or 0 when it was prepended).
            let last = if id == self.unk_id {
                let begin = offset.map(|o| o.begin);
                if begin.is_some() && begin == last_unk_offset {
                    // Another UTF-8 byte of the same unknown piece (all carry the piece's last
                    // char as their offset): HF has one [UNK] for the whole piece.
                    continue;
                }
                last_unk_offset = begin;
                offset.map(|o| o.end as usize)
            } else {
                last_unk_offset = None;
                let chars: Vec<char> = tok.chars().collect();
                if chars.len() == refs.len() {
                    chars.iter().zip(refs).filter(|(c, _)| **c != '\u{2581}').map(|(_, &r)| r as usize + 1).max()
                } else {
                    offset.map(|o| o.end as usize)
                }
            };
            let begin = skip_spaces(prev_end);
            let end = last.unwrap_or(begin).max(begin);
            spans.push((begin, end));
            prev_end = end;
            ids.push(id);
        }
        // Back to char positions of the original text.
        let spans = spans
            .into_iter()
            .map(|(b, e)| {
                let begin = back[b.min(back.len() - 1)];
                let end = if e > b { back[e - 1] + 1 } else { begin };
                (begin, end)
            })
            .collect();
        (ids, spans)
    }

    /// Encodes a text or a pair, truncated longest-first to `max_len` (special tokens included)
    /// and, when `pad`, right-padded to `max_len`.
    pub fn encode(&self, text_a: &str, text_b: Option<&str>, max_len: usize, pad: bool) -> Encoding {
        let mut a = self.ids(text_a);
        let mut b = text_b.map(|t| self.ids(t));
        let specials = if b.is_some() { 3 } else { 2 };
        let total = a.len() + b.as_ref().map_or(0, |b| b.len()) + specials;
        if total > max_len {
            let to_remove = total - max_len;
            let (ra, rb) = longest_first_split(a.len(), b.as_ref().map_or(0, |b| b.len()), to_remove);
            a.truncate(a.len().saturating_sub(ra));
            if let Some(b) = b.as_mut() {
                b.truncate(b.len().saturating_sub(rb));
            }
        }
        let mut input_ids = Vec::with_capacity(max_len);
        input_ids.push(self.cls_id);
        input_ids.extend(&a);
        input_ids.push(self.sep_id);
        let mut token_type_ids = vec![0; input_ids.len()];
        if let Some(b) = &b {
            input_ids.extend(b);
            input_ids.push(self.sep_id);
            token_type_ids.resize(input_ids.len(), 1);
        }
        let mut attention_mask = vec![1; input_ids.len()];
        if pad && input_ids.len() < max_len {
            input_ids.resize(max_len, self.pad_id);
            token_type_ids.resize(max_len, 0);
            attention_mask.resize(max_len, 0);
        }
        Encoding { input_ids, token_type_ids, attention_mask }
    }
}

#[cfg(test)]
mod tests {
    use super::longest_first_split;

    #[test]
    fn whitespace_is_collapsed_like_sentencepiece() {
        assert_eq!(super::collapse_whitespace("  a \t\n b  c "), "a b c");
    }

    #[test]
    fn longest_first_matches_hf_split() {
        // Hand-worked from HF's rule: even out first, then halve the rest (odd one to the second).
        assert_eq!(longest_first_split(10, 4, 3), (3, 0));
        assert_eq!(longest_first_split(10, 4, 8), (7, 1));
        assert_eq!(longest_first_split(4, 10, 8), (1, 7));
        assert_eq!(longest_first_split(5, 5, 3), (1, 2));
        assert_eq!(longest_first_split(7, 0, 2), (2, 0));
    }
}
