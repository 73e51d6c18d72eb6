//! `triadapt predict`: logits (and optionally last hidden states) of a model on JSON-lines
//! inputs, in eval mode, in full float precision or under bf16 autocast (`--bf16`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::model::{HeadKind, ModelDir, PlainLinearFactory};

/// An input line: either token ids or raw text(s) to tokenize with the model's `spm.model`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum PredictInput {
    Ids {
        input_ids: Vec<i64>,
        #[serde(default)]
        attention_mask: Option<Vec<i64>>,
        #[serde(default)]
        token_type_ids: Option<Vec<i64>>,
    },
    Text {
        text_a: String,
        #[serde(default)]
        text_b: Option<String>,
    },
}

#[derive(Debug, Serialize)]
pub struct Prediction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logits: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_logits: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_logits: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_hidden_state: Option<Vec<Vec<f32>>>,
}

/// `triadapt predict`'s arguments.
// The field docs are --help text: `[...]` and `<...>` in them are literal, not links or HTML.
#[allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]
#[derive(Debug, Clone, clap::Args)]
pub struct PredictArgs {
    /// An HF model directory (config.json + model.safetensors | pytorch_model.bin |
    /// rust_model.ot), a run folder, a triadapt adapter folder, or a PEFT LoRA adapter folder
    /// (applied to its base model).
    #[arg(long)]
    pub model: PathBuf,
    /// JSON-lines input file.
    #[arg(long)]
    pub input: PathBuf,
    /// cls: sequence classification/regression logits; qa: start and end logits per token.
    /// Default: an adapter's own head, else cls.
    #[arg(long)]
    pub head: Option<HeadKind>,
    /// Also print the last hidden state ([len][hidden]).
    #[arg(long)]
    pub hidden: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Longest-first truncation length for text inputs (special tokens included).
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Run under bf16 autocast (weights stay float32), as HF under torch.autocast.
    #[arg(long)]
    pub bf16: bool,
    // Of a run folder: its best or last adapter; `--base-model` replaces the base model an
    // adapter names.
    #[command(flatten)]
    pub from: super::adapter::AdapterArgs,
}

/// The model to run and where its tokenizer is.
struct Loaded {
    model: crate::model::DebertaModel,
    head: HeadKind,
    model_dir: ModelDir,
    _vs: tch::nn::VarStore,
}

fn load(args: &PredictArgs, device: Device) -> Result<Loaded> {
    if super::adapter::is_adapter_or_run(&args.model) {
        let a = super::adapter::load_adapted(&args.model, args.from.checkpoint, args.from.base_model.as_deref(), device)?;
        if let Some(head) = args.head.filter(|h| *h != a.head) {
            bail!("--head {head:?}: {} was trained with a {:?} head", args.model.display(), a.head);
        }
        return Ok(Loaded { model: a.model, head: a.head, model_dir: a.model_dir, _vs: a.vs });
    }
    if args.from.base_model.is_some() {
        bail!("--base-model: {} is a model directory, not an adapter or run folder", args.model.display());
    }
    let head = args.head.unwrap_or(HeadKind::Cls);
    let dir = ModelDir::open(&super::adapter::resolve_base_model(&args.model)?)?;
    let (vs, model, report) = dir.load(head, &PlainLinearFactory, device)?;
    if !report.initialised.is_empty() {
        eprintln!("note: the checkpoint has no {head:?} head; these tensors are randomly initialised: {}", report.initialised.join(", "));
    }
    Ok(Loaded { model, head, model_dir: dir, _vs: vs })
}

/// Turns one input into (ids, mask, types), checking lengths and id ranges against the model.
fn to_ids(
    input: PredictInput,
    lineno: usize,
    args: &PredictArgs,
    spm_dir: &Path,
    tok: &mut Option<crate::data::tokenizer::SpmTokenizer>,
    vocab: i64,
) -> Result<[Vec<i64>; 3]> {
    let [ids, mask, types] = match input {
        PredictInput::Ids { input_ids, attention_mask, token_type_ids } => {
            let n = input_ids.len();
            let mask = attention_mask.unwrap_or_else(|| vec![1; n]);
            let types = token_type_ids.unwrap_or_else(|| vec![0; n]);
            if mask.len() != n || types.len() != n {
                bail!("line {lineno}: input_ids has {n} entries but attention_mask has {} and token_type_ids {}", mask.len(), types.len());
            }
            [input_ids, mask, types]
        }
        PredictInput::Text { text_a, text_b } => {
            if tok.is_none() {
                *tok = Some(super::tokenize::load_tokenizer(spm_dir)?);
            }
            let enc = tok.as_ref().expect("loaded above").encode(&text_a, text_b.as_deref(), args.max_len, false);
            [enc.input_ids, enc.attention_mask, enc.token_type_ids]
        }
    };
    if ids.is_empty() {
        bail!("line {lineno}: empty input");
    }
    if let Some(bad) = ids.iter().find(|&&i| i < 0 || i >= vocab) {
        bail!("line {lineno}: token id {bad} outside the vocabulary (size {vocab})");
    }
    Ok([ids, mask, types])
}

pub fn run(args: &PredictArgs) -> Result<()> {
    let device = crate::device::parse_device(&args.device)?;
    if args.bf16 {
        crate::precision::enable_bf16(device)?;
    }
    let loaded = load(args, device)?;
    let (model, dir) = (&loaded.model, &loaded.model_dir);
    let inputs: Vec<PredictInput> = super::read_jsonl(&args.input)?;
    let mut tok = None;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for (i, input) in inputs.into_iter().enumerate() {
        let [ids, mask, types] =
            to_ids(input, i + 1, args, &dir.dir, &mut tok, dir.config.vocab_size).with_context(|| format!("{}", args.input.display()))?;
        let t = |v: &[i64]| Tensor::from_slice(v).unsqueeze(0).to_device(device);
        let output =
            crate::precision::autocast(device, args.bf16, || tch::no_grad(|| model.forward_t(&t(&ids), &t(&mask), &t(&types), false)));
        let vec1 =
            |x: &Tensor| -> Result<Vec<f32>> { Ok(Vec::<f32>::try_from(x.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1))?) };
        let mut pred = Prediction { logits: None, start_logits: None, end_logits: None, last_hidden_state: None };
        match loaded.head {
            HeadKind::Cls => pred.logits = Some(vec1(&output.logits.get(0))?),
            HeadKind::Qa => {
                let l = output.logits.get(0);
                pred.start_logits = Some(vec1(&l.select(1, 0))?);
                pred.end_logits = Some(vec1(&l.select(1, 1))?);
            }
        }
        if args.hidden {
            let h = output.last_hidden_state.get(0).to_kind(Kind::Float).to_device(Device::Cpu);
            pred.last_hidden_state = Some(Vec::<Vec<f32>>::try_from(h)?);
        }
        writeln!(out, "{}", serde_json::to_string(&pred)?)?;
    }
    Ok(())
}
