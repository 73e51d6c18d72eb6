//! The `triadapt` command line: every subcommand with its help (with examples), and the
//! dispatch to `commands`. Each subcommand's flags are a clap `Args` struct in its command's
//! module (`commands::train::TrainArgs`, ...), held by the subcommand's variant and handed to
//! the command whole. In the library so that tests parse it in process.

use clap::{Parser, Subcommand};

use crate::commands;

#[derive(Parser)]
#[command(
    name = "triadapt",
    version,
    about = "TriAdaptLoRA and its baselines (LoRA, AdaLoRA, IncreLoRA, full fine-tuning) on DeBERTaV2/V3 encoders, numerically equal to HF transformers."
)]
pub struct Cli {
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
    /// eval_steps, log_steps, save_steps, save_total_limit, seed, cls_dropout,
    /// max_train_examples, max_eval_examples, device, bf16, tf32, init_adapter, log.tensorboard,
    /// optim.{lr, weight_decay, warmup_steps, max_grad_norm, adam_beta1, adam_beta2, adam_eps,
    /// adamw (torch | legacy_hf)}, method.{name, lora_alpha, lora_dropout, orth_reg_weight,
    /// lr_policy (restart | follow | constant), budget (strict | reference), target_modules,
    /// target_layers, position_query (adapted | frozen), train_pooler}, method.lora.{rank,
    /// dropout}, method.triadapt.{init_rank, ref_rank, warmup_steps, interval, growth_step,
    /// threshold, top_k, importance, growth, init_std, grown_weight_decay}, method.adalora.*,
    /// method.increlora.*, squad.*. See README.md for
    /// each, and docs/method.md for what each computes and the reference it follows.
    #[command(
        after_help = "Examples:\n  triadapt train --config experiments/synthetic_rte.yaml --out runs/demo\n  triadapt train --config experiments/rte_r2.yaml --method increlora\n  triadapt train --config experiments/rte_r2.yaml --out runs/rte --resume\n  triadapt train --config experiments/rte_r2.yaml --set method.budget=strict\n  triadapt train --config experiments/synthetic_rte.yaml --method lora --init-adapter peft/my-lora"
    )]
    Train(commands::train::TrainArgs),
    /// Fold a trained adapter into its base model: writes a plain HF checkpoint (config.json,
    /// model.safetensors, spm.model) that HF transformers loads without triadapt or PEFT.
    #[command(
        after_help = "Examples:\n  triadapt merge results/runs/demo --out merged/demo\n  triadapt merge results/runs/demo --checkpoint last --out merged/last\n  (HF: AutoModelForSequenceClassification.from_pretrained(\"merged/demo\"))"
    )]
    Merge(commands::adapter::MergeArgs),
    /// Write a trained adapter (any method) as a standard PEFT LoRA adapter (adapter_config.json
    /// with a per-module rank_pattern, adapter_model.safetensors) computing the same dW.
    #[command(
        after_help = "Examples:\n  triadapt export-peft results/runs/demo --out peft/demo\n  triadapt export-peft results/runs/demo --checkpoint last --out peft/last\n  (PEFT: AutoPeftModelForSequenceClassification.from_pretrained(\"peft/demo\"))"
    )]
    ExportPeft(commands::adapter::ExportPeftArgs),
    /// Evaluate a run folder (its adapter on its base model) or a fine-tuned HF model directory
    /// on a GLUE or SQuAD 2.0 split; prints the metrics as JSON (GLUE: fractions; SQuAD: percent,
    /// under the official names).
    #[command(
        after_help = "Examples:\n  triadapt eval --model results/runs/demo --task rte\n  triadapt eval --model results/runs/mnli --task mnli --predictions\n  triadapt eval --model results/runs/squad --task squad2 --device cuda"
    )]
    Eval(commands::eval::EvalArgs),
    /// Run a sweep: expand a sweep YAML into runs (methods x seeds x grid x zip), train each in a
    /// child `triadapt train` process under <out>/runs/<id>/, and keep <out>/runs.csv up to date.
    ///
    /// Finished runs are skipped and failed or interrupted ones retried, so the same command
    /// resumes a sweep. Each run is claimed before it starts, so the same command started on
    /// several machines sharing the folder divides the runs. The file format and runs.csv
    /// columns are in README.md ("Sweeps").
    #[command(
        after_help = "Examples:\n  triadapt sweep sweeps/demo.yaml --dry-run\n  triadapt sweep sweeps/glue_r2.yaml --devices 0,1,2,3\n  triadapt sweep sweeps/glue_r2.yaml --slurm --shard 0/8 > glue.sbatch"
    )]
    Sweep(commands::sweep::SweepArgs),
    /// Rebuild runs.csv from the row files (runs/<id>/row.json) of one or more results folders,
    /// e.g. copies of results/<name> written by different shards.
    #[command(
        after_help = "Examples:\n  triadapt collect results/glue_r2 /mnt/node2/results/glue_r2\n  triadapt collect results/glue_r2 --out results/glue_r2/all.csv"
    )]
    Collect(commands::sweep::CollectArgs),
    /// Draw the final rank of every adapted matrix (paper Figure 2): one figure per task and rank
    /// budget, one panel per method (layers x Wq Wk Wv Wo Wf1 Wf2, the rank written in each
    /// cell, one shared colour scale), from the run folders' rank_pattern.json. Writes
    /// <out>/<results name>/heatmap_<task>_budget<B>.{png,svg}, with the cells in .csv and the
    /// runs shown (ids, seeds, folders) in .runs.csv beside each.
    ///
    /// Uses the finished runs of runs.csv; where a method has several runs at a budget (seeds,
    /// swept values) its panel shows the one with the highest best_score (ties: the lowest seed).
    #[command(
        after_help = "Examples:\n  triadapt heatmap results/mnli --task mnli\n  triadapt heatmap results/demo --task rte --budget 24\n  triadapt heatmap results/mnli --width 600 --height 700 --scale 3"
    )]
    Heatmap(commands::report::HeatmapArgs),
    /// Draw ablation curves (paper Figures 3-5: a metric against a swept key, one line per
    /// method, mean over seeds with a min-max band), plus total rank and training loss / dev
    /// metric against step from the run folders' curve.csv (per rank budget, the mean over seeds
    /// with a min-max band). Writes PNG and SVG into <out>/<results name>/:
    /// ablation_<task>_<key>, rank_growth_<task>_budget<B>, training_<task>_budget<B>, with the
    /// plotted numbers in .csv and the runs drawn in .runs.csv beside each.
    #[command(
        after_help = "Examples:\n  triadapt plot results/rte_warmup\n  triadapt plot results/rte_refrank --x method.triadapt.ref_rank\n  triadapt plot results/demo --budget 24 --width 450 --height 400 --scale 2.2"
    )]
    Plot(commands::report::PlotArgs),
    /// Print the GLUE dev table in the paper's layout (one block per reference rank r; rows:
    /// methods and settings of the other swept keys x MNLI m/mm, SST-2, CoLA, QQP acc/F1, QNLI,
    /// RTE, MRPC, STS-B Corr, All Avg; x100, mean ± std over seeds (n)) and write it as
    /// table.md and table.csv (n, mean, std, min, max per cell).
    #[command(
        after_help = "Examples:\n  triadapt table results/glue_r2\n  triadapt table results/demo --out tables/demo\n  triadapt table results/glue_r2 --reference published_glue.csv"
    )]
    Table(commands::report::TableArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(
        after_help = "Examples:\n  triadapt completions bash > /etc/bash_completion.d/triadapt\n  triadapt completions zsh > ~/.zfunc/_triadapt\n  triadapt completions fish > ~/.config/fish/completions/triadapt.fish"
    )]
    Completions(commands::completions::CompletionsArgs),
    /// Print the LibTorch version, CUDA availability, device count and thread count (JSON).
    #[command(after_help = "Examples:\n  triadapt env\n  triadapt env | jq .cuda_available")]
    Env,
    /// Time training steps (forward, backward, AdamW, rank controller) on random weights of a
    /// real DeBERTa-v3 shape after warm-up: examples/s, median step time and spread, rank
    /// controller time per step, peak memory, achieved GFLOP/s. See README "Benchmarks".
    #[command(
        after_help = "Examples:\n  triadapt bench --method lora,adalora --model-config small\n  triadapt bench --method triadapt --device cuda --precision bf16 --json\n  triadapt bench --method full --breakdown --steps 4\n  triadapt bench --model-config base --batch 1 --ops --adamw legacy_hf"
    )]
    Bench(commands::bench::BenchArgs),
    /// Run a model on JSON-lines inputs and print one JSON line of logits per input.
    ///
    /// Each input line is {"input_ids": [...], "attention_mask": [...], "token_type_ids": [...]}
    /// (mask and types optional) or {"text_a": "...", "text_b": "..."} (text_b optional), which
    /// is tokenized with the model directory's spm.model. Runs in eval mode (no dropout).
    #[command(
        after_help = "Examples:\n  triadapt predict --model data/tiny-deberta-v3 --input inputs.jsonl\n  triadapt predict --model merged/demo --input inputs.jsonl --bf16\n  triadapt predict --head qa --model models/qa --input in.jsonl --hidden\n  triadapt predict --model peft/my-lora --base-model data/tiny-deberta-v3 --input inputs.jsonl"
    )]
    Predict(commands::predict::PredictArgs),
    /// Tokenize JSON-lines {"text_a", "text_b"?} with a model's spm.model exactly as HF's
    /// DebertaV2Tokenizer: one JSON line of input_ids, token_type_ids, attention_mask each.
    #[command(
        after_help = "Examples:\n  triadapt tokenize --model data/tiny-deberta-v3 --input inputs.jsonl\n  triadapt tokenize --model spm.model --input pairs.jsonl --max-len 128 --pad"
    )]
    Tokenize(commands::tokenize::TokenizeArgs),
    /// Download a model, GLUE data or SQuAD 2.0 into the cache and print the directory.
    ///
    /// Forms:
    ///   triadapt fetch model OWNER/NAME[@REV]  config.json, spm.model and model.safetensors
    ///                                          (else pytorch_model.bin) of a hub model at a
    ///                                          branch, tag or commit (default main)
    ///   triadapt fetch glue TASK|all           the hub's nyu-mll/glue parquet files of cola, sst2,
    ///                                          mrpc, qqp, stsb, mnli, qnli, rte, or all eight
    ///   triadapt fetch squad2                  SQuAD 2.0 train-v2.0.json and dev-v2.0.json
    ///
    /// Models and GLUE go to the Hugging Face cache, shared with Python's huggingface_hub
    /// (what either fetched, the other finds): $HF_HUB_CACHE, else $HF_HOME/hub, else
    /// ~/.cache/huggingface/hub. Files already there are not fetched again; downloads resume
    /// and are checked against the hub's size and sha256. HF_ENDPOINT names another hub,
    /// HF_TOKEN (else the `huggingface-cli login` token file) opens gated models, and
    /// HF_HUB_OFFLINE=1 downloads nothing. SQuAD 2.0 goes to $TRIADAPT_CACHE/squad2 (default
    /// ~/.cache/triadapt); TRIADAPT_SQUAD_URL overrides its source. Without network, use
    /// `huggingface-cli download` elsewhere and copy the cache, or give model and data
    /// directories as paths.
    #[command(verbatim_doc_comment)]
    #[command(
        after_help = "Examples:\n  triadapt fetch model microsoft/deberta-v3-base\n  triadapt fetch model microsoft/deberta-v3-base@main\n  triadapt fetch glue all\n  HF_HUB_OFFLINE=1 triadapt fetch squad2"
    )]
    Fetch(commands::fetch::FetchArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Env => commands::env::run(),
        Command::Completions(args) => commands::completions::run(&args, &mut <Cli as clap::CommandFactory>::command()),
        Command::Heatmap(args) => commands::report::heatmap(&args),
        Command::Plot(args) => commands::report::plot(&args),
        Command::Table(args) => commands::report::table(&args),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Sweep(args) => commands::sweep::run(&args),
        Command::Collect(args) => commands::sweep::collect(&args),
        Command::Eval(args) => {
            println!("{}", serde_json::to_string_pretty(&commands::eval::run(&args)?)?);
            Ok(())
        }
        Command::Merge(args) => commands::adapter::merge(&args),
        Command::ExportPeft(args) => commands::adapter::export(&args),
        Command::Train(args) => commands::train::run(&args),
        Command::Predict(args) => commands::predict::run(&args),
        Command::Tokenize(args) => commands::tokenize::run(&args),
        Command::Fetch(args) => commands::fetch::run(&args),
    }
}
