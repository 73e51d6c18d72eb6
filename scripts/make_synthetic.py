"""Writes the bundled synthetic GLUE-layout tasks used by `make demo` and the learning tests.

    python scripts/make_synthetic.py --out data/synthetic

Two tasks, deterministic (random.Random with fixed seeds), built from words of scripts/corpus.txt
so that the fixture sentencepiece model knows them:

- rte/ (RTE's TSV layout: index, sentence1, sentence2, label): a pair task. sentence2 carries
  three to five cue words; cues from the first list mean `entailment`, from the second
  `not_entailment`.
  Labels are balanced, so chance is 50%.
- sst2/ (SST-2's TSV layout: sentence, label): a single-sentence task with the same kind of cues.

It also writes the bundled tiny backbone data/tiny-deberta-v3/ (a randomly initialised,
DeBERTa-v3-shaped `DebertaV2Model`: hidden 64, 2 layers, 4 heads, HF's initialisation with std
0.02, the fixture sentencepiece model), the backbone `make demo` fine-tunes.

The cue decides the label exactly, so a model that attends to the cue reaches 100%; filler words
are drawn from the same pool for both labels and carry no signal.
"""
import argparse
import os
import random
import re

POSITIVE = ["bright", "warm", "gentle", "clear", "quiet", "safe"]
NEGATIVE = ["broken", "cold", "harsh", "dark", "loud", "lost"]


def vocabulary(corpus_path):
    words = re.findall(r"[a-z]+", open(corpus_path, encoding="utf-8").read().lower())
    cues = set(POSITIVE + NEGATIVE)
    pool = sorted({w for w in words if 3 <= len(w) <= 9 and w not in cues})
    return pool


def sentence(rng, pool, n_min, n_max, cues=None, n_cues=0):
    words = [rng.choice(pool) for _ in range(rng.randint(n_min, n_max))]
    for _ in range(n_cues):
        words.insert(rng.randint(0, len(words)), rng.choice(cues))
    return " ".join(words).capitalize() + "."


def write_rte(path, rng, pool, n):
    with open(path, "w", encoding="utf-8") as f:
        f.write("index\tsentence1\tsentence2\tlabel\n")
        for i in range(n):
            positive = i % 2 == 0
            s1 = sentence(rng, pool, 6, 14)
            s2 = sentence(rng, pool, 2, 5, POSITIVE if positive else NEGATIVE, rng.randint(3, 5))
            f.write(f"{i}\t{s1}\t{s2}\t{'entailment' if positive else 'not_entailment'}\n")


def write_sst2(path, rng, pool, n):
    with open(path, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for i in range(n):
            positive = i % 2 == 0
            text = sentence(rng, pool, 4, 10, POSITIVE if positive else NEGATIVE, rng.randint(3, 5))
            f.write(f"{text}\t{1 if positive else 0}\n")


def write_tiny_backbone(out, spm_path):
    """A DeBERTa-v3-style backbone, random with HF's own initialisation (std 0.02)."""
    import shutil

    import torch
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(20250114)
    config = DebertaV2Config(
        vocab_size=1001, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, hidden_act="gelu", max_position_embeddings=512,
        relative_attention=True, position_buckets=256, norm_rel_ebd="layer_norm",
        share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        type_vocab_size=0, layer_norm_eps=1e-7, initializer_range=0.02, pooler_hidden_size=64,
        pooler_dropout=0.0, pooler_hidden_act="gelu",
    )
    model = DebertaV2Model(config).eval()
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    shutil.copyfile(spm_path, os.path.join(out, "spm.model"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/synthetic")
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(__file__), "corpus.txt"))
    args = ap.parse_args()
    pool = vocabulary(args.corpus)
    for task, writer, n_train, n_dev in [("rte", write_rte, 600, 200), ("sst2", write_sst2, 600, 200)]:
        d = os.path.join(args.out, task)
        os.makedirs(d, exist_ok=True)
        writer(os.path.join(d, "train.tsv"), random.Random(f"{task}-train"), pool, n_train)
        writer(os.path.join(d, "dev.tsv"), random.Random(f"{task}-dev"), pool, n_dev)
    here = os.path.dirname(os.path.abspath(__file__))
    backbone = os.path.join(os.path.dirname(os.path.abspath(args.out)), "tiny-deberta-v3")
    write_tiny_backbone(backbone, os.path.join(here, "..", "tests", "fixtures", "spm.model"))
    print(f"wrote {args.out}/rte, {args.out}/sst2 and {backbone}")


if __name__ == "__main__":
    main()
