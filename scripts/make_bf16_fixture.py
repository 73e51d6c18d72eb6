#!/usr/bin/env python3
"""Generate the HF reference for bf16 autocast on CPU (tests/fixtures/oracle/v3_bf16.safetensors).

Loads `tests/fixtures/models/v3` (DebertaV2ForSequenceClassification, 3 labels) in float32, runs
it on the `v3_batch` inputs once in plain fp32 and once under
`torch.autocast("cpu", dtype=torch.bfloat16)` (weights stay float32, autocast casts), for the
logits (no_grad) and for HF's `labels=` cross-entropy loss with labels [0, 1, 2, 1] (grad on).

Usage (from the repository root):

    .venv/bin/python scripts/make_bf16_fixture.py

Deterministic (one thread, CPU, torch.use_deterministic_algorithms(True)): two runs give
byte-identical files; the script prints the sha256 of the output.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import DebertaV2ForSequenceClassification
from transformers.utils import logging as hf_logging

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests/fixtures/models/v3"
BATCH = ROOT / "tests/fixtures/oracle/v3_batch.safetensors"
OUT = ROOT / "tests/fixtures/oracle/v3_bf16.safetensors"
LABELS = [0, 1, 2, 1]
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def main() -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    hf_logging.set_verbosity_error()

    model = DebertaV2ForSequenceClassification.from_pretrained(MODEL, torch_dtype=torch.float32)
    model.eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())

    batch = load_file(str(BATCH))
    inputs = {k: batch[k] for k in INPUT_NAMES}
    labels = torch.tensor(LABELS, dtype=torch.int64)

    # logits, no grad
    with torch.no_grad():
        logits_fp32 = model(**inputs, return_dict=True).logits
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits_bf16_raw = model(**inputs, return_dict=True).logits
    print(f"fp32 logits dtype:     {logits_fp32.dtype}")
    print(f"autocast logits dtype: {logits_bf16_raw.dtype}")
    logits_bf16 = logits_bf16_raw.float()

    # HF labels= loss, grad on
    model.zero_grad(set_to_none=True)
    out_fp32 = model(**inputs, labels=labels, return_dict=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16 = model(**inputs, labels=labels, return_dict=True)
    assert out_fp32.loss.requires_grad and out_bf16.loss.requires_grad
    print(f"autocast loss dtype:   {out_bf16.loss.dtype} (logits {out_bf16.logits.dtype})")
    loss_fp32 = out_fp32.loss.detach().float().reshape(1)
    loss_bf16 = out_bf16.loss.detach().float().reshape(1)

    ref_diff = (logits_fp32 - batch["logits"]).abs().max().item()
    assert ref_diff <= 1e-6, f"fp32 logits differ from v3_batch logits by {ref_diff}"
    max_abs = (logits_bf16 - logits_fp32).abs().max().reshape(1).float()

    print(f"max |fp32 - v3_batch.logits| = {ref_diff:.3e}")
    print(f"max |bf16 - fp32| logits     = {max_abs.item():.6e}")
    print(f"loss_fp32 = {loss_fp32.item():.9g}")
    print(f"loss_bf16 = {loss_bf16.item():.9g}  (|diff| = {abs(loss_bf16 - loss_fp32).item():.3e})")

    tensors = {
        "logits_bf16": logits_bf16,
        "logits_fp32": logits_fp32,
        "loss_bf16": loss_bf16,
        "loss_fp32": loss_fp32,
        "bf16_vs_fp32_max_abs": max_abs,
    }
    tensors = {k: v.detach().cpu().to(torch.float32).contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, str(OUT))
    for k, v in tensors.items():
        print(f"  {k}: {v.dtype} {list(v.shape)}")
    print(f"wrote {OUT.relative_to(ROOT)} sha256={hashlib.sha256(OUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
