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
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Env => commands::env::run(),
        Command::Predict { model, input, head, hidden, device, max_len } => {
            let device = triadapt::device::parse_device(&device)?;
            commands::predict::run(&commands::predict::PredictArgs { model: &model, input: &input, head, hidden, device, max_len })
        }
        Command::Tokenize { model, input, max_len, pad } => commands::tokenize::run(&model, &input, max_len, pad),
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
