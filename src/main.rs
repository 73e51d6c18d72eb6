//! The `triadapt` command line: argument parsing only; each subcommand lives in `commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use triadapt::commands;
use triadapt::model::HeadKind;

#[derive(Parser)]
#[command(name = "triadapt", version, about = "TriAdaptLoRA and its baselines (LoRA, AdaLoRA, IncreLoRA, full fine-tuning) on DeBERTaV2/V3 encoders, numerically equal to HF transformers.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one configuration and write its run folder (config.yaml, metrics.json, curve.csv,
    /// rank_history.csv, rank_pattern.json, adapter/).
    ///
    /// Config keys (dotted paths; `--set` and sweep grids take the same):
    /// task, data_dir, model, max_seq_length, batch_size, eval_batch_size, epochs, max_steps,
    /// eval_steps, seed, cls_dropout, max_train_examples, max_eval_examples, device, bf16,
    /// optim.{lr, weight_decay, warmup_steps, max_grad_norm, adam_beta1, adam_beta2, adam_eps},
    /// method.{name, lora_alpha, lora_dropout, orth_reg_weight, lr_policy, target_modules,
    /// target_layers}, method.lora.rank, method.triadapt.{init_rank, ref_rank, warmup_steps,
    /// interval, growth_step, threshold, top_k, importance, growth, init_std},
    /// method.adalora.*, method.increlora.*, squad.*. See README.md for each.
    Train {
        /// Experiment YAML (e.g. experiments/rte.yaml).
        #[arg(long)]
        config: PathBuf,
        /// Run this method instead of the config's method.name (full, lora, adalora, increlora, triadapt).
        #[arg(long)]
        method: Option<String>,
        /// Override a config key, e.g. --set method.triadapt.ref_rank=8 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// Run folder (default results/runs/<task>_<method>_seed<seed>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// cpu, cuda or cuda:N (overrides the config).
        #[arg(long)]
        device: Option<String>,
    },
    /// Fold a trained adapter into its base model: writes a plain HF checkpoint (config.json,
    /// model.safetensors, spm.model) that HF transformers loads without triadapt or PEFT.
    Merge {
        /// A run folder (uses its adapter/) or an adapter folder.
        adapter: PathBuf,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a trained adapter (any method) as a standard PEFT LoRA adapter (adapter_config.json
    /// with a per-module rank_pattern, adapter_model.safetensors) computing the same dW.
    ExportPeft {
        /// A run folder (uses its adapter/) or an adapter folder.
        adapter: PathBuf,
        /// Output adapter directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the LibTorch version, CUDA availability, device count and thread count (JSON).
    Env,
    /// Run a model on JSON-lines inputs and print one JSON line of logits per input.
    ///
    /// Each input line is {"input_ids": [...], "attention_mask": [...], "token_type_ids": [...]}
    /// (mask and types optional) or {"text_a": "...", "text_b": "..."} (text_b optional), which
    /// is tokenized with the model directory's spm.model. Runs in eval mode (no dropout).
    Predict {
        /// An HF model directory: config.json + model.safetensors | pytorch_model.bin | rust_model.ot.
        #[arg(long)]
        model: PathBuf,
        /// JSON-lines input file.
        #[arg(long)]
        input: PathBuf,
        /// cls: sequence classification/regression logits; qa: start and end logits per token.
        #[arg(long, default_value = "cls")]
        head: HeadKind,
        /// Also print the last hidden state ([len][hidden]).
        #[arg(long)]
        hidden: bool,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Longest-first truncation length for text inputs (special tokens included).
        #[arg(long, default_value_t = 512)]
        max_len: usize,
    },
    /// Tokenize JSON-lines {"text_a", "text_b"?} with a model's spm.model exactly as HF's
    /// DebertaV2Tokenizer: one JSON line of input_ids, token_type_ids, attention_mask each.
    Tokenize {
        /// A model directory holding spm.model, or the spm.model file itself.
        #[arg(long)]
        model: PathBuf,
        /// JSON-lines input file.
        #[arg(long)]
        input: PathBuf,
        /// Longest-first truncation length (special tokens included).
        #[arg(long, default_value_t = 512)]
        max_len: usize,
        /// Pad every line to --max-len (attention_mask 0 on padding).
        #[arg(long)]
        pad: bool,
    },
    /// Download a model, GLUE data or SQuAD 2.0 into the cache and print the directory.
    ///
    /// Forms:
    ///   triadapt fetch model OWNER/NAME   config.json, spm.model and model.safetensors (else
    ///                                     pytorch_model.bin) of a hub model, e.g. microsoft/deberta-v3-base
    ///   triadapt fetch glue TASK|all      the hub's nyu-mll/glue parquet files of cola, sst2, mrpc,
    ///                                     qqp, stsb, mnli, qnli, rte, or all eight
    ///   triadapt fetch squad2             SQuAD 2.0 train-v2.0.json and dev-v2.0.json
    ///
    /// The cache is $TRIADAPT_CACHE, else <user cache dir>/triadapt (~/.cache/triadapt on Linux):
    /// models/<owner>/<name>/, glue/<task>/, squad2/. Complete files are skipped, a partial
    /// download resumes, sizes and sha256 are checked against the hub's listing. HF_ENDPOINT
    /// overrides the hub, TRIADAPT_SQUAD_URL the SQuAD base URL; HF_HUB_OFFLINE=1 downloads
    /// nothing. Without network, place the files in those directories by hand.
    #[command(verbatim_doc_comment)]
    Fetch {
        /// model, glue or squad2.
        #[arg(value_name = "WHAT")]
        kind: commands::fetch::FetchKind,
        /// The model's hub name (model), or the task or `all` (glue); none for squad2.
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Env => commands::env::run(),
        Command::Merge { adapter, out } => commands::adapter::merge(&adapter, &out),
        Command::ExportPeft { adapter, out } => commands::adapter::export(&adapter, &out),
        Command::Train { config, method, sets, out, device } => {
            let method = method.map(|m| m.parse()).transpose()?;
            commands::train::run(&commands::train::TrainArgs { config: &config, method, sets: &sets, out: out.as_deref(), device: device.as_deref() })
        }
        Command::Predict { model, input, head, hidden, device, max_len } => {
            let device = triadapt::device::parse_device(&device)?;
            commands::predict::run(&commands::predict::PredictArgs { model: &model, input: &input, head, hidden, device, max_len })
        }
        Command::Tokenize { model, input, max_len, pad } => commands::tokenize::run(&model, &input, max_len, pad),
        Command::Fetch { kind, name, quiet } => commands::fetch::run(kind, name.as_deref(), quiet),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
