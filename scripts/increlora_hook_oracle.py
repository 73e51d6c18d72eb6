#!/usr/bin/env python3
"""Record the importance score that IncreLoRA's backward hook leaves on each adapted module of a
DeBERTa-v2 model, as a fixture for triadapt's IncreLoRA scoring.

What is re-implemented (from the semantics of IncreLoRA's `loralib/increlora.py`, written anew
here, not copied): every adapted linear keeps its frozen weight and adds `x @ W.T`, where the dense
update

    W = cat(B) @ (cat(A) * cat(E)) * scaling / (ranknum + 1e-5)

is computed by a separate small module (the reference's `loraW`). A full backward hook
(`register_full_backward_hook`) on that module sets, every time it fires,

    score = sum(|W.abs() * dL/dW|) / sqrt(W.numel())

where dL/dW is `grad_output[0]`, the gradient w.r.t. the dense W of that call, and W is recomputed
from the current A, E, B in the hook. The hook overwrites the score on every firing.

What the fixture pins down: with `share_att_key: true`, HF's `DisentangledSelfAttention` calls
`query_proj` and `key_proj` a second time, on the relative-position embeddings. Each call builds
its own W, so the hook fires twice for those two modules, and PyTorch fires the hooks in reverse
call order: the score that remains after backward (`M.score`, the reference semantics) is the one
of the FIRST forward call (the hidden-states call); the score of the last forward call (the
relative-embedding call, which fires first) is saved as `M.score_last_call`. The script asserts
that the two differ by more than 1e-3 relative, so a test that used the wrong call would fail.
It also checks, independently of the hook, that `M.score` equals the score computed from the
gradient of the hidden-states call's W (via `retain_grad`), and `M.score_last_call` the one of the
last call's W.

Setup: tests/fixtures/models/v3 (DebertaV2ForSequenceClassification, 2 layers, hidden 32,
3 labels), fp32, CPU, `eval()` (dropout off; the wrapper here never merges the adapter, unlike the
reference's `SVDLinear.eval`, so the adapter is in the forward). Adapted: query_proj, key_proj,
value_proj, attention.output.dense, intermediate.dense, output.dense of every layer (12 modules),
rank 3, A, B ~ N(0, 0.02^2), E ~ N(0, 1), scaling = lora_alpha = 16, ranknum = 3. One batch
(3 x 12, lengths 12, 9, 6), HF's cross-entropy loss via `labels=`, one backward.

Usage (from the repository root):

    .venv/bin/python scripts/increlora_hook_oracle.py --out tests/fixtures/increlora

Deterministic (fixed seed, deterministic algorithms, one thread, CPU, fp32): two runs give
byte-identical files; the script prints their sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import DebertaV2ForSequenceClassification

MODEL = "tests/fixtures/models/v3"
SEED = 4242
RANK = 3
LORA_ALPHA = 16.0
RANKNUM = 3.0
BATCH, SEQ = 3, 12
LENGTHS = [12, 9, 6]
LABELS = [0, 2, 1]
ID_LOW, ID_HIGH = 4, 1000
ADAPTED = [
    "attention.self.query_proj",
    "attention.self.key_proj",
    "attention.self.value_proj",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
]
TWICE = ("attention.self.query_proj", "attention.self.key_proj")


class DenseUpdate(torch.nn.Module):
    """The dense adapter matrix (the role of the reference's `loraW`)."""

    def forward(self, A, E, B, scaling, ranknum):
        b = torch.cat(list(B), 1)  # out x r
        a = torch.cat(list(A), 0)  # r x in
        e = torch.cat(list(E), 0)  # r x 1
        return b @ (a * e) * scaling / (ranknum + 1e-5)


class IncreLinear(torch.nn.Module):
    """A frozen linear plus the IncreLoRA update, with the reference's hook on the update."""

    def __init__(self, base: torch.nn.Linear, gen: torch.Generator) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        d_out, d_in = base.weight.shape
        a = torch.randn(RANK, d_in, generator=gen, dtype=torch.float32) * 0.02
        e = torch.randn(RANK, 1, generator=gen, dtype=torch.float32)
        b = torch.randn(d_out, RANK, generator=gen, dtype=torch.float32) * 0.02
        self.lora_A = torch.nn.ParameterList([torch.nn.Parameter(a)])
        self.lora_E = torch.nn.ParameterList([torch.nn.Parameter(e)])
        self.lora_B = torch.nn.ParameterList([torch.nn.Parameter(b)])
        self.ranknum = torch.nn.Parameter(torch.full((1,), RANKNUM, dtype=torch.float32), requires_grad=False)
        self.scaling = LORA_ALPHA
        self.W = DenseUpdate()
        self.W.register_full_backward_hook(self._hook)
        self.score = None  # what the reference keeps: overwritten on every firing
        self.fired: list[float] = []  # every firing's score, in firing order
        self.call_W: list[torch.Tensor] = []  # each forward call's W, for the independent check

    def dense(self) -> torch.Tensor:
        return self.W(self.lora_A, self.lora_E, self.lora_B, self.scaling, self.ranknum)

    def _hook(self, module, grad_input, grad_output):
        g = grad_output[0]
        with torch.no_grad():
            w = self.dense().abs()
            s = torch.sum((w * g).abs()) / math.sqrt(w.numel())
        self.score = s
        self.fired.append(s.item())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        w = self.dense()
        w.retain_grad()
        self.call_W.append(w)
        return out + x @ w.T


def score_of(w: torch.Tensor) -> float:
    with torch.no_grad():
        return (torch.sum((w.detach().abs() * w.grad).abs()) / math.sqrt(w.numel())).item()


def run() -> tuple[dict[str, torch.Tensor], dict]:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    # A, E, B reach the hooked module inside ParameterLists (as in the reference), so no tensor input
    # of it requires grad and PyTorch fires the hook from the output side and warns about it; expected.
    warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")

    model = DebertaV2ForSequenceClassification.from_pretrained(MODEL, dtype=torch.float32)
    model = model.float().eval()
    assert model.config.share_att_key, "the fixture needs share_att_key: true"
    for p in model.parameters():
        p.requires_grad_(False)

    gen = torch.Generator().manual_seed(SEED)
    names: list[str] = []
    wrappers: dict[str, IncreLinear] = {}
    for li, layer in enumerate(model.deberta.encoder.layer):
        for rel in ADAPTED:
            parent_path, attr = rel.rsplit(".", 1)
            parent = layer.get_submodule(parent_path)
            wrapper = IncreLinear(getattr(parent, attr), gen)
            setattr(parent, attr, wrapper)
            name = f"deberta.encoder.layer.{li}.{rel}"
            names.append(name)
            wrappers[name] = wrapper

    input_ids = torch.randint(ID_LOW, ID_HIGH, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    attention_mask = torch.zeros(BATCH, SEQ, dtype=torch.int64)
    for i, n in enumerate(LENGTHS):
        attention_mask[i, :n] = 1
    input_ids = input_ids * attention_mask + model.config.pad_token_id * (1 - attention_mask)
    token_type_ids = torch.zeros(BATCH, SEQ, dtype=torch.int64)
    labels = torch.tensor(LABELS, dtype=torch.int64)

    out = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels)
    out.loss.backward()

    tensors: dict[str, torch.Tensor] = {
        "input_ids": input_ids.contiguous(),
        "attention_mask": attention_mask.contiguous(),
        "token_type_ids": token_type_ids.contiguous(),
        "labels": labels.contiguous(),
    }
    firings: dict[str, int] = {}
    fired_scores: dict[str, list[float]] = {}
    for name in names:
        w = wrappers[name]
        n_calls = len(w.call_W)
        expected = 2 if name.endswith(TWICE) else 1
        assert n_calls == expected, f"{name}: {n_calls} forward calls, expected {expected}"
        assert len(w.fired) == expected, f"{name}: hook fired {len(w.fired)} times, expected {expected}"
        score = float(w.score.item())  # what remains: the last firing
        assert score == w.fired[-1]
        score_last_call = w.fired[0]  # the last forward call's firing comes first
        # Independent of the hook: the score from each call's own dL/dW.
        per_call = [score_of(cw) for cw in w.call_W]
        assert math.isclose(score, per_call[0], rel_tol=1e-6), (name, score, per_call)
        assert math.isclose(score_last_call, per_call[-1], rel_tol=1e-6), (name, score_last_call, per_call)
        if expected == 2:
            rel_diff = abs(score - score_last_call) / max(abs(score), abs(score_last_call))
            assert rel_diff > 1e-3, f"{name}: score {score} and score_last_call {score_last_call} too close"
        else:
            assert score == score_last_call
        assert score > 0.0
        firings[name] = len(w.fired)
        fired_scores[name] = list(w.fired)
        tensors[f"{name}.lora_A"] = w.lora_A[0].detach().clone().contiguous()
        tensors[f"{name}.lora_E"] = w.lora_E[0].detach().clone().contiguous()
        tensors[f"{name}.lora_B"] = w.lora_B[0].detach().clone().contiguous()
        tensors[f"{name}.score"] = torch.tensor([score], dtype=torch.float64)
        tensors[f"{name}.score_last_call"] = torch.tensor([score_last_call], dtype=torch.float64)

    meta = {
        "model": MODEL,
        "lora_alpha": LORA_ALPHA,
        "ranknum": int(RANKNUM),
        "rank": RANK,
        "seed": SEED,
        "loss": float(out.loss.item()),
        "modules": names,
        "firings": firings,
        "scores_in_firing_order": fired_scores,
        "note": (
            "IncreLoRA hook semantics: W = B @ (A * E) * lora_alpha / (ranknum + 1e-5) (float32, ranknum a "
            "1-element float32 tensor) is added as x @ W.T; a full backward hook on the module computing W sets "
            "score = sum(|W.abs() * dL/dW|) / sqrt(W.numel()) on every firing. With share_att_key, query_proj and "
            "key_proj are called twice (hidden states, then relative embeddings); hooks fire in reverse call order, "
            "so M.score (what remains, the reference semantics) is the hidden-states call's score and "
            "M.score_last_call the relative-embedding call's (the first firing). Scores were computed in float32 "
            "and stored as float64. Model in eval() (dropout off), HF cross-entropy loss via labels, one backward. "
            "Padded positions of input_ids hold pad_token_id 0."
        ),
    }
    return tensors, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("tests/fixtures/increlora"))
    args = ap.parse_args()
    tensors, meta = run()
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out / "hook_scores.safetensors"))
    with open(args.out / "hook_scores.json", "w") as f:
        f.write(json.dumps(meta, indent=1) + "\n")
    for name in meta["modules"]:
        s = tensors[f"{name}.score"].item()
        sl = tensors[f"{name}.score_last_call"].item()
        print(f"{name:52s} firings={meta['firings'][name]} score={s:.9e} score_last_call={sl:.9e}")
    print(f"loss={meta['loss']!r}")
    for fname in ("hook_scores.safetensors", "hook_scores.json"):
        data = (args.out / fname).read_bytes()
        print(f"{hashlib.sha256(data).hexdigest()}  {len(data):7d}  {args.out / fname}")


if __name__ == "__main__":
    main()
