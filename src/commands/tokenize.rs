//! `triadapt tokenize`: HF-equal token ids for JSON-lines texts.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use serde::Deserialize;

use crate::data::tokenizer::SpmTokenizer;
use crate::model::ModelDir;

/// One input line with text(s); `text_b` makes it a pair.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextInput {
    pub text_a: String,
    #[serde(default)]
    pub text_b: Option<String>,
}

/// The tokenizer of a model directory (its `spm.model`), or a bare `spm.model` path.
pub fn load_tokenizer(model: &Path) -> Result<SpmTokenizer> {
    let spm = if model.is_dir() { ModelDir::spm_path_in(model) } else { model.to_path_buf() };
    if !spm.is_file() {
        bail!("{}: no spm.model (the sentencepiece model of a DeBERTa-v3 checkpoint)", spm.display());
    }
    SpmTokenizer::from_file(&spm)
}

/// `triadapt tokenize`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenizeArgs {
    /// A model directory holding spm.model, or the spm.model file itself.
    #[arg(long)]
    pub model: PathBuf,
    /// JSON-lines input file.
    #[arg(long)]
    pub input: PathBuf,
    /// Longest-first truncation length (special tokens included).
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Pad every line to --max-len (attention_mask 0 on padding).
    #[arg(long)]
    pub pad: bool,
}

pub fn run(args: &TokenizeArgs) -> Result<()> {
    let (max_len, pad) = (args.max_len, args.pad);
    let tok = load_tokenizer(&args.model)?;
    let lines: Vec<TextInput> = super::read_jsonl(&args.input)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for line in &lines {
        let enc = tok.encode(&line.text_a, line.text_b.as_deref(), max_len, pad);
        writeln!(out, "{}", serde_json::to_string(&enc)?)?;
    }
    Ok(())
}
