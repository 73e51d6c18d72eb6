#!/usr/bin/env python3
"""The PEFT peer of `triadapt bench`: times training steps of HF transformers + peft on the same
randomly initialised DeBERTa-v3 shape, batch, sequence length and thread count, and prints one
JSON object with the same keys as `triadapt bench --json`.

Methods: `full` (every weight trains), `lora` (peft LoraConfig) and `adalora` (peft
AdaLoraConfig, `update_and_allocate(step)` after every optimizer step, timed as the rank
controller). Targets: the six per-layer matrices of every layer (never the pooler); the pooler
and classifier train in every method, as in `triadapt train`.

One step is what HF's Trainer does: forward in train mode (dropout as the config says), loss
(cross-entropy; peft's AdaLoRA adds its orthogonal regularisation inside forward: the models are
built with task_type SEQ_CLS, without which PEFT never adds it), backward,
`loss.item()`, gradient clipping to norm 1, AdamW step, linear schedule step, the rank
controller, `zero_grad(set_to_none=True)`. AdamW is torch's with `--optim fused` by default:
that is what transformers' Trainer picks with torch >= 2.8 (`adamw_torch_fused`); `forloop` is
torch's plain per-tensor implementation (the CPU default of `torch.optim.AdamW()`). `--adamw
legacy_hf` runs old HF transformers' per-tensor AdamW instead, as the paper's experiments do.

`--ops` also counts the ATen ops of each phase of a step with `triadapt bench --ops`'s rule
(scripts/op_count.py, torch.profiler's events) and adds ops_per_step, ops_by_phase and
ops_allocation_step; bf16 is then counted under CPU autocast.

Memory: the peak resident set (VmHWM) of this process, and the resident set just before the
model is built (so that the interpreter's and the imports' share can be told apart). On CUDA the
peak of torch's allocator is reported as well.

Usage (from the repository root):

    .venv/bin/python scripts/bench_peft.py --model-config small --method lora --batch 8 --seq 128 --steps 8 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch

SHAPES = {
    # microsoft/deberta-v3-base
    "base": dict(vocab_size=128100, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    # microsoft/deberta-v3-small: the base width with 6 layers
    "small": dict(vocab_size=128100, hidden_size=768, num_hidden_layers=6, num_attention_heads=12, intermediate_size=3072),
    # microsoft/deberta-v3-xsmall
    "xsmall": dict(vocab_size=128100, hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536),
    # the test fixture (tests/fixtures/models/v3)
    "tiny": dict(vocab_size=1001, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
}
COMMON = dict(
    hidden_act="gelu",
    hidden_dropout_prob=0.1,
    attention_probs_dropout_prob=0.1,
    max_position_embeddings=512,
    type_vocab_size=0,
    initializer_range=0.02,
    layer_norm_eps=1e-7,
    relative_attention=True,
    max_relative_positions=-1,
    position_buckets=256,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    pos_att_type=["p2c", "c2p"],
    position_biased_input=False,
    pad_token_id=0,
    pooler_dropout=0.0,
    pooler_hidden_act="gelu",
)
# The six per-layer matrices, never pooler.dense (a plain "dense" would also match the pooler).
TARGETS = r".*encoder\.layer\.\d+\.(attention\.self\.(query_proj|key_proj|value_proj)|attention\.output\.dense|intermediate\.dense|output\.dense)"


def memory_kb() -> dict:
    """VmRSS and VmHWM of this process in kB (Linux)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def percentile(sorted_values, q):
    """Linear-interpolation percentile of sorted values (numpy's default), q in [0, 1]."""
    if not sorted_values:
        return float("nan")
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def model_config(spec):
    """A DebertaV2Config of a named shape, or read from a config.json path (two labels)."""
    from transformers import DebertaV2Config

    if spec in SHAPES:
        return DebertaV2Config(**SHAPES[spec], **COMMON, num_labels=2)
    if os.path.isfile(spec):
        config = DebertaV2Config.from_json_file(spec)
        config.num_labels = 2
        return config
    raise SystemExit(f"--model-config {spec!r}: expected one of {', '.join(sorted(SHAPES))} or a config.json path")


class LegacyHfAdamW(torch.optim.Optimizer):
    """The AdamW of old HF transformers (removed from transformers 4.x), which the AdaLoRA and
    IncreLoRA harnesses and `adamw: legacy_hf` run: per tensor, the moments, denom = sqrt(v) +
    eps before bias correction, step size lr sqrt(1 - b2^t) / (1 - b1^t), then weight decay
    of the updated value (docs/method.md, "Optimizer")."""

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
                m.mul_(b1).add_(p.grad, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
                denom = v.sqrt().add_(group["eps"])
                size = group["lr"] * (1.0 - b2**t) ** 0.5 / (1.0 - b1**t)
                p.addcdiv_(m, denom, value=-size)
                if group["weight_decay"] > 0.0:
                    p.add_(p, alpha=-group["lr"] * group["weight_decay"])


def build(args, device, total_steps, delta_t):
    """The model of `args` with its method attached, AdamW and the linear schedule. AdaLoRA masks
    every `delta_t` steps."""
    from peft import AdaLoraConfig, LoraConfig, get_peft_model
    from transformers import DebertaV2ForSequenceClassification, get_linear_schedule_with_warmup

    torch.manual_seed(args.seed)
    config = model_config(args.model_config)
    model = DebertaV2ForSequenceClassification(config)
    n_adapted = 0
    # task_type: PEFT's sequence-classification wrapper, through which AdaLoRA adds its orthogonal
    # regulariser to the loss (without it the regulariser is silently never added).
    if args.method == "lora":
        pc = LoraConfig(task_type="SEQ_CLS", r=args.rank, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, target_modules=TARGETS, modules_to_save=["pooler", "classifier"])
        model = get_peft_model(model, pc)
    elif args.method == "adalora":
        init_r = max(args.rank * 3 // 2, args.rank)
        pc = AdaLoraConfig(task_type="SEQ_CLS", init_r=init_r, target_r=args.rank, tinit=0, tfinal=0, deltaT=delta_t, beta1=0.85, beta2=0.85, orth_reg_weight=args.orth_reg_weight,
                           total_step=total_steps, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, target_modules=TARGETS, modules_to_save=["pooler", "classifier"])
        model = get_peft_model(model, pc)
    if args.method != "full":
        n_adapted = sum(1 for n, _ in model.named_modules() if n.endswith(("query_proj", "key_proj", "value_proj", "dense")) and hasattr(_, "lora_A"))
    model.to(device)
    model.train()

    # HF Trainer's grouping: no weight decay on biases and LayerNorm weights.
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not (n.endswith("bias") or "LayerNorm" in n)]
    no_decay = [p for n, p in named if n.endswith("bias") or "LayerNorm" in n]
    params = [p for _, p in named]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    if args.adamw == "legacy_hf":
        opt = LegacyHfAdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    else:
        kw = {"fused": dict(fused=True), "foreach": dict(foreach=True), "forloop": dict(foreach=False)}[args.optim]
        opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, **kw)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=0, num_training_steps=total_steps)
    return config, model, params, opt, sched, n_adapted


def random_batch(args, config, device):
    g = torch.Generator().manual_seed(args.seed)
    input_ids = torch.randint(4, config.vocab_size, (args.batch, args.seq), generator=g).to(device)
    attention_mask = torch.ones(args.batch, args.seq, dtype=torch.long, device=device)
    labels = torch.randint(0, 2, (args.batch,), generator=g).to(device)
    return input_ids, attention_mask, labels


PHASES = ["forward", "loss", "backward", "clipping", "optimizer", "zero_grad", "controller"]


def count_ops(args, device):
    """`triadapt bench --ops`'s count for this peer (scripts/op_count.py, the same rule): every
    step of a fresh model, each phase in a `phase::` range; AdaLoRA masks every second step. The
    loss range starts when the classifier has run (HF computes the loss, PEFT's AdaLoRA adds its
    regulariser, inside the model's forward). Returns (ops_by_phase, ops_per_step,
    ops_allocation_step) as `triadapt bench` reports them."""
    from torch.autograd.profiler import record_function

    from op_count import OpCounter

    total_steps = args.warmup + args.steps
    config, model, params, opt, sched, _ = build(args, device, total_steps, delta_t=2)
    input_ids, attention_mask, labels = random_batch(args, config, device)
    classifier = model.base_model.model.classifier if args.method != "full" else model.classifier
    loss_range = []

    def start_loss(*_):
        loss_range.append(record_function("phase::loss"))
        loss_range[-1].__enter__()

    classifier.register_forward_hook(start_loss)
    steps = []
    for step in range(total_steps):
        with OpCounter() as c:
            with record_function("phase::forward"):
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
                loss_range.pop().__exit__(None, None, None)
            with record_function("phase::backward"):
                out.loss.backward()
            with record_function("phase::clipping"):
                torch.nn.utils.clip_grad_norm_(params, 1.0)
            with record_function("phase::optimizer"):
                opt.step()
                sched.step()
            with record_function("phase::controller"):
                if args.method == "adalora":
                    model.base_model.update_and_allocate(step)
            with record_function("phase::zero_grad"):
                opt.zero_grad(set_to_none=True)
        steps.append({p: c.by_phase.get(p, 0) for p in PHASES})
    least = min(s["controller"] for s in steps)
    ordinary = [s for s in steps if s["controller"] == least][-1]
    allocation = [s for s in steps if s["controller"] > least]
    by_phase = dict(ordinary, controller_allocation=allocation[-1]["controller"] if allocation else None)
    return by_phase, sum(ordinary.values()), sum(allocation[-1].values()) if allocation else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-config", default="small", help=f"{', '.join(sorted(SHAPES))}, or a DeBERTa config.json path")
    ap.add_argument("--method", default="lora", choices=["full", "lora", "adalora"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before the timed ones")
    ap.add_argument("--steps", type=int, default=8, help="timed steps")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="bf16: CUDA autocast")
    ap.add_argument("--rank", type=int, default=8, help="LoRA rank; AdaLoRA's target_r (init_r = 1.5x)")
    ap.add_argument("--lora-alpha", type=float, default=16.0)
    ap.add_argument("--lora-dropout", type=float, default=0.0)
    ap.add_argument("--orth-reg-weight", type=float, default=0.1)
    ap.add_argument("--optim", default="fused", choices=["fused", "foreach", "forloop"], help="torch.optim.AdamW's implementation (--adamw torch)")
    ap.add_argument("--adamw", default="torch", choices=["torch", "legacy_hf"], help="torch.optim.AdamW, or old HF transformers' AdamW")
    ap.add_argument("--ops", action="store_true", help="also count the ops of each phase of a step (scripts/op_count.py)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="one JSON line instead of text")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.precision == "bf16" and not cuda and not args.ops:
        ap.error("--precision bf16 needs --device cuda (or --ops: counted under CPU autocast)")

    import peft
    import transformers

    transformers.logging.set_verbosity_error()
    rss_before = memory_kb().get("VmRSS", 0)
    total_steps = args.warmup + args.steps
    config, model, params, opt, sched, n_adapted = build(args, device, total_steps, delta_t=1)
    input_ids, attention_mask, labels = random_batch(args, config, device)

    def sync():
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    times, ctrl = [], []
    cpu_start = time.process_time()
    for step in range(total_steps):
        if step == args.warmup:
            cpu_start = time.process_time()
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        loss = out.loss
        loss.backward()
        loss_value = loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        sync()
        c0 = time.perf_counter()
        if args.method == "adalora":
            model.base_model.update_and_allocate(step)
        sync()
        c1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        sync()
        t1 = time.perf_counter()
        if not (loss_value == loss_value):
            print(f"error: the loss became {loss_value} at step {step}", file=sys.stderr)
            return 1
        if step >= args.warmup:
            times.append(t1 - t0)
            ctrl.append(c1 - c0)

    cpu_per_step = (time.process_time() - cpu_start) / args.steps
    mem = memory_kb()
    s = sorted(times)
    median = statistics.median(s)
    result = {
        "tool": "peft",
        "model_config": args.model_config,
        "method": args.method,
        "batch": args.batch,
        "seq": args.seq,
        "warmup": args.warmup,
        "steps": args.steps,
        "device": args.device,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "optim": "old HF AdamW (per tensor)" if args.adamw == "legacy_hf" else f"torch AdamW ({args.optim})",
        "adamw": args.adamw,
        "examples_per_s": args.batch / median,
        "examples_per_s_mean": args.batch * len(s) / sum(s),
        "step_ms_median": median * 1e3,
        "step_ms_p25": percentile(s, 0.25) * 1e3,
        "step_ms_p75": percentile(s, 0.75) * 1e3,
        "step_ms_min": s[0] * 1e3,
        "step_ms_max": s[-1] * 1e3,
        "controller_ms_per_step": sum(ctrl) / len(ctrl) * 1e3,
        "controller_ms_max": max(ctrl) * 1e3,
        "cpu_ms_per_step": cpu_per_step * 1e3,
        "peak_rss_mb": mem.get("VmHWM", 0) / 1024,
        "rss_before_model_mb": rss_before / 1024,
        "peak_cuda_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None,
        "trainable_params": sum(p.numel() for p in params),
        "adapted_matrices": n_adapted,
        "final_loss": loss_value,
        "ops_per_step": None,
        "ops_by_phase": None,
        "ops_allocation_step": None,
        "versions": f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}",
    }
    if args.ops:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        result["ops_by_phase"], result["ops_per_step"], result["ops_allocation_step"] = count_ops(args, device)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
