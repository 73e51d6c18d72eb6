#!/usr/bin/env python3
"""HF transformers / huggingface peft as an oracle for merged and PEFT exports (tests/export.rs).

Subcommands (run from the repository root, CPU, fp32, eval mode):

    logits --model DIR [--peft ADAPTER_DIR] [--head cls|qa] --inputs FILE --out FILE
        Loads the HF model in DIR (AutoModelForSequenceClassification, or
        AutoModelForQuestionAnswering with --head qa), optionally applies the PEFT adapter in
        ADAPTER_DIR with PeftModel.from_pretrained, runs it on `input_ids`, `attention_mask`
        and `token_type_ids` of the safetensors file FILE and writes `logits` to --out
        (classification: [batch, num_labels]; QA: [batch, len, 2], start then end, as the Rust
        model returns them). Any missing, unexpected or mismatched key while loading the model
        or the adapter is an error (exit status 1), as is a missing or unexpected adapter key.

    logits --jobs JOBS.json
        The same for a list of jobs in one process (torch is imported once):
        [{"model": DIR, "peft": DIR or null, "head": "cls" or "qa", "inputs": FILE, "out": FILE}, ...]

    lora-fixture --model tests/fixtures/models/v3 --out tests/fixtures/peft
        Builds a PEFT LoRA (r=2, lora_alpha=8, the six DeBERTa matrices of every layer, by exact
        module name) on the model with seeded random non-zero lora_A and lora_B, and writes
        `lora_v3.safetensors` (every module's `<module>.lora_A` / `<module>.lora_B`, unscaled as
        peft stores them, and the PEFT model's `logits` on the v3_batch inputs) and README.md.
        Deterministic (fixed seed, one thread, deterministic algorithms): regenerates
        byte-for-byte; prints the sha256 of what it wrote.

    import-fixtures --out tests/fixtures/peft_in
        Writes real PEFT adapter folders (`save_pretrained`) for triadapt to read, each with the
        PEFT model's own outputs on the v3_batch inputs in `expected.safetensors` (`logits`):
        `cls_patterns` (SEQ_CLS on the label-less backbone-only model, r=4, lora_alpha=8,
        rank_pattern and alpha_pattern by suffix, four target matrices by list, pooler and
        classifier in modules_to_save, safetensors), `qa_rslora_bin` (QUESTION_ANS on models/v3_qa,
        use_rslora, target_modules as a regex string, adapter_model.bin), and two that triadapt
        must refuse: `dora` (use_dora) and `ia3` (another tuner). Adapter and head entries are
        seeded random non-zero values. Deterministic; prints the sha256 of every file written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModelForQuestionAnswering, AutoModelForSequenceClassification
from transformers import logging as hf_logging

REPO = Path(__file__).resolve().parent.parent

# The six matrices of every layer, as HF module paths below `deberta.encoder.layer.<i>.`.
LAYER_MATRICES = [
    "attention.self.query_proj",
    "attention.self.key_proj",
    "attention.self.value_proj",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
]
FIXTURE_SEED = 4001
FIXTURE_R = 2
FIXTURE_ALPHA = 8
FIXTURE_STD = 0.1  # std of the random lora_A and lora_B entries
FIXTURE_INPUTS = "tests/fixtures/oracle/v3_batch.safetensors"
FIXTURE_COMMAND = ".venv/bin/python scripts/peft_oracle.py lora-fixture --model tests/fixtures/models/v3 --out tests/fixtures/peft"


class OracleError(Exception):
    pass


def setup() -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()


def adapter_tensors(adapter_dir: str) -> dict[str, torch.Tensor]:
    """The tensors of a PEFT adapter folder (adapter_model.safetensors, else adapter_model.bin)."""
    folder = Path(adapter_dir)
    if (folder / "adapter_model.safetensors").is_file():
        return load_file(str(folder / "adapter_model.safetensors"))
    return torch.load(str(folder / "adapter_model.bin"), map_location="cpu", weights_only=True)


def load_hf(model_dir: str, head: str, adapter_dir: str | None = None) -> torch.nn.Module:
    """Loads the HF model strictly. With an adapter whose `modules_to_save` carries the head, a
    backbone-only base may lack exactly those head tensors (PEFT supplies them), and the head
    gets the adapter's label count."""
    auto = AutoModelForQuestionAnswering if head == "qa" else AutoModelForSequenceClassification
    kwargs = {}
    head_modules: list[str] = []
    if adapter_dir:
        head_modules = json.loads((Path(adapter_dir) / "adapter_config.json").read_text()).get("modules_to_save") or []
        saved = adapter_tensors(adapter_dir)
        for name in ("classifier", "qa_outputs"):
            key = f"base_model.model.{name}.weight"
            if key in saved:
                kwargs["num_labels"] = saved[key].shape[0]
    model, info = auto.from_pretrained(model_dir, output_loading_info=True, dtype=torch.float32, **kwargs)
    if head_modules:
        info["missing_keys"] = [k for k in info["missing_keys"] if not any(k.startswith(m + ".") for m in head_modules)]
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise OracleError(f"{model_dir}: HF load reported {problems}")
    return model.eval()


def apply_peft(model: torch.nn.Module, adapter_dir: str) -> torch.nn.Module:
    from peft import PeftModel
    from peft.utils.save_and_load import get_peft_model_state_dict

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            peft_model = PeftModel.from_pretrained(model, adapter_dir)
        except KeyError as e:  # peft indexes the file by the keys the model expects
            raise OracleError(f"{adapter_dir}: adapter key missing: {e}") from e
    for w in caught:
        text = str(w.message)
        if "missing" in text.lower() or "unexpected" in text.lower():
            raise OracleError(f"{adapter_dir}: PEFT load warned: {text}")
    # Every tensor of the file must have landed in the model, and every adapter tensor PEFT
    # would save must have come from the file (PEFT itself does not report unexpected keys).
    saved = adapter_tensors(adapter_dir)
    held = get_peft_model_state_dict(peft_model)
    missing = sorted(set(held) - set(saved))
    unexpected = sorted(set(saved) - set(held))
    if missing or unexpected:
        raise OracleError(f"{adapter_dir}: adapter keys missing {missing}, unexpected {unexpected}")
    differ = [k for k in saved if not torch.equal(saved[k], held[k].detach().cpu())]
    if differ:
        raise OracleError(f"{adapter_dir}: adapter tensors not loaded as saved: {differ}")
    return peft_model.eval()


def read_inputs(path: str) -> dict[str, torch.Tensor]:
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in ("input_ids", "attention_mask", "token_type_ids")}


@torch.no_grad()
def run(model: torch.nn.Module, head: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**inputs)
    if head == "qa":
        return torch.stack([out.start_logits, out.end_logits], dim=-1).contiguous()
    return out.logits.contiguous()


def frozen_position_query(model: torch.nn.Module) -> None:
    """IncreLoRA's and AdaLoRA's GLUE harnesses project the relative-position embeddings for the
    p2c term with `nn.Linear.forward(self.query_proj, rel_embeddings)`: the frozen layer, without
    its adapter (key_proj keeps its adapter). PEFT wraps query_proj in a LoRA layer whose frozen
    layer is `base_layer`; during every `disentangled_attention_bias` call that layer stands in."""
    from transformers.models.deberta_v2.modeling_deberta_v2 import DisentangledSelfAttention

    patched = 0
    for module in model.modules():
        if isinstance(module, DisentangledSelfAttention):
            bias = module.disentangled_attention_bias

            def harness_bias(*args, _module=module, _bias=bias, **kwargs):
                adapted = _module.query_proj
                _module.query_proj = getattr(adapted, "base_layer", adapted)
                try:
                    return _bias(*args, **kwargs)
                finally:
                    _module.query_proj = adapted

            module.disentangled_attention_bias = harness_bias
            patched += 1
    if patched == 0:
        raise OracleError("position_query frozen: the model has no DisentangledSelfAttention")


def logits_job(model_dir: str, adapter_dir: str | None, head: str, inputs: str, out: str, position_query: str = "adapted") -> None:
    model = load_hf(model_dir, head, adapter_dir)
    if adapter_dir:
        model = apply_peft(model, adapter_dir)
    if position_query == "frozen":
        frozen_position_query(model)
    elif position_query != "adapted":
        raise OracleError(f"unknown position_query {position_query!r} (expected adapted or frozen)")
    save_file({"logits": run(model, head, read_inputs(inputs))}, out)


def cmd_logits(args: argparse.Namespace) -> None:
    if args.jobs:
        if args.model or args.peft or args.inputs or args.out:
            raise OracleError("--jobs excludes --model, --peft, --inputs and --out")
        jobs = json.loads(Path(args.jobs).read_text())
    else:
        if not (args.model and args.inputs and args.out):
            raise OracleError("logits needs --model, --inputs and --out (or --jobs)")
        jobs = [{"model": args.model, "peft": args.peft, "head": args.head, "inputs": args.inputs, "out": args.out}]
    for job in jobs:
        head = job.get("head", "cls")
        if head not in ("cls", "qa"):
            raise OracleError(f"unknown head {head!r} (expected cls or qa)")
        logits_job(job["model"], job.get("peft"), head, job["inputs"], job["out"], job.get("position_query", "adapted"))


def fixture_readme(modules: list[str], logits_shape: list[int]) -> str:
    lines = [
        "# PEFT LoRA fixture",
        "",
        "Generated by `scripts/peft_oracle.py lora-fixture` (do not edit by hand). Regenerate with",
        "",
        f"    {FIXTURE_COMMAND}",
        "",
        "from the repository root, in the virtualenv of `scripts/requirements.txt` (torch 2.11.0,",
        "transformers 4.57.6, peft 0.17.1). Deterministic (fixed seed, one thread,",
        "`torch.use_deterministic_algorithms(True)`, CPU, fp32): two runs give byte-identical files.",
        "",
        "`lora_v3.safetensors`: a huggingface/peft `LoraConfig(task_type=SEQ_CLS, r=2, lora_alpha=8,",
        "lora_dropout=0, target_modules=<the exact module names below>)` on `models/v3`, whose",
        f"`lora_A` and `lora_B` were then overwritten with N(0, {FIXTURE_STD}^2) values from",
        f"`torch.Generator().manual_seed({FIXTURE_SEED})`, drawn in module order, A before B (so the update",
        "`(lora_alpha / r) B A = 4 B A` is non-zero). It holds:",
        "",
        "- `<module>.lora_A` F32 [2, d_in] and `<module>.lora_B` F32 [d_out, 2] for every module below,",
        "  unscaled, exactly as peft stores them (`lora_A.default.weight`, `lora_B.default.weight`);",
        f"- `logits` F32 {logits_shape}: the PEFT model in `eval()` mode on the inputs of",
        "  `oracle/v3_batch.safetensors`.",
        "",
        "Target modules (peft matches a plain name such as `output.dense` by suffix, so it would also",
        "adapt `attention.output.dense`; the full names avoid that):",
        "",
    ]
    lines += [f"- `{m}`" for m in modules]
    return "\n".join(lines) + "\n"


def cmd_lora_fixture(args: argparse.Namespace) -> None:
    from peft import LoraConfig, TaskType, get_peft_model

    model = load_hf(args.model, "cls")
    layers = model.config.num_hidden_layers
    modules = [f"deberta.encoder.layer.{i}.{m}" for i in range(layers) for m in LAYER_MATRICES]
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=FIXTURE_R,
        lora_alpha=FIXTURE_ALPHA,
        lora_dropout=0.0,
        target_modules=modules,
    )
    peft_model = get_peft_model(model, config).eval()
    named = dict(peft_model.base_model.model.named_modules())
    gen = torch.Generator().manual_seed(FIXTURE_SEED)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for m in modules:
            layer = named[m]
            for role in ("lora_A", "lora_B"):
                w = getattr(layer, role)["default"].weight
                w.copy_(torch.randn(w.shape, generator=gen) * FIXTURE_STD)
                out[f"{m}.{role}"] = w.detach().clone().contiguous()
            if layer.scaling["default"] != FIXTURE_ALPHA / FIXTURE_R:
                raise OracleError(f"{m}: unexpected scaling {layer.scaling['default']}")
    adapted = sorted(n for n, mod in named.items() if hasattr(mod, "lora_A"))
    if adapted != sorted(modules):
        raise OracleError(f"peft adapted {adapted}, expected {sorted(modules)}")
    out["logits"] = run(peft_model, "cls", read_inputs(str(REPO / FIXTURE_INPUTS)))
    dest = Path(args.out)
    dest.mkdir(parents=True, exist_ok=True)
    save_file(out, str(dest / "lora_v3.safetensors"))
    (dest / "README.md").write_text(fixture_readme(modules, list(out["logits"].shape)))
    for name in ("lora_v3.safetensors", "README.md"):
        print(hashlib.sha256((dest / name).read_bytes()).hexdigest(), dest / name)


IMPORT_SEED = 4002
IMPORT_BASES = {
    "cls_patterns": ("tests/fixtures/models/v3_backbone", "cls"),
    "qa_rslora_bin": ("tests/fixtures/models/v3_qa", "qa"),
    "dora": ("tests/fixtures/models/v3", "cls"),
    "ia3": ("tests/fixtures/models/v3", "cls"),
}


IMPORT_README = """# PEFT adapter folders for triadapt to read

Generated by `scripts/peft_oracle.py import-fixtures` (do not edit by hand). Regenerate with

    .venv/bin/python scripts/peft_oracle.py import-fixtures --out tests/fixtures/peft_in

from the repository root, in the virtualenv of `scripts/requirements.txt` (torch 2.11.0,
transformers 4.57.6, peft 0.17.1). Deterministic (fixed seeds, PYTHONHASHSEED=0, one thread,
CPU, fp32). Each folder is what `PeftModel.save_pretrained` wrote (adapter_config.json, the
weights, peft's own README.md model card) plus `expected.safetensors`: `logits`, the PEFT
model's output in `eval()` mode on the inputs of `oracle/v3_batch.safetensors`
(classification [4, labels]; QA [4, 12, 2], start then end). Every trainable PEFT tensor (LoRA
factors and modules_to_save copies) holds seeded N(0, 0.1^2) values.

- `cls_patterns`: SEQ_CLS, 3 labels, on `models/v3_backbone` (no head in the base: the pooler and
  classifier come from modules_to_save), r=4, lora_alpha=8, target_modules [query_proj,
  value_proj, attention.output.dense, intermediate.dense], rank_pattern
  {layer.1.attention.self.query_proj: 2, intermediate.dense: 3}, alpha_pattern {value_proj: 2};
  adapter_model.safetensors.
- `qa_rslora_bin`: QUESTION_ANS on `models/v3_qa`, r=2, lora_alpha=4, use_rslora (scaling
  alpha / sqrt(r)), target_modules the regex `.*\\.(key_proj|output\\.dense)`; qa_outputs in
  modules_to_save; adapter_model.bin (torch.save).
- `dora`: a LoRA with use_dora (triadapt refuses it).
- `ia3`: an IA3 adapter (another tuner; triadapt refuses it).
"""


def import_config(case: str):
    from peft import IA3Config, LoraConfig, TaskType

    if case == "cls_patterns":
        return LoraConfig(
            task_type=TaskType.SEQ_CLS,
            r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            target_modules=["query_proj", "value_proj", "attention.output.dense", "intermediate.dense"],
            rank_pattern={"layer.1.attention.self.query_proj": 2, "intermediate.dense": 3},
            alpha_pattern={"value_proj": 2},
            modules_to_save=["classifier", "pooler"],
        )
    if case == "qa_rslora_bin":
        return LoraConfig(
            task_type=TaskType.QUESTION_ANS,
            r=2,
            lora_alpha=4,
            lora_dropout=0.0,
            use_rslora=True,
            target_modules=r".*\.(key_proj|output\.dense)",
        )
    if case == "dora":
        return LoraConfig(task_type=TaskType.SEQ_CLS, r=2, lora_alpha=4, target_modules=["query_proj"], use_dora=True)
    if case == "ia3":
        return IA3Config(task_type=TaskType.SEQ_CLS, target_modules=["key_proj", "value_proj", "output.dense"], feedforward_modules=["output.dense"])
    raise OracleError(f"unknown case {case}")


def cmd_import_fixtures(args: argparse.Namespace) -> None:
    from peft import get_peft_model

    dest = Path(args.out)
    gen = torch.Generator().manual_seed(IMPORT_SEED)
    inputs = read_inputs(str(REPO / FIXTURE_INPUTS))
    for case, (base, head) in IMPORT_BASES.items():
        if case == "cls_patterns":  # backbone only: the head comes from modules_to_save
            torch.manual_seed(IMPORT_SEED)
            model = AutoModelForSequenceClassification.from_pretrained(str(REPO / base), num_labels=3, dtype=torch.float32)
        else:
            model = load_hf(str(REPO / base), head)
        peft_model = get_peft_model(model, import_config(case))
        peft_model.peft_config["default"].base_model_name_or_path = base
        with torch.no_grad():
            for name, param in sorted(peft_model.named_parameters()):
                if param.requires_grad:
                    param.copy_(torch.randn(param.shape, generator=gen) * FIXTURE_STD)
        peft_model.eval()
        out = dest / case
        out.mkdir(parents=True, exist_ok=True)
        peft_model.save_pretrained(str(out), safe_serialization=case != "qa_rslora_bin")
        save_file({"logits": run(peft_model, head, inputs)}, str(out / "expected.safetensors"))
        # The adapter as PEFT reads it back: the outputs must not depend on the in-memory model.
        if case in ("cls_patterns", "qa_rslora_bin"):
            again = apply_peft(load_hf(str(REPO / base), head, str(out)), str(out))
            if not torch.allclose(run(again, head, inputs), load_file(str(out / "expected.safetensors"))["logits"], atol=1e-6):
                raise OracleError(f"{case}: the saved adapter does not reproduce its outputs")
        for f in sorted(out.iterdir()):
            print(hashlib.sha256(f.read_bytes()).hexdigest(), f)
    (dest / "README.md").write_text(IMPORT_README)


def main() -> int:
    # peft keeps target_modules as a set: fixed string hashing keeps adapter_config.json stable.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("logits", help="logits of an HF model, optionally with a PEFT adapter")
    p.add_argument("--model", help="HF model directory")
    p.add_argument("--peft", help="PEFT adapter directory applied to the model")
    p.add_argument("--head", choices=["cls", "qa"], default="cls")
    p.add_argument("--inputs", help="safetensors with input_ids, attention_mask, token_type_ids")
    p.add_argument("--out", help="safetensors file to write `logits` to")
    p.add_argument("--jobs", help="JSON list of {model, peft, head, inputs, out, position_query (adapted|frozen)} run in one process")
    p.set_defaults(func=cmd_logits)
    p = sub.add_parser("lora-fixture", help="write tests/fixtures/peft (PEFT LoRA parameters and logits)")
    p.add_argument("--model", required=True, help="HF model directory (tests/fixtures/models/v3)")
    p.add_argument("--out", required=True, help="output directory (tests/fixtures/peft)")
    p.set_defaults(func=cmd_lora_fixture)
    p = sub.add_parser("import-fixtures", help="write tests/fixtures/peft_in (PEFT adapter folders and their outputs)")
    p.add_argument("--out", required=True, help="output directory (tests/fixtures/peft_in)")
    p.set_defaults(func=cmd_import_fixtures)
    args = parser.parse_args()
    setup()
    try:
        args.func(args)
    except OracleError as e:
        print(f"peft_oracle: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
