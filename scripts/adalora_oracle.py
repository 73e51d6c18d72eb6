#!/usr/bin/env python3
"""Record what huggingface/peft's AdaLoRA does, as a fixture for tests/adalora_peft.rs.

A tiny torch module with three linear layers (8->6, 6->6, 6->4) is wrapped by peft's
`get_peft_model` with an `AdaLoraConfig`. For every step of the schedule the script writes a
recorded random value into every lora_A / lora_B / lora_E parameter and a recorded random
gradient into its `.grad`, then calls peft's own `AdaLoraModel.update_and_allocate(step)` and
records the result: lora_E after masking, the budget of `RankAllocator.budget_schedule`, the rank
pattern, and the triplet scores and k that `mask_to_budget` hands to `torch.kthvalue` (captured
by wrapping `torch.kthvalue`). It also records, for every step, the orthogonal regularisation that
`AdaLoraModel.forward` adds to the loss, and, after the last step, each `SVDLinear`'s update for
a fixed input (the base layers are zero, so the layer output is the update itself) and its
`get_delta_weight`.

Usage (from the repository root):

    .venv/bin/python scripts/adalora_oracle.py --out tests/fixtures/adalora

Deterministic (fixed seeds, one thread, CPU, fp32): two runs give byte-identical files; the
script prints their sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import types
from pathlib import Path

import torch
from peft import AdaLoraConfig, get_peft_model
from safetensors.torch import save_file

SEED = 3001
MODULES = [("l1", 8, 6), ("l2", 6, 6), ("l3", 6, 4)]  # name, d_in, d_out, in model order
CONFIG = dict(
    init_r=4,
    target_r=2,
    tinit=2,
    tfinal=4,
    deltaT=2,
    total_step=16,
    beta1=0.85,
    beta2=0.9,  # differs from beta1 so that swapping them fails the test
    lora_alpha=8,
    orth_reg_weight=0.3,
    lora_dropout=0.0,
)
BATCH = 5  # rows of the fixed input of the forward check
ROLES = ("lora_A", "lora_B", "lora_E")


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        for name, d_in, d_out in MODULES:
            setattr(self, name, torch.nn.Linear(d_in, d_out))

    def forward(self, x: torch.Tensor):
        for name, _, _ in MODULES:
            x = getattr(self, name)(x)
        # AdaLoraModel.forward only adds its regulariser to an output that has a tensor `loss`.
        return types.SimpleNamespace(loss=torch.zeros(()), out=x)


def shapes(d_in: int, d_out: int, r: int) -> dict[str, tuple[int, ...]]:
    return {"lora_A": (r, d_in), "lora_B": (d_out, r), "lora_E": (r, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(SEED)

    base = Tiny()
    with torch.no_grad():  # zero base layers: a layer's output is then exactly its update
        for p in base.parameters():
            p.zero_()
    peft_cfg = AdaLoraConfig(target_modules=[m[0] for m in MODULES], **CONFIG)
    model = get_peft_model(base, peft_cfg)
    ada = model.base_model  # AdaLoraModel
    inner = ada.model  # Tiny, with SVDLinear layers
    layers = {name: getattr(inner, name) for name, _, _ in MODULES}
    params = {
        (name, role): getattr(layers[name], role)["default"] for name, _, _ in MODULES for role in ROLES
    }
    cfg = ada.peft_config["default"]
    alloc = ada.rankallocator
    r, T, tfinal = CONFIG["init_r"], CONFIG["total_step"], CONFIG["tfinal"]

    # Capture what mask_to_budget ranks: the concatenated triplet scores and k.
    captured: list[tuple[torch.Tensor, int]] = []
    kthvalue = torch.kthvalue

    def spy(input, k, *a, **kw):  # noqa: A002
        captured.append((input.detach().clone(), int(k)))
        return kthvalue(input, k, *a, **kw)

    torch.kthvalue = spy

    gen = torch.Generator().manual_seed(SEED + 1)
    rec: dict[str, list[torch.Tensor]] = {}
    steps = []
    for step in range(T):
        with torch.no_grad():
            for name, d_in, d_out in MODULES:
                for role, shape in shapes(d_in, d_out, r).items():
                    p = params[(name, role)]
                    # At odd steps lora_E keeps its value from the last step (masked after a mask
                    # step, as in training), so masked triplets have exactly zero E-importance.
                    if not (role == "lora_E" and step % 2 == 1):
                        p.copy_(torch.randn(shape, generator=gen))
                    p.grad = torch.randn(shape, generator=gen)
                    rec.setdefault(f"{name}.{role}.value", []).append(p.detach().clone())
                    rec.setdefault(f"{name}.{role}.grad", []).append(p.grad.detach().clone())
        # The regulariser AdaLoraModel.forward adds (the model's own loss is zero).
        with torch.no_grad():
            reg = ada(torch.zeros(1, MODULES[0][1])).loss.item()

        budget, mask_ind = alloc.budget_schedule(step)
        n_captured = len(captured)
        ada.update_and_allocate(step)
        if step < T - tfinal:
            phase = "budget" if mask_ind else "none"
        elif step == T - tfinal:
            phase = "force"
        else:
            phase = "pattern"
        scores = torch.zeros(len(MODULES) * r)
        k, threshold = None, None
        if len(captured) > n_captured:
            assert len(captured) == n_captured + 1
            scores, k = captured[-1]
            threshold = kthvalue(scores, k)[0].item()
        rec.setdefault("scores", []).append(scores)
        for name, _, _ in MODULES:
            rec.setdefault(f"{name}.lora_E.masked", []).append(params[(name, "lora_E")].detach().clone())
        pattern = None
        if cfg.rank_pattern:
            pattern = {name: list(cfg.rank_pattern[f"{name}.lora_E.default"]) for name, _, _ in MODULES}
        steps.append(
            dict(step=step, budget=budget, phase=phase, k=k, threshold=threshold, rank_pattern=pattern, reg=reg)
        )

    torch.kthvalue = kthvalue
    tensors = {name: torch.stack(ts) for name, ts in rec.items()}
    forward = {}
    with torch.no_grad():
        for name, d_in, _ in MODULES:
            x = torch.randn(BATCH, d_in, generator=gen)
            tensors[f"{name}.forward.x"] = x
            tensors[f"{name}.forward.delta"] = layers[name](x)
            tensors[f"{name}.forward.delta_weight"] = layers[name].get_delta_weight("default")
            forward[name] = dict(scaling=layers[name].scaling["default"], ranknum=layers[name].ranknum["default"].item())

    meta = dict(
        generated_by="scripts/adalora_oracle.py",
        peft_version=__import__("peft").__version__,
        torch_version=torch.__version__.split("+")[0],
        config=CONFIG,
        modules=[dict(name=n, d_in=i, d_out=o) for n, i, o in MODULES],
        init_bgt=alloc.init_bgt,
        target_bgt=alloc.target_bgt,
        steps=steps,
        forward=forward,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    out = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in tensors.items()}
    save_file(out, str(args.out / "sequence.safetensors"))
    with open(args.out / "sequence.json", "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(meta, indent=1) + "\n")
    for fname in ("sequence.safetensors", "sequence.json"):
        data = (args.out / fname).read_bytes()
        print(f"{hashlib.sha256(data).hexdigest()}  {len(data):7d}  {args.out / fname}")


if __name__ == "__main__":
    main()
