"""HF transformers + scikit-learn oracle for `triadapt eval` (tests/eval.rs).

    .venv/bin/python scripts/make_eval_fixture.py

Takes the fixture model tests/fixtures/models/v2 (2 labels, token types), shifts its classifier
bias so that its predictions on these examples split about evenly (a random model otherwise
predicts one class everywhere, which would make the comparison weak), saves it as
tests/fixtures/eval/model_v2, and runs it with HF's slow
DebertaV2Tokenizer on the first 64 pairs of data/synthetic/rte/dev.tsv (max length 128, one
example at a time, eval mode) and writes tests/fixtures/eval/rte_v2.json with HF's predicted
class ids, the gold labels, and scikit-learn's accuracy. Deterministic.
"""
import json
import os
import shutil

import torch
from sklearn.metrics import accuracy_score
from transformers import DebertaV2ForSequenceClassification, DebertaV2Tokenizer

N = 64


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    torch.set_num_threads(1)
    source = os.path.join(root, "tests/fixtures/models/v2")
    tok = DebertaV2Tokenizer(vocab_file=os.path.join(source, "spm.model"))
    model = DebertaV2ForSequenceClassification.from_pretrained(source).eval()
    model_dir = os.path.join(root, "tests/fixtures/eval/model_v2")
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(root, "data/synthetic/rte/dev.tsv"), encoding="utf-8")][1 : N + 1]
    def logits(s1, s2):
        enc = tok(s1, s2, truncation=True, max_length=128, return_tensors="pt")
        return model(**enc).logits[0]

    with torch.no_grad():
        margins = torch.stack([logits(s1, s2)[1] - logits(s1, s2)[0] for _, s1, s2, _ in rows])
        model.classifier.bias[1] -= margins.median() + 1e-4
    model.save_pretrained(model_dir, safe_serialization=True)
    shutil.copyfile(os.path.join(source, "spm.model"), os.path.join(model_dir, "spm.model"))
    preds, labels = [], []
    with torch.no_grad():
        for _, s1, s2, label in rows:
            enc = tok(s1, s2, truncation=True, max_length=128, return_tensors="pt")
            preds.append(int(model(**enc).logits.argmax(-1)))
            labels.append(0 if label == "entailment" else 1)
    out = {"model": "tests/fixtures/eval/model_v2", "data": "data/synthetic/rte/dev.tsv", "examples": N, "max_length": 128,
           "predictions": preds, "labels": labels, "accuracy": accuracy_score(labels, preds)}
    path = os.path.join(root, "tests/fixtures/eval/rte_v2.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {path}: accuracy {out['accuracy']}")


if __name__ == "__main__":
    main()
