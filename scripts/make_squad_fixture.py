#!/usr/bin/env python3
"""Writes the SQuAD 2.0 test fixtures under tests/fixtures/squad/ (tests/squad.rs reads them).

    .venv/bin/python scripts/make_squad_fixture.py --out tests/fixtures/squad

Deterministic (random.Random with a fixed seed, no clock, sorted output): running it twice gives
byte-identical files. Files:

- train-v2.0.json, dev-v2.0.json: tiny data in the official SQuAD 2.0 layout (data -> paragraphs ->
  context, qas -> id, question, answers [{text, answer_start}], is_impossible). Contexts are 1 to 7
  lines of scripts/corpus.txt (so the fixture sentencepiece model knows the words) joined by spaces,
  some with doubled spaces, tabs or newlines and some with characters outside the vocabulary
  (`中文`, `Å`: one [UNK] each). Answers are runs of 1-3 whole words (trailing punctuation dropped)
  that do not normalise to "" (a lone "The" would not count as a gold answer officially);
  about a quarter of the questions are unanswerable. Long contexts need several windows at
  max_len 64 / stride 16, so that answers fall inside some windows and outside others. Dev
  questions carry a second gold answer (the span with its preceding word) as the official dev set
  has several.
- features_64_16.json: the oracle for max_len=64, doc_stride=16. Per question, the features of HF's
  `run_qa.py` (`prepare_train_features` / `prepare_validation_features`: `[CLS] question [SEP]
  context [SEP]`, truncation only of the context, windows as the fast tokenizer's overflow with
  `stride`), built here from the slow `DebertaV2Tokenizer(vocab_file=tests/fixtures/spm.model)`'s
  ids (the slow tokenizer has no offsets and no overflow windows, so the windows follow the
  `tokenizers` rule: starts 0, budget - stride, ..., until one reaches the end of the context).
  Context offsets are sentencepiece's own piece offsets (`encode(out_type="immutable_proto")`, in
  characters) with surrounding whitespace trimmed; an empty piece (a lone `▁`) sits at
  the next non-whitespace character. Labels follow `prepare_train_features` within the context
  tokens (HF's loop can run past the context into `[SEP]`/padding when the answer starts in the
  window's last token; the bounded version is what is meant and what we implement). Every feature
  whose window holds the answer is checked here: the labelled tokens' text normalises to the
  normalised answer.
- postprocess.json: hand-made logits for `postprocess_qa_predictions(version_2_with_negative=True)`
  and the predictions of a transcription of HF's function (examples/pytorch/question-answering/
  utils_qa.py), with several settings of n_best, max_answer_length and null_score_diff_threshold.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
from pathlib import Path

import numpy as np
import sentencepiece as spm
from transformers import DebertaV2Tokenizer

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "scripts" / "corpus.txt"
SPM = REPO / "tests" / "fixtures" / "spm.model"
SEED = 4242
MAX_LEN = 64
DOC_STRIDE = 16


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------

def corpus_lines():
    return [l.strip() for l in CORPUS.read_text(encoding="utf-8").splitlines() if l.strip()]


def vocabulary(lines):
    return sorted({w for w in re.findall(r"[a-z]+", " ".join(lines).lower()) if 3 <= len(w) <= 9})


def make_context(rng, lines, n_lines, odd):
    start = rng.randrange(len(lines) - n_lines)
    parts = lines[start:start + n_lines]
    seps = [" "] * (len(parts) - 1)
    if odd == "space":
        seps = [rng.choice([" ", "  ", "\n", " \t "]) for _ in seps]
        words = parts[0].split(" ")
        words.insert(len(words) // 2, "")  # a doubled space inside a sentence
        parts[0] = " ".join(words)
    text = parts[0] + "".join(s + p for s, p in zip(seps, parts[1:]))
    if odd == "unknown":
        words = text.split(" ")
        for ch in ["中文", "Å"]:
            words.insert(rng.randrange(1, len(words)), ch)
        text = " ".join(words)
    if odd == "number":
        text = text + " It cost 1,000 coins."
    return text


def word_spans(text):
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def pick_answer(rng, context, where=None):
    spans = word_spans(context)
    n = rng.randint(1, 3)
    if where == "start":
        i = 0
    elif where == "end":
        i = len(spans) - n
    else:
        i = rng.randrange(0, len(spans) - n + 1)
    start, end = spans[i][0], spans[i + n - 1][1]
    while end > start and context[end - 1] in ".,;:!?":
        end -= 1
    lead = start
    while lead < end and context[lead] in "\"'(":
        lead += 1
    start = lead
    prev = context[spans[i - 1][0]:spans[i - 1][1]].strip(string.punctuation) if i > 0 else None
    return context[start:end], start, prev, (spans[i - 1][0] if i > 0 else None)


def make_split(rng, lines, vocab, n_paragraphs, dev, prefix):
    articles = []
    qcount = 0
    odds = ["plain", "space", "unknown", "number"]
    for a in range(max(1, n_paragraphs // 4)):
        paragraphs = []
        for p in range(4):
            k = a * 4 + p
            if k >= n_paragraphs:
                break
            n_lines = [1, 2, 4, 6, 7][k % 5]
            context = make_context(rng, lines, n_lines, odds[k % 4])
            qas = []
            for q in range(3):
                qid = f"{prefix}{qcount:04d}"
                qcount += 1
                if (k + q) % 4 == 3:
                    missing = rng.choice([w for w in vocab if w not in context.lower()])
                    qas.append({"id": qid, "question": f"What comes after {missing}?",
                                "answers": [], "is_impossible": True})
                    continue
                where = {0: "start", 1: None, 2: "end"}[q] if k % 3 == 0 else None
                text, start, prev, prev_start = pick_answer(rng, context, where)
                while not normalize_answer(text):  # e.g. "The" alone: no gold answer officially
                    text, start, prev, prev_start = pick_answer(rng, context, None)
                question = f"What comes after {prev}?" if prev else "How does the passage begin?"
                if q == 1 and k % 2 == 0:
                    question = "  " + question  # HF lstrips questions
                answers = [{"text": text, "answer_start": start}]
                if dev and prev_start is not None:
                    answers.append({"text": context[prev_start:start + len(text)], "answer_start": prev_start})
                qas.append({"id": qid, "question": question, "answers": answers, "is_impossible": False})
            paragraphs.append({"context": context, "qas": qas})
        articles.append({"title": f"{prefix}article{a}", "paragraphs": paragraphs})
    return {"version": "v2.0", "data": articles}


def examples(squad):
    out = []
    for article in squad["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                out.append({"id": qa["id"], "question": qa["question"], "context": para["context"],
                            "answers": qa["answers"]})
    return out


# ------------------------------------------------------------------------------------------------
# Features (HF run_qa.py, with the slow tokenizer's ids and sentencepiece's offsets)
# ------------------------------------------------------------------------------------------------

def piece_offsets(sp, text):
    """Sentencepiece's piece spans in characters of `text` (the Python binding reports begin/end
    in characters for a str input), whitespace trimmed; and the piece ids."""
    out, ids = [], []
    for p in sp.encode(text, out_type="immutable_proto").pieces:
        b, e = p.begin, p.end
        while b < e and text[b].isspace():
            b += 1
        if b == e:
            while b < len(text) and text[b].isspace():
                b += 1
            e = b
        while e > b and text[e - 1].isspace():
            e -= 1
        out.append((b, e))
        ids.append(p.id)
    return ids, out


def windows(n, budget, stride):
    """The `tokenizers` overflow windows (TruncationDirection::Right) of n tokens."""
    if n <= budget:
        return [(0, n)]
    assert budget > stride, "stride must be smaller than the room left for the context"
    out = []
    for start in range(0, n, budget - stride):
        stop = min(start + budget, n)
        out.append((start, stop))
        if stop == n:
            break
    return out


def normalize_answer(s):
    """The official SQuAD v2 normalisation."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def features(tok, sp, exs, max_len, stride):
    out = []
    for ex in exs:
        question = ex["question"].lstrip()
        q_ids = tok.encode(question, add_special_tokens=False)
        c_ids = tok.encode(ex["context"], add_special_tokens=False)
        sp_ids, offs = piece_offsets(sp, ex["context"])
        assert sp_ids == c_ids, (ex["id"], sp_ids, c_ids)
        budget = max_len - len(q_ids) - 3
        for s, e in windows(len(c_ids), budget, stride):
            ids = [tok.cls_token_id] + q_ids + [tok.sep_token_id] + c_ids[s:e] + [tok.sep_token_id]
            types = [0] * (len(q_ids) + 2) + [1] * (e - s + 1)
            ctx0 = len(q_ids) + 2
            offsets = [None] * ctx0 + [list(o) for o in offs[s:e]] + [None]
            start_pos = end_pos = 0
            if ex["answers"]:
                a = ex["answers"][0]
                start_char, end_char = a["answer_start"], a["answer_start"] + len(a["text"])
                ts, te = ctx0, ctx0 + (e - s) - 1
                if offsets[ts][0] <= start_char and offsets[te][1] >= end_char:
                    while ts <= ctx0 + (e - s) - 1 and offsets[ts][0] <= start_char:
                        ts += 1
                    start_pos = ts - 1
                    while te >= ctx0 and offsets[te][1] >= end_char:
                        te -= 1
                    end_pos = te + 1
                    span = ex["context"][offsets[start_pos][0]:offsets[end_pos][1]]
                    assert normalize_answer(span) == normalize_answer(a["text"]), (ex["id"], span, a["text"])
            out.append({"id": ex["id"], "input_ids": ids, "token_type_ids": types, "offsets": offsets,
                        "start_position": start_pos, "end_position": end_pos})
    return out


# ------------------------------------------------------------------------------------------------
# Postprocessing (transcription of HF utils_qa.postprocess_qa_predictions, v2)
# ------------------------------------------------------------------------------------------------

def postprocess(examples, features, all_start, all_end, n_best_size, max_answer_length, null_threshold):
    features_per_example = {}
    for i, f in enumerate(features):
        features_per_example.setdefault(f["example_id"], []).append(i)
    all_predictions, scores_diff = {}, {}
    for example in examples:
        min_null = None
        prelim = []
        for fi in features_per_example.get(example["id"], []):
            start_logits = np.array(all_start[fi], dtype=np.float32)
            end_logits = np.array(all_end[fi], dtype=np.float32)
            offset_mapping = features[fi]["offset_mapping"]
            feature_null_score = start_logits[0] + end_logits[0]
            if min_null is None or min_null["score"] > feature_null_score:
                min_null = {"offsets": (0, 0), "score": feature_null_score,
                            "start_logit": start_logits[0], "end_logit": end_logits[0]}
            start_indexes = np.argsort(start_logits, kind="stable")[-1: -n_best_size - 1: -1].tolist()
            end_indexes = np.argsort(end_logits, kind="stable")[-1: -n_best_size - 1: -1].tolist()
            for si in start_indexes:
                for ei in end_indexes:
                    if (si >= len(offset_mapping) or ei >= len(offset_mapping)
                            or offset_mapping[si] is None or len(offset_mapping[si]) < 2
                            or offset_mapping[ei] is None or len(offset_mapping[ei]) < 2):
                        continue
                    if ei < si or ei - si + 1 > max_answer_length:
                        continue
                    prelim.append({"offsets": (offset_mapping[si][0], offset_mapping[ei][1]),
                                   "score": start_logits[si] + end_logits[ei],
                                   "start_logit": start_logits[si], "end_logit": end_logits[ei]})
        prelim.append(min_null)
        null_score = min_null["score"]
        predictions = sorted(prelim, key=lambda x: x["score"], reverse=True)[:n_best_size]
        if not any(p["offsets"] == (0, 0) for p in predictions):
            predictions.append(min_null)
        context = example["context"]
        for pred in predictions:
            o = pred.pop("offsets")
            pred["text"] = context[o[0]:o[1]]
        if len(predictions) == 0 or (len(predictions) == 1 and predictions[0]["text"] == ""):
            predictions.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})
        i = 0
        while predictions[i]["text"] == "":
            i += 1
        best = predictions[i]
        diff = null_score - best["start_logit"] - best["end_logit"]
        scores_diff[example["id"]] = float(diff)
        all_predictions[example["id"]] = "" if diff > null_threshold else best["text"]
    return all_predictions, scores_diff


def postprocess_case():
    # Token layout of every feature: 0 [CLS], 1-2 question, 3 [SEP], context tokens, final [SEP].
    c1 = "The quick brown fox jumps over the lazy dog."
    #     0   4     10    16  20    26   31  35   40
    w1 = [[0, 3], [4, 9], [10, 15], [16, 19], [20, 25], [26, 30], [31, 34], [35, 39], [40, 43], [43, 44]]
    c2 = "Rain fell on the quiet harbor all night long."
    w2 = [[0, 4], [5, 9], [10, 12], [13, 16], [17, 22], [23, 29], [30, 33], [34, 39], [40, 44], [44, 45]]
    c3 = "Bread and honey for breakfast."
    w3 = [[0, 5], [6, 9], [10, 15], [16, 19], [20, 29], [29, 30]]
    exs = [{"id": "fox", "context": c1}, {"id": "rain", "context": c2}, {"id": "bread", "context": c3},
           {"id": "none", "context": c3}]
    feats, starts, ends = [], [], []

    def feature(eid, ctx_offsets, start, end):
        offsets = [None] * 4 + ctx_offsets + [None]
        n = len(offsets)
        s = [-5.0] * n
        e = [-5.0] * n
        for i, v in start.items():
            s[i] = v
        for i, v in end.items():
            e[i] = v
        feats.append({"example_id": eid, "offset_mapping": offsets})
        starts.append(s)
        ends.append(e)

    # fox: two windows. The question tokens 1 and 2 have the highest logits but are no context.
    # Best span "jumps over the lazy dog" (2.5 + 4.5, five tokens, second window); with
    # max_answer_length 3 it is "brown fox" (3.0 + 3.5, first window). Null: min(2.5, 1.5).
    feature("fox", w1[:6], {0: 1.0, 1: 9.0, 5: 2.0, 6: 3.0}, {0: 1.5, 2: 8.0, 7: 3.5, 9: 1.0})
    feature("fox", w1[3:], {0: 0.5, 4: 1.8, 5: 2.5}, {0: 1.0, 5: 3.0, 9: 4.5})
    # rain: the null score (3.0 + 3.0) beats "quiet harbor" (2.0 + 2.5): "" unless the threshold
    # is at least 1.5.
    feature("rain", w2, {0: 3.0, 8: 2.0, 9: 1.0}, {0: 3.0, 9: 2.5, 12: 2.0})
    # bread: the top pair (start "honey", end "and") ends before it starts; "and" wins.
    feature("bread", w3, {0: -1.0, 6: 4.0, 5: 1.0}, {0: -1.0, 5: 4.5, 8: 0.5})
    # none: with n_best 2 the candidates are only question tokens and [CLS], so no span is left
    # and HF falls back to the text "empty" (score 0), which beats the null score -4 at threshold
    # 0; with n_best 20 a (-10) context span exists and the null wins.
    feature("none", w3, {0: -2.0, 1: 6.0}, {0: -2.0, 2: 6.0})
    cases = []
    for n_best, max_len, thr in [(20, 30, 0.0), (20, 3, 0.0), (2, 30, 0.0), (20, 30, -3.0), (20, 30, 5.0)]:
        preds, diffs = postprocess(exs, feats, starts, ends, n_best, max_len, thr)
        cases.append({"n_best": n_best, "max_answer_length": max_len, "null_score_diff_threshold": thr,
                      "predictions": preds, "score_diff": diffs})
    return {"examples": exs,
            "features": [{"example_id": f["example_id"], "offsets": f["offset_mapping"],
                          "start_logits": s, "end_logits": e} for f, s, e in zip(feats, starts, ends)],
            "cases": cases}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "squad")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    lines = corpus_lines()
    vocab = vocabulary(lines)
    train = make_split(rng, lines, vocab, 16, False, "tr")
    dev = make_split(rng, lines, vocab, 8, True, "dv")
    for name, data in [("train-v2.0.json", train), ("dev-v2.0.json", dev)]:
        (args.out / name).write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    tok = DebertaV2Tokenizer(vocab_file=str(SPM))
    sp = spm.SentencePieceProcessor(model_file=str(SPM))
    oracle = {"max_len": MAX_LEN, "doc_stride": DOC_STRIDE,
              "train": features(tok, sp, examples(train), MAX_LEN, DOC_STRIDE),
              "dev": features(tok, sp, examples(dev), MAX_LEN, DOC_STRIDE)}
    text = json.dumps(oracle, ensure_ascii=False, separators=(",", ":"))
    # One feature per line keeps diffs readable.
    text = text.replace(',{"id"', ',\n{"id"')
    (args.out / f"features_{MAX_LEN}_{DOC_STRIDE}.json").write_text(text + "\n", encoding="utf-8")
    (args.out / "postprocess.json").write_text(json.dumps(postprocess_case(), indent=1) + "\n", encoding="utf-8")

    n_tr = sum(len(p["qas"]) for a in train["data"] for p in a["paragraphs"])
    n_dv = sum(len(p["qas"]) for a in dev["data"] for p in a["paragraphs"])
    multi = sum(1 for e in examples(train) if sum(1 for f in oracle["train"] if f["id"] == e["id"]) > 1)
    print(f"train: {n_tr} questions, {len(oracle['train'])} features ({multi} questions with several windows); "
          f"dev: {n_dv} questions, {len(oracle['dev'])} features")


if __name__ == "__main__":
    main()
