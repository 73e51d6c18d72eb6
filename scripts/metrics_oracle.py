#!/usr/bin/env python3
"""Record reference metric values, as a fixture for tests/metrics.rs.

* classification: seeded random predictions/labels (binary and 3-class, plus degenerate cases)
  scored by sklearn 1.7.2: accuracy_score, f1_score (binary: pos_label; 3-class: the
  one-vs-rest F1 of the positive class, f1_score(labels=[pos], average=None)), matthews_corrcoef.
* regression: seeded random vectors (some with ties, one constant) scored by scipy 1.16.3:
  pearsonr and spearmanr statistics (NaN written as null).
* glue: a few tasks scored as HF's `glue` metric does (the same sklearn/scipy calls), plus
  transformers' `combined_score` (mean of the metrics) where there are two.
* squad_pairs / squad_eval: the official SQuAD v2.0 evaluation (`evaluate-v2.0.py`),
  re-implemented below from its documented behaviour (normalize_answer, get_tokens,
  compute_exact, compute_f1, get_raw_scores, apply_no_ans_threshold, make_eval_dict), on
  hand-written answers including Unicode punctuation, whitespace and articles inside words.

Usage (from the repository root):

    .venv/bin/python scripts/metrics_oracle.py --out tests/fixtures/metrics

Deterministic (fixed seeds, no threads): two runs give byte-identical files; the script prints
the sha256 of cases.json.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import re
import string
import warnings
from pathlib import Path

import numpy as np
import scipy
import scipy.stats
import sklearn
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

SEED = 5005


def num(x):
    """A float for JSON; NaN becomes null (JSON has no NaN)."""
    x = float(x)
    return None if math.isnan(x) else x


# --------------------------------------------------------------------------------------------
# Classification and regression
# --------------------------------------------------------------------------------------------


def noisy_copy(rng, labels, n_classes, agree):
    """Predictions equal to labels with probability `agree`, else a uniform random class."""
    keep = rng.random(len(labels)) < agree
    return np.where(keep, labels, rng.integers(0, n_classes, len(labels)))


def classification_cases(rng):
    cases = []

    def add(name, preds, labels, positive):
        preds = [int(v) for v in preds]
        labels = [int(v) for v in labels]
        binary = len(set(preds) | set(labels) | {positive}) <= 2
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn warns on the zero-division cases
            if binary:
                f = f1_score(labels, preds, pos_label=positive)
            else:
                f = f1_score(labels, preds, labels=[positive], average=None)[0]
            cases.append(
                dict(
                    name=name,
                    preds=preds,
                    labels=labels,
                    positive=positive,
                    accuracy=num(accuracy_score(labels, preds)),
                    f1=num(f),
                    matthews_corrcoef=num(matthews_corrcoef(labels, preds)),
                )
            )

    y = rng.integers(0, 2, 50)
    add("binary_random_50", rng.integers(0, 2, 50), y, 1)
    y = rng.integers(0, 2, 200)
    add("binary_agree80_200", noisy_copy(rng, y, 2, 0.8), y, 1)
    y = rng.integers(0, 2, 37)
    add("binary_agree70_pos0", noisy_copy(rng, y, 2, 0.7), y, 0)
    y = rng.integers(0, 2, 40)
    add("binary_all_pred_one", np.ones(40, dtype=int), y, 1)
    add("binary_all_pred_zero", np.zeros(40, dtype=int), y, 1)
    add("binary_no_positive_anywhere", np.zeros(12, dtype=int), np.zeros(12, dtype=int), 1)
    y = rng.integers(0, 2, 30)
    add("binary_perfect", y, y, 1)
    add("binary_inverted", 1 - y, y, 1)
    y = rng.integers(0, 3, 100)
    add("three_class_random_100", rng.integers(0, 3, 100), y, 1)
    y = rng.integers(0, 3, 300)
    add("three_class_agree85_300", noisy_copy(rng, y, 3, 0.85), y, 2)
    y = rng.integers(0, 3, 60)
    add("three_class_never_pred_2", rng.integers(0, 2, 60), y, 2)
    return cases


def regression_cases(rng):
    cases = []

    def add(name, x, y):
        x = [float(v) for v in x]
        y = [float(v) for v in y]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant input warns and gives NaN
            r = scipy.stats.pearsonr(x, y).statistic
            rho = scipy.stats.spearmanr(x, y).statistic
        cases.append(dict(name=name, x=x, y=y, pearson=num(r), spearman=num(rho)))

    x = rng.normal(size=30)
    add("normal_independent_30", x, rng.normal(size=30))
    x = rng.normal(size=100)
    add("correlated_rounded_ties_100", np.round(x, 1), np.round(x + 0.5 * rng.normal(size=100), 1))
    gold = rng.integers(0, 26, 80) / 5.0  # STS-B-like labels 0.0, 0.2, ..., 5.0
    add("stsb_like_80", gold + rng.normal(scale=0.8, size=80), gold)
    add("integer_heavy_ties_50", rng.integers(0, 4, 50), rng.integers(0, 4, 50))
    x = rng.normal(size=25)
    add("negative_25", x, -2.0 * x + 0.3 * rng.normal(size=25))
    add("two_points", [0.25, 1.5], [3.0, -1.0])
    add("constant_prediction", np.full(10, 2.5), rng.normal(size=10))
    return cases


def glue_cases(rng):
    """HF `glue` metric's computations, plus transformers' combined_score."""
    cases = []

    def add(task, preds, labels):
        if task == "cola":
            m = {"matthews_correlation": float(matthews_corrcoef(labels, preds))}
        elif task == "stsb":
            m = {
                "pearson": float(scipy.stats.pearsonr(preds, labels)[0]),
                "spearmanr": float(scipy.stats.spearmanr(preds, labels)[0]),
            }
        elif task in ("mrpc", "qqp"):
            m = {
                "accuracy": float((np.asarray(preds) == np.asarray(labels)).mean()),
                "f1": float(f1_score(y_true=labels, y_pred=preds)),
            }
        else:
            m = {"accuracy": float((np.asarray(preds) == np.asarray(labels)).mean())}
        if len(m) > 1:
            m["combined_score"] = float(np.mean(list(m.values())))
        kind = "scores" if task == "stsb" else "classes"
        cast = float if task == "stsb" else int
        cases.append(
            dict(
                task=task,
                preds={kind: [cast(v) for v in preds]},
                labels={kind: [cast(v) for v in labels]},
                metrics=m,
            )
        )

    y = rng.integers(0, 2, 64)
    add("cola", noisy_copy(rng, y, 2, 0.7), y)
    y = rng.integers(0, 2, 64)
    add("mrpc", noisy_copy(rng, y, 2, 0.8), y)
    y = rng.integers(0, 2, 64)
    add("qqp", noisy_copy(rng, y, 2, 0.9), y)
    y = rng.integers(0, 3, 64)
    add("mnli", noisy_copy(rng, y, 3, 0.8), y)
    gold = rng.integers(0, 26, 64) / 5.0
    add("stsb", [float(v) for v in gold + rng.normal(scale=0.7, size=64)], [float(v) for v in gold])
    return cases


# --------------------------------------------------------------------------------------------
# SQuAD v2.0: the official evaluation, re-implemented
# --------------------------------------------------------------------------------------------


def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""

    def remove_articles(text):
        return re.sub(re.compile(r"\b(a|an|the)\b", re.UNICODE), " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def get_tokens(s):
    if not s:
        return []
    return normalize_answer(s).split()


def compute_exact(a_gold, a_pred):
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold, a_pred):
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    num_same = sum(common.values())
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        # If either is no-answer, then F1 is 1 if they agree, 0 otherwise.
        return int(gold_toks == pred_toks)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(pred_toks)
    recall = 1.0 * num_same / len(gold_toks)
    return (2 * precision * recall) / (precision + recall)


def squad_v2_eval(gold, preds, na_probs, na_prob_thresh):
    """main() of evaluate-v2.0.py on a flat list of {id, answers} (answers: texts)."""
    qid_to_has_ans = {q["id"]: bool(q["answers"]) for q in gold}
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    if na_probs is None:
        na_probs = {k: 0.0 for k in preds}
    exact_raw, f1_raw = {}, {}
    for q in gold:
        gold_answers = [a for a in q["answers"] if normalize_answer(a)]
        if not gold_answers:
            gold_answers = [""]
        a_pred = preds[q["id"]]
        exact_raw[q["id"]] = max(compute_exact(a, a_pred) for a in gold_answers)
        f1_raw[q["id"]] = max(compute_f1(a, a_pred) for a in gold_answers)

    def apply_no_ans_threshold(scores):
        new_scores = {}
        for qid, s in scores.items():
            if na_probs[qid] > na_prob_thresh:
                new_scores[qid] = float(not qid_to_has_ans[qid])
            else:
                new_scores[qid] = s
        return new_scores

    exact, f1 = apply_no_ans_threshold(exact_raw), apply_no_ans_threshold(f1_raw)

    def make_eval_dict(qid_list):
        total = len(qid_list)
        return {
            "exact": 100.0 * sum(exact[k] for k in qid_list) / total,
            "f1": 100.0 * sum(f1[k] for k in qid_list) / total,
            "total": total,
        }

    out = {
        "exact": 100.0 * sum(exact.values()) / len(exact),
        "f1": 100.0 * sum(f1.values()) / len(f1),
        "total": len(exact),
    }
    for prefix, qids in (("HasAns", has_ans_qids), ("NoAns", no_ans_qids)):
        if qids:
            for k, v in make_eval_dict(qids).items():
                out[f"{prefix}_{k}"] = v
    # The Rust struct always carries both totals.
    out.setdefault("HasAns_total", 0)
    out.setdefault("NoAns_total", 0)
    return out


SQUAD_PAIRS = [
    # (gold, pred)
    ("The Cat!", "cat"),
    ("red dog", "the big red dog"),
    ("theatre", "the atre"),
    ("another anthem", "an other anthem"),
    ("An Apple a day", "apple day"),
    ("the-cat", "cat"),
    ("a_the", "athe"),
    ("l’the end", "l’ end"),
    ("the—end", "—end"),
    ("¿Qué es la vida?", "qué es la vida"),
    ("“quoted” the words", "quoted words"),
    ("THE\u00a0Answer", "answer"),
    ("the\u2003em space", "em space"),
    ("the\u001fseparator", "separator"),
    ("ΟΔΟΣ Σ", "οδος σ"),
    ("İstanbul", "istanbul"),
    ("Straße", "strasse"),
    ("ＴＨＥ fullwidth", "fullwidth"),
    ("the 1st a1 an_ 2a", "1st a1 an 2a"),
    ("an\u0301 accent", "\u0301 accent"),
    ("café the", "cafe"),
    ("dog dog cat", "dog dog dog"),
    ("", ""),
    ("", "x"),
    ("the", ""),
    ("a an the", "the"),
    ("Tab\tand\nnewline", "tab and newline"),
    ("1,000,000 dollars", "1000000 dollars"),
]


def squad_pair_cases():
    return [
        dict(
            gold=g,
            pred=p,
            normalized_gold=normalize_answer(g),
            normalized_pred=normalize_answer(p),
            gold_tokens=get_tokens(g),
            exact=compute_exact(g, p),
            f1=float(compute_f1(g, p)),
        )
        for g, p in SQUAD_PAIRS
    ]


def squad_eval_cases(rng):
    gold = [
        dict(id="q1", answers=["red dog", "a big red dog"]),
        dict(id="q2", answers=["Paris", "Paris, France"]),
        dict(id="q3", answers=[]),
        dict(id="q4", answers=[]),
        dict(id="q5", answers=["The"]),  # answerable, but normalises to nothing
        dict(id="q6", answers=["the theatre district", "theatre"]),
        dict(id="q7", answers=["1,000 people"]),
        dict(id="q8", answers=[]),
    ]
    preds = {
        "q1": "the big red dog",
        "q2": "in Paris France",
        "q3": "",
        "q4": "something",
        "q5": "",
        "q6": "a theatre",
        "q7": "about 1000 people",
        "q8": "",
        "extra": "not in gold",
    }
    na = {q["id"]: round(float(rng.random()), 3) for q in gold}
    cases = []
    for name, g, p, probs, thresh in [
        ("no_na_probs", gold, preds, None, 1.0),
        ("na_probs_thresh_0.5", gold, preds, na, 0.5),
        ("na_probs_thresh_0.2", gold, preds, na, 0.2),
        ("has_ans_only", gold[:2], preds, None, 1.0),
        ("no_ans_only", [gold[2], gold[3]], preds, None, 1.0),
    ]:
        cases.append(
            dict(
                name=name,
                gold=g,
                preds=p,
                na_probs=probs,
                na_prob_thresh=thresh,
                scores=squad_v2_eval(g, p, probs, thresh),
            )
        )
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/metrics"))
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    fixture = dict(
        versions=dict(numpy=np.__version__, scipy=scipy.__version__, sklearn=sklearn.__version__),
        seed=SEED,
        classification=classification_cases(rng),
        regression=regression_cases(rng),
        glue=glue_cases(rng),
        squad_pairs=squad_pair_cases(),
        squad_eval=squad_eval_cases(rng),
    )
    text = json.dumps(fixture, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cases.json"
    path.write_text(text)
    print(f"{path}: sha256 {hashlib.sha256(text.encode()).hexdigest()}")


if __name__ == "__main__":
    main()
