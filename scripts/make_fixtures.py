#!/usr/bin/env python3
"""Generate the committed test fixtures under tests/fixtures/.

Python is only the oracle here: this script trains a tiny sentencepiece model on
scripts/corpus.txt, builds tiny random HF DeBERTa-v2/v3 models, and records what
HF transformers computes for them (tokenizer ids, logits, hidden states, gradients),
so that the Rust implementation can be tested against it without Python.

Usage (from the repository root, with the pinned environment of scripts/requirements.txt):

    .venv/bin/python scripts/make_fixtures.py --out tests/fixtures

Everything is deterministic: fixed seeds, torch.use_deterministic_algorithms(True),
one thread, fp32, sentencepiece trained with one thread from an in-memory iterator
(so no file path is recorded in the model). Running it twice gives byte-identical files;
the script prints a sha256 manifest of everything it wrote.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
from pathlib import Path

import sentencepiece as spm
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import logging as hf_logging
from transformers import (
    DebertaV2Config,
    DebertaV2ForQuestionAnswering,
    DebertaV2ForSequenceClassification,
    DebertaV2Tokenizer,
)

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "scripts" / "corpus.txt"

SPM_VOCAB_SIZE = 1000
COMMAND = ".venv/bin/python scripts/make_fixtures.py --out tests/fixtures"

# Seeds, one per random thing, so that changing one fixture does not move the others.
SEED_V3 = 1001
SEED_V2 = 1002
SEED_V3_REGRESSION = 1003
SEED_V3_QA = 1004
SEED_XLARGE_CONV = 1005
SEED_V3_BATCH = 2001
SEED_V3_LONG = 2002

# Noise added to every bias and every LayerNorm weight/bias after HF's init
# (HF initialises biases to 0 and LayerNorm to (1, 0), which would hide wrong formulas).
PERTURB_STD = 0.1


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def setup_torch() -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    hf_logging.set_verbosity_error()  # silences the per-call longest_first truncation warning


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Save int tensors as int64 and float tensors as float32, contiguous, on CPU."""
    out = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        t = t.to(torch.float32) if t.is_floating_point() else t.to(torch.int64)
        out[name] = t.contiguous().clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path))


def tensor_names_and_shapes(path: Path) -> list[tuple[str, str, list[int]]]:
    with safe_open(str(path), framework="pt") as f:
        rows = []
        for k in f.keys():
            sl = f.get_slice(k)
            rows.append((k, sl.get_dtype(), list(sl.get_shape())))
    return rows


# --------------------------------------------------------------------------------------
# 1-2. sentencepiece model
# --------------------------------------------------------------------------------------


def train_spm_bytes(lines: list[str]) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        vocab_size=SPM_VOCAB_SIZE,
        model_type="unigram",
        num_threads=1,
        byte_fallback=False,
        character_coverage=1.0,
        pad_id=0,
        pad_piece="[PAD]",
        bos_id=1,
        bos_piece="[CLS]",
        eos_id=2,
        eos_piece="[SEP]",
        unk_id=3,
        unk_piece="[UNK]",
        minloglevel=2,
    )
    return model.getvalue()


def make_spm(out: Path) -> Path:
    lines = [line.rstrip("\n") for line in open(CORPUS, encoding="utf-8") if line.strip()]
    first = train_spm_bytes(lines)
    second = train_spm_bytes(lines)
    if first != second:
        sys.exit("sentencepiece training is not deterministic")
    path = out / "spm.model"
    path.write_bytes(first)
    return path


def load_tokenizer(spm_path: Path) -> DebertaV2Tokenizer:
    tok = DebertaV2Tokenizer(vocab_file=str(spm_path))
    expected = {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[UNK]": 3, "[MASK]": SPM_VOCAB_SIZE}
    got = {t: tok.convert_tokens_to_ids(t) for t in expected}
    assert got == expected, got
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == SPM_VOCAB_SIZE and tok.vocab_size == SPM_VOCAB_SIZE
    return tok


# --------------------------------------------------------------------------------------
# 3. tiny random models
# --------------------------------------------------------------------------------------

COMMON_CONFIG = dict(
    vocab_size=SPM_VOCAB_SIZE + 1,  # room for [MASK]
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    hidden_act="gelu",
    layer_norm_eps=1e-7,
    max_position_embeddings=512,
    pooler_hidden_size=32,
    pooler_hidden_act="gelu",
    pooler_dropout=0,
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    initializer_range=0.2,
    pad_token_id=0,
)

V3_CONFIG = dict(
    COMMON_CONFIG,
    relative_attention=True,
    position_buckets=256,
    max_relative_positions=-1,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    pos_att_type=["p2c", "c2p"],
    position_biased_input=False,
    type_vocab_size=0,
)

V2_CONFIG = dict(
    COMMON_CONFIG,
    relative_attention=True,
    position_buckets=-1,
    max_relative_positions=16,
    norm_rel_ebd="none",
    share_att_key=False,
    pos_att_type=["c2p", "p2c"],
    position_biased_input=True,
    type_vocab_size=2,
    embedding_size=24,
)

# DeBERTa-v2-xlarge/xxlarge style: v3-like attention plus the convolution beside layer 0
# (`encoder.conv`), here with 2 groups and GELU (the hub configs use 1 group, `conv_act="gelu"`).
XLARGE_CONV_CONFIG = dict(V3_CONFIG, conv_kernel_size=3, conv_groups=2, conv_act="gelu")


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Add N(0, PERTURB_STD) noise to every LayerNorm weight/bias and every other bias."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, module in sorted(model.named_modules(), key=lambda kv: kv[0]):
            params = []
            if isinstance(module, torch.nn.LayerNorm):
                params = [module.weight, module.bias]
            elif getattr(module, "bias", None) is not None and isinstance(module.bias, torch.nn.Parameter):
                params = [module.bias]
            for p in params:
                if p is None:
                    continue
                p.add_(torch.randn(p.shape, generator=gen) * PERTURB_STD)


def build_model(cls, config_kwargs: dict, num_labels: int, seed: int):
    config = DebertaV2Config(**config_kwargs, num_labels=num_labels)
    torch.manual_seed(seed)
    model = cls(config)
    perturb(model, seed + 100_000)
    model.eval()
    return model


def save_model(model, directory: Path, spm_path: Path, safe: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for stale in ("model.safetensors", "pytorch_model.bin"):
        if (directory / stale).exists():
            (directory / stale).unlink()
    model.save_pretrained(str(directory), safe_serialization=safe)
    shutil.copyfile(spm_path, directory / "spm.model")


def make_models(out: Path, spm_path: Path) -> dict:
    models_dir = out / "models"
    v3 = build_model(DebertaV2ForSequenceClassification, V3_CONFIG, 3, SEED_V3)
    v2 = build_model(DebertaV2ForSequenceClassification, V2_CONFIG, 2, SEED_V2)
    v3_reg = build_model(DebertaV2ForSequenceClassification, V3_CONFIG, 1, SEED_V3_REGRESSION)
    v3_qa = build_model(DebertaV2ForQuestionAnswering, V3_CONFIG, 2, SEED_V3_QA)
    conv = build_model(DebertaV2ForSequenceClassification, XLARGE_CONV_CONFIG, 2, SEED_XLARGE_CONV)

    save_model(v3, models_dir / "v3", spm_path)
    save_model(v2, models_dir / "v2", spm_path)
    save_model(v3_reg, models_dir / "v3_regression", spm_path)
    save_model(v3_qa, models_dir / "v3_qa", spm_path)
    save_model(v3, models_dir / "v3_bin", spm_path, safe=False)
    save_model(v3.deberta, models_dir / "v3_backbone", spm_path)
    save_model(conv, models_dir / "v2_conv", spm_path)
    return {"v3": v3, "v2": v2, "v3_regression": v3_reg, "v3_qa": v3_qa, "v2_conv": conv}


# --------------------------------------------------------------------------------------
# 4. model oracles
# --------------------------------------------------------------------------------------


def random_batch(lengths: list[int], pad_to: int, seed: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of random ordinary ids (4..vocab-1), [CLS] first, [SEP] last."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.zeros(len(lengths), pad_to, dtype=torch.int64)
    mask = torch.zeros(len(lengths), pad_to, dtype=torch.int64)
    for i, n in enumerate(lengths):
        ids[i, 0] = 1
        ids[i, 1 : n - 1] = torch.randint(4, SPM_VOCAB_SIZE, (n - 2,), generator=gen)
        ids[i, n - 1] = 2
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


V2_PAIRS = [
    (
        "A woman is riding a horse along the beach at sunset.",
        "The woman is not riding a horse; she is walking a dog.",
    ),
    (
        "The engineer explained that the bridge could expand and contract with the temperature.",
        "Unfortunately, nobody in the audience understood why the old bridge needed repairs.",
    ),
    ("Hello!", "Fine, thanks."),
]


def v2_pair_batch(tok) -> dict[str, torch.Tensor]:
    a = [p[0] for p in V2_PAIRS]
    b = [p[1] for p in V2_PAIRS]
    enc = tok(a, b, padding=True, return_tensors="pt")
    lengths = enc["attention_mask"].sum(dim=1).tolist()
    assert max(lengths) > 16 >= min(lengths), lengths  # both sides of max_relative_positions
    return {k: enc[k].to(torch.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def forward(model, inputs: dict[str, torch.Tensor]):
    return model(**inputs, output_hidden_states=True, return_dict=True)


def hidden_state_tensors(outputs) -> dict[str, torch.Tensor]:
    """last_hidden_state, plus the embedding output and every layer's output but the last
    (hidden_states_0 .. hidden_states_{L-1}) to help locate a mismatch."""
    hs = outputs.hidden_states
    tensors = {"last_hidden_state": hs[-1]}
    for i, h in enumerate(hs[:-1]):
        tensors[f"hidden_states_{i}"] = h
    return tensors


def classification_oracle(model, inputs: dict[str, torch.Tensor], path: Path) -> None:
    with torch.no_grad():
        out = forward(model, inputs)
    save_tensors(path, {**inputs, "logits": out.logits, **hidden_state_tensors(out)})


def qa_oracle(model, inputs: dict[str, torch.Tensor], path: Path) -> None:
    with torch.no_grad():
        out = forward(model, inputs)
    save_tensors(
        path,
        {
            **inputs,
            "start_logits": out.start_logits,
            "end_logits": out.end_logits,
            **hidden_state_tensors(out),
        },
    )


def grad_oracle(model, inputs: dict[str, torch.Tensor], path: Path) -> None:
    model.eval()
    model.zero_grad(set_to_none=True)
    out = model(**inputs, return_dict=True)
    loss = out.logits.sum()
    loss.backward()
    params = dict(model.named_parameters())
    q = params["deberta.encoder.layer.0.attention.self.query_proj.weight"]
    c = params["classifier.weight"]
    conv = params.get("deberta.encoder.conv.conv.weight")
    save_tensors(
        path,
        {
            **inputs,
            "logits": out.logits,
            "loss": loss.reshape(()),
            "grad_query_weight": q.grad,
            "grad_classifier_weight": c.grad,
            **({"grad_conv_weight": conv.grad} if conv is not None else {}),
        },
    )
    model.zero_grad(set_to_none=True)


def make_model_oracles(out: Path, models: dict, tok) -> None:
    oracle = out / "oracle"
    batch = random_batch([5, 17, 33, 40], 40, SEED_V3_BATCH)
    long = random_batch([300], 300, SEED_V3_LONG)
    pairs = v2_pair_batch(tok)

    classification_oracle(models["v3"], batch, oracle / "v3_batch.safetensors")
    classification_oracle(models["v3"], long, oracle / "v3_long.safetensors")
    classification_oracle(models["v2"], pairs, oracle / "v2_pairs.safetensors")
    classification_oracle(models["v3_regression"], batch, oracle / "v3_regression.safetensors")
    qa_oracle(models["v3_qa"], batch, oracle / "v3_qa.safetensors")
    grad_oracle(models["v3"], batch, oracle / "v3_grad.safetensors")
    grad_oracle(models["v2"], pairs, oracle / "v2_grad.safetensors")
    classification_oracle(models["v2_conv"], batch, oracle / "v2_conv_batch.safetensors")
    grad_oracle(models["v2_conv"], batch, oracle / "v2_conv_grad.safetensors")


# --------------------------------------------------------------------------------------
# 5. tokenizer oracle
# --------------------------------------------------------------------------------------

LONG_A = (
    "The engineer explained that the bridge could expand and contract with the temperature, "
    "so the joints were designed to move a little every day."
)
LONG_B = "Nobody in the small village believed that the old bridge would survive another winter."

# (name, text_a, text_b, max_len)
TOKENIZER_CASES = [
    ("plain", "The quick brown fox jumps over the lazy dog.", None, 32),
    ("plain_truncated", "The quick brown fox jumps over the lazy dog.", None, 8),
    ("pair", "A man is playing a guitar.", "Nobody is playing music.", 32),
    ("mixed_case", "THE END of the ROAD", "Breaking News: Local CAT elected MaYoR", 32),
    ("mixed_case_names", "iPhone, JavaScript and NASA", "UPPER lower MiXeD CaSe", 32),
    ("punctuation", "Wait... did you hear that?!", "Yes!!! (Someone) is knocking; at the door.", 40),
    ("quotes_apostrophes", "\"Stop,\" she said. Don't you think it's odd?", "We'd rather walk; they've left.", 40),
    ("symbols", "report_final_v2.txt --verbose #tag @user 5% $3 & <b>", None, 40),
    ("digits", "The invoice total was 1,250.75 dollars in 2019.", "Call 555-0199 at 9:30, room 101.", 40),
    ("multiple_spaces", "multiple    spaces   between    words", "two  spaces", 24),
    ("leading_trailing_ws", "   leading and trailing whitespace   ", "  second  ", 32),
    ("tabs_newlines", "Tab\tseparated\tvalues", "new\nline\r\nend", 24),
    ("accents", "Émile and Zoë visited the château; the jalapeño was hot.", "café crêpe naïve résumé façade", 48),
    ("accents_unseen", "Ångström, Dvořák, Łódź and Kraków", None, 32),
    ("combining_accent", "e\u0301cole and cafe\u0301", None, 16),
    ("fullwidth_nfkc", "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３", None, 24),
    ("chinese_only", "我喜欢机器学习", None, 16),
    ("chinese_single_in_text", "The word 中 appears here.", None, 16),
    ("chinese_adjacent", "abc中文def", None, 16),
    ("chinese_pair", "你好", "世界 and the world", 16),
    ("unknown_interleaved", "x中y文z 中 文", None, 16),
    ("emoji", "emoji 😀 test 😀😀😀 end", None, 24),
    ("emoji_adjacent", "good👍bad👎", None, 16),
    ("greek", "Greek letters αβγ and Ω here", None, 24),
    ("greek_mixed_run", "alphaαβγbeta δ-test", None, 24),
    ("empty_text_b", "Some text here", "", 16),
    ("null_text_b", "Some text here", None, 16),
    ("empty_text_a", "", None, 8),
    ("empty_a_with_b", "", "only the second sentence", 16),
    ("truncate_both_12", LONG_A, LONG_B, 12),
    ("truncate_both_16", LONG_B, LONG_A, 16),
    ("truncate_one_side_20", LONG_A, "Short answer.", 20),
    ("truncate_one_side_b_16", "Why?", LONG_B, 16),
    ("truncate_equal_lengths_odd_13", LONG_B, LONG_B, 13),
    ("truncate_single_12", LONG_A, None, 12),
    ("max_len_128", LONG_A, LONG_B, 128),
    ("mask_token_in_text", "The [MASK] sat on the mat.", None, 16),
]

TOKENS_TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Unbelievable, unforgettable, uncomfortable!",
    "Internationalization and localization",
    "  multiple   spaces  ",
    "Émile and Zoë visited the château.",
    "e\u0301cole",
    "我喜欢机器学习",
    "abc中文def",
    "emoji 😀😀 ok",
    "Greek αβγ word",
    "Version 1.2.0 costs $1,250.75 (5% off).",
    "THE END",
]


def make_tokenizer_oracle(out: Path, tok) -> None:
    rows = []
    names = set()
    for name, a, b, max_len in TOKENIZER_CASES:
        assert name not in names, name
        names.add(name)
        enc = tok(a, b, truncation="longest_first", max_length=max_len, padding="max_length")
        assert len(enc["input_ids"]) == max_len, (name, len(enc["input_ids"]))
        rows.append(
            {
                "name": name,
                "text_a": a,
                "text_b": b,
                "max_len": max_len,
                "input_ids": enc["input_ids"],
                "token_type_ids": enc["token_type_ids"],
                "attention_mask": enc["attention_mask"],
            }
        )
    write_jsonl(out / "tokenizer" / "cases.jsonl", rows)

    token_rows = []
    for text in TOKENS_TEXTS:
        pieces = tok.tokenize(text)
        token_rows.append({"text": text, "tokens": pieces, "ids": tok.convert_tokens_to_ids(pieces)})
    write_jsonl(out / "tokenizer" / "tokens.jsonl", token_rows)


# --------------------------------------------------------------------------------------
# 6. demo inputs
# --------------------------------------------------------------------------------------


def make_demo_inputs(out: Path, tok) -> None:
    rows = [
        {
            "text_a": "A man is playing a guitar on a crowded street corner.",
            "text_b": "Nobody is playing music on the street corner.",
        },
        {
            "text_a": "I loved the hotel; the staff were friendly and the room was spotless.",
            "text_b": "The hotel was a pleasant place to stay.",
        },
    ]
    for a, b, max_len in [
        ("The children are indoors watching a movie.", "Two children are building a sandcastle.", 24),
        ("What a disappointing film.", None, 12),
    ]:
        enc = tok(a, b, truncation="longest_first", max_length=max_len, padding="max_length")
        rows.append(
            {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "token_type_ids": enc["token_type_ids"],
            }
        )
    write_jsonl(out / "inputs" / "demo.jsonl", rows)


# --------------------------------------------------------------------------------------
# 7. README
# --------------------------------------------------------------------------------------


def config_summary(directory: Path) -> str:
    cfg = json.loads((directory / "config.json").read_text())
    keys = [
        "architectures",
        "vocab_size",
        "hidden_size",
        "embedding_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "hidden_act",
        "layer_norm_eps",
        "max_position_embeddings",
        "type_vocab_size",
        "relative_attention",
        "position_buckets",
        "max_relative_positions",
        "norm_rel_ebd",
        "share_att_key",
        "pos_att_type",
        "position_biased_input",
        "pooler_hidden_size",
        "pooler_hidden_act",
        "pooler_dropout",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "initializer_range",
        "conv_kernel_size",
        "conv_groups",
        "conv_act",
        "id2label",
    ]
    lines = []
    for k in keys:
        if k in cfg:
            lines.append(f"  - `{k}`: `{json.dumps(cfg[k])}`")
    return "\n".join(lines)


def make_readme(out: Path) -> None:
    models = out / "models"
    oracle = out / "oracle"
    backbone = tensor_names_and_shapes(models / "v3_backbone" / "model.safetensors")
    full = tensor_names_and_shapes(models / "v3" / "model.safetensors")
    full_v2 = tensor_names_and_shapes(models / "v2" / "model.safetensors")

    def model_section(name: str, what: str) -> str:
        d = models / name
        files = ", ".join(f"`{p.name}`" for p in sorted(d.iterdir()))
        return f"### `models/{name}`\n\n{what}\n\nFiles: {files}.\n\n{config_summary(d)}\n"

    oracle_lines = []
    for p in sorted(oracle.glob("*.safetensors")):
        oracle_lines.append(f"- `oracle/{p.name}`:")
        for k, dt, shape in tensor_names_and_shapes(p):
            oracle_lines.append(f"  - `{k}` {dt} {shape}")

    text = f"""# Test fixtures

Generated by `scripts/make_fixtures.py` (do not edit by hand). Regenerate with

    {COMMAND}

from the repository root, in the virtualenv of `scripts/requirements.txt` (torch 2.11.0,
transformers 4.57.6, sentencepiece 0.2.1, safetensors 0.6.2). The script is deterministic
(fixed seeds, `torch.use_deterministic_algorithms(True)`, one thread, fp32): running it twice
gives byte-identical files. All models are tiny and random; every oracle was computed by
HF transformers in `eval()` mode (dropout off), on CPU.

## Tokenizer

- `spm.model`: sentencepiece unigram model trained on `scripts/corpus.txt` (original text written
  for this project), `vocab_size={SPM_VOCAB_SIZE}`, `character_coverage=1.0`, `byte_fallback=False`,
  default `nmt_nfkc` normalisation, one thread. Ids 0-3 are `[PAD]`, `[CLS]`, `[SEP]`, `[UNK]`.
  HF `DebertaV2Tokenizer(vocab_file=spm.model)` appends `[MASK]` at id {SPM_VOCAB_SIZE} (= sentencepiece vocab
  size), so every model config has `vocab_size={SPM_VOCAB_SIZE + 1}`.
- `tokenizer/cases.jsonl`: one case per line, `{{"name", "text_a", "text_b" (string or null), "max_len",
  "input_ids", "token_type_ids", "attention_mask"}}`, computed with HF's slow `DebertaV2Tokenizer`:
  `tok(text_a, text_b, truncation="longest_first", max_length=max_len, padding="max_length")`.
- `tokenizer/tokens.jsonl`: `{{"text", "tokens", "ids"}}` with `tok.tokenize(text)` and
  `tok.convert_tokens_to_ids(tokens)`.

HF behaviour worth knowing: a run of consecutive characters that are not in the vocabulary
(e.g. `中文`, `😀😀😀`, `αβγ`) is ONE sentencepiece piece and therefore ONE `[UNK]` (id 3), not one per
character or per UTF-8 byte; an unknown character after a space also gets a lone `▁` piece before it.
An empty `text_b` (`""`) still adds its `[SEP]` (with token type 1); `null` does not.
`longest_first` truncation of a pair (HF slow tokenizer, `truncate_sequences` in 4.57): with `r` tokens
to remove, `d = min(|len_a - len_b|, r)`; if `len_a > len_b`, `text_a` loses `d + (r-d)//2` and `text_b`
loses `(r-d) - (r-d)//2`; otherwise `text_a` loses `(r-d)//2` and `text_b` the rest (so an odd remainder
always comes off `text_b`). Tokens are removed from the right.
A literal `[MASK]` in the text is split out as a special token (id 1000) by HF (case `mask_token_in_text`).
Characters absent from `corpus.txt` are unknown too, e.g. `$`, `&`, `<`, `>`, `Å`, `ř`, `ł`.

## Models

Weights: HF init with `initializer_range=0.2`, then N(0, {PERTURB_STD}) noise added to every bias and
every LayerNorm weight and bias. Saved with `save_pretrained`; each directory also holds a copy of `spm.model`.
HF omits `id2label`/`label2id` from `config.json` when there are 2 labels (its default), as in `models/v2`
and `models/v3_qa`; a reader should then assume 2 labels. `models/v3_backbone/config.json` keeps the
3-label `id2label` of `models/v3` (HF copies the whole config).

{model_section("v3", "`DebertaV2ForSequenceClassification`, 3 labels, DeBERTa-v3 style (log-bucketed relative positions, shared attention keys, LayerNorm on relative embeddings, no absolute positions, no token types).")}
{model_section("v2", "`DebertaV2ForSequenceClassification`, 2 labels, DeBERTa-v2 style (no buckets, `max_relative_positions=16`, separate pos_key/pos_query projections, absolute positions, 2 token types, `embedding_size=24` so `embeddings.embed_proj` exists).")}
{model_section("v3_regression", "`DebertaV2ForSequenceClassification` with 1 label (regression), v3 config, different seed.")}
{model_section("v3_qa", "`DebertaV2ForQuestionAnswering` (2 outputs: start, end), v3 config, different seed.")}
{model_section("v2_conv", "`DebertaV2ForSequenceClassification`, 2 labels, the v3 attention plus DeBERTa-v2-xlarge's convolution beside layer 0 (`conv_kernel_size=3`, `conv_groups=2`, `conv_act=gelu`: `encoder.conv.conv` and `encoder.conv.LayerNorm`).")}
{model_section("v3_bin", "The same weights as `models/v3`, saved with `safe_serialization=False` (`pytorch_model.bin`).")}
{model_section("v3_backbone", "Only the backbone of `models/v3` (`model.deberta`, a `DebertaV2Model`) saved with `save_pretrained`.")}
### Tensor names

HF writes the backbone-only checkpoint WITHOUT the `deberta.` prefix (e.g. `embeddings.word_embeddings.weight`,
`encoder.layer.0.attention.self.query_proj.weight`), while the full models use `deberta.`-prefixed names plus their
head (`pooler.dense.*`, `classifier.*` or `qa_outputs.*`). Loading code has to accept both.
`models/v3_backbone/model.safetensors`:

{chr(10).join(f"- `{k}` {dt} {shape}" for k, dt, shape in backbone)}

`models/v3/model.safetensors`:

{chr(10).join(f"- `{k}` {dt} {shape}" for k, dt, shape in full)}

`models/v2/model.safetensors` (note `embeddings.embed_proj`, `embeddings.position_embeddings`,
`embeddings.token_type_embeddings`, per-layer `pos_key_proj`/`pos_query_proj`, no `encoder.LayerNorm`):

{chr(10).join(f"- `{k}` {dt} {shape}" for k, dt, shape in full_v2)}

## Model oracles (`oracle/`)

Inputs are stored next to outputs (ints as int64, floats as float32). `hidden_states_0` is the embedding
output (after LayerNorm and the mask multiply), `hidden_states_i` the output of layer i for i < L, and
`last_hidden_state` the output of the last layer (L = 2); padded positions are included as HF computes them.

- `v3_batch`: `models/v3` on 4 random-id sequences with 5, 17, 33, 40 real tokens (`[CLS]` first, `[SEP]` last),
  right-padded with 0 to 40; `token_type_ids` all zero.
- `v3_long`: `models/v3` on one random-id sequence of 300 tokens (exercises log buckets beyond 128).
- `v2_pairs`: `models/v2` on 3 sentence pairs tokenized by HF (`padding=True`, right-padded), two longer
  and one shorter than `max_relative_positions=16`, token types 0/1.
- `v3_regression`: `models/v3_regression` on the `v3_batch` inputs.
- `v3_qa`: `models/v3_qa` on the `v3_batch` inputs.
- `v2_conv_batch` / `v2_conv_grad`: `models/v2_conv` on the `v3_batch` inputs (the padded positions
  exercise the convolution's masking), logits and hidden states / gradients as `v3_grad`, plus
  `grad_conv_weight`, the gradient of `deberta.encoder.conv.conv.weight`.
- `v3_grad` / `v2_grad`: `models/v3` on the `v3_batch` inputs / `models/v2` on the `v2_pairs` inputs, eval mode,
  `loss = logits.sum()`, backward; `grad_query_weight` is the gradient of
  `deberta.encoder.layer.0.attention.self.query_proj.weight`, `grad_classifier_weight` that of `classifier.weight`.

{chr(10).join(oracle_lines)}

## Demo inputs

`inputs/demo.jsonl`: 4 lines, two `{{"text_a", "text_b"}}` and two already tokenized
`{{"input_ids", "attention_mask", "token_type_ids"}}`.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------------------


def manifest(out: Path) -> list[tuple[str, int, str]]:
    rows = []
    for p in sorted(out.rglob("*")):
        if p.is_file():
            rows.append((str(p.relative_to(out)), p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures", help="output directory")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    setup_torch()
    spm_path = make_spm(out)
    tok = load_tokenizer(spm_path)
    models = make_models(out, spm_path)
    make_model_oracles(out, models, tok)
    make_tokenizer_oracle(out, tok)
    make_demo_inputs(out, tok)
    make_readme(out)

    total = 0
    for name, size, digest in manifest(out):
        total += size
        print(f"{digest}  {size:>9}  {name}")
    print(f"total {total} bytes")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
