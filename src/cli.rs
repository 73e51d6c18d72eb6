//! The `triadapt` command line: every subcommand, its flags and its help (with examples), and
//! the dispatch to `commands`. In the library so that tests parse it in process.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;
use crate::model::HeadKind;

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

/// Which adapter of a run folder, and on which base model.
#[derive(clap::Args)]
struct AdapterArgs {
    /// Of a run folder: `best` (the best evaluation's adapter, what its scores report) or
    /// `last` (the final step's).
    #[arg(long, value_enum, default_value = "best")]
    checkpoint: crate::train::checkpoint::Which,
    /// The base model to put the adapter on, instead of the one its adapter_config.json names
    /// (`base_model`, or PEFT's `base_model_name_or_path`): a model directory or a hub name.
    #[arg(long, value_name = "DIR|NAME")]
    base_model: Option<PathBuf>,
}

/// Figure size options shared by `heatmap` and `plot`.
#[derive(clap::Args)]
struct SizeArgs {
    /// Figure width in pixels (logical: the SVG's width; the PNG's is width x --scale).
    /// Default: each figure's own.
    #[arg(long, value_name = "PX")]
    width: Option<u32>,
    /// Figure height in pixels (logical, as --width). Default: each figure's own.
    #[arg(long, value_name = "PX")]
    height: Option<u32>,
    /// PNG pixels per logical pixel: 2 draws the same figure at twice the resolution (e.g.
    /// --width 450 --height 400 --scale 2.2 for a one-column figure at about 300 dpi).
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    scale: f64,
}

impl SizeArgs {
    fn figure_size(&self) -> crate::report::FigureSize {
        crate::report::FigureSize { width: self.width, height: self.height, scale: self.scale }
    }
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
        /// Continue the run folder's last checkpoint (same config required; log_steps,
        /// save_steps, save_total_limit and device may change). Without a checkpoint, trains
        /// from step 0; a finished run is left as it is. On SIGTERM, SIGINT or SIGUSR1 a run
        /// saves a checkpoint at the next step and exits with code 75 (a second signal exits at
        /// once).
        #[arg(long)]
        resume: bool,
        /// Start LoRA from a PEFT LoRA adapter folder (adapter_config.json +
        /// adapter_model.safetensors or .bin): its modules (which must be the config's
        /// target_modules/target_layers), ranks, factors and modules_to_save (the head). The
        /// first update equals the adapter's; training then scales each module by the run's
        /// lora_alpha / its rank. Same as the config key `init_adapter`.
        #[arg(long, value_name = "DIR")]
        init_adapter: Option<PathBuf>,
    },
    /// Fold a trained adapter into its base model: writes a plain HF checkpoint (config.json,
    /// model.safetensors, spm.model) that HF transformers loads without triadapt or PEFT.
    #[command(
        after_help = "Examples:\n  triadapt merge results/runs/demo --out merged/demo\n  triadapt merge results/runs/demo --checkpoint last --out merged/last\n  (HF: AutoModelForSequenceClassification.from_pretrained(\"merged/demo\"))"
    )]
    Merge {
        /// A run folder (uses its adapter/) or an adapter folder.
        adapter: PathBuf,
        /// Output model directory.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        from: AdapterArgs,
    },
    /// Write a trained adapter (any method) as a standard PEFT LoRA adapter (adapter_config.json
    /// with a per-module rank_pattern, adapter_model.safetensors) computing the same dW.
    #[command(
        after_help = "Examples:\n  triadapt export-peft results/runs/demo --out peft/demo\n  triadapt export-peft results/runs/demo --checkpoint last --out peft/last\n  (PEFT: AutoPeftModelForSequenceClassification.from_pretrained(\"peft/demo\"))"
    )]
    ExportPeft {
        /// A run folder (uses its adapter/) or an adapter folder.
        adapter: PathBuf,
        /// Output adapter directory.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        from: AdapterArgs,
    },
    /// Evaluate a run folder (its adapter on its base model) or a fine-tuned HF model directory
    /// on a GLUE or SQuAD 2.0 split; prints the metrics as JSON (GLUE: fractions; SQuAD: percent,
    /// under the official names).
    #[command(
        after_help = "Examples:\n  triadapt eval --model results/runs/demo --task rte\n  triadapt eval --model results/runs/mnli --task mnli --predictions\n  triadapt eval --model results/runs/squad --task squad2 --device cuda"
    )]
    Eval {
        /// A run folder, an adapter folder, or an HF model directory with a trained head
        /// (classification for GLUE, question answering for squad2).
        #[arg(long)]
        model: PathBuf,
        /// GLUE task (mnli, sst2, cola, qqp, qnli, rte, mrpc, stsb) or squad2 (SQuAD 2.0: the
        /// official exact/F1 scores; windows and decoding take the run's squad.* settings).
        #[arg(long)]
        task: String,
        /// train, validation, or validation_mismatched (MNLI).
        #[arg(long, default_value = "validation")]
        split: String,
        /// The task's data folder (default: the run's data_dir, else the cache).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Truncation length (default: the run's max_seq_length, else 512; squad2: 384).
        #[arg(long)]
        max_len: Option<usize>,
        /// Evaluation batch size (default: the run's eval_batch_size, so that a run folder's
        /// scores come out as in training; else 64).
        #[arg(long)]
        batch_size: Option<usize>,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Also print every prediction (class ids or scores; squad2: answer text by question id).
        #[arg(long)]
        predictions: bool,
        #[command(flatten)]
        from: AdapterArgs,
    },
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
    Sweep {
        /// Sweep YAML (e.g. sweeps/demo.yaml).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print the runs (id, task, method, seed, swept values, done/failed/pending/running,
        /// and who holds a claimed run: host, pid, since) and stop.
        #[arg(long)]
        dry_run: bool,
        /// Only every N-th run starting at I (0-based; run i belongs to shard i % N).
        #[arg(long, value_name = "I/N")]
        shard: Option<String>,
        /// Run one run per listed device at a time, e.g. --devices 0,1 (cuda:0, cuda:1); names
        /// such as cpu or cuda:2 are taken as they are. Default: one run at a time on the
        /// config's device.
        #[arg(long, value_name = "LIST")]
        devices: Option<String>,
        /// Print a bash script that submits the sweep to Slurm (an array job, one task per
        /// shard: N from --shard I/N, else one per run; requeued on preemption, its runs
        /// checkpointing on SIGUSR1 120 s ahead and resuming) and a dependent `triadapt
        /// collect`. The tasks use --devices (default 0; `cpu` on a CPU cluster).
        #[arg(long)]
        slurm: bool,
        /// sbatch options for --slurm (default: $TRIADAPT_SBATCH_OPTS, else
        /// "--gres=gpu:1 --cpus-per-task=8 --time=48:00:00").
        #[arg(long, value_name = "OPTS", allow_hyphen_values = true)]
        sbatch_opts: Option<String>,
    },
    /// Rebuild runs.csv from the row files (runs/<id>/row.json) of one or more results folders,
    /// e.g. copies of results/<name> written by different shards.
    #[command(
        after_help = "Examples:\n  triadapt collect results/glue_r2 /mnt/node2/results/glue_r2\n  triadapt collect results/glue_r2 --out results/glue_r2/all.csv"
    )]
    Collect {
        /// Results folders (each holding runs/<id>/row.json).
        #[arg(value_name = "RESULTS_DIR", required = true)]
        dirs: Vec<PathBuf>,
        /// Output file (default: runs.csv in the first folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
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
    Heatmap {
        /// A results directory holding runs.csv (e.g. results/glue).
        #[arg(value_name = "RESULTS_DIR")]
        results: PathBuf,
        /// Folder for the figures (a subfolder named after the results directory is made).
        #[arg(long, default_value = "plots")]
        out: PathBuf,
        /// Only this task (default: one figure per task with rank patterns).
        #[arg(long)]
        task: Option<String>,
        /// Only the runs of this rank budget (the sum of ranks a run may reach, e.g. 144 =
        /// rank 2 x 72 matrices; LoRA: its total rank). Default: one figure per budget.
        #[arg(long, value_name = "B")]
        budget: Option<f64>,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// Draw ablation curves (paper Figures 3-5: a metric against a swept key, one line per
    /// method, mean over seeds with a min-max band), plus total rank and training loss / dev
    /// metric against step from the run folders' curve.csv (per rank budget, the mean over seeds
    /// with a min-max band). Writes PNG and SVG into <out>/<results name>/:
    /// ablation_<task>_<key>, rank_growth_<task>_budget<B>, training_<task>_budget<B>, with the
    /// plotted numbers in .csv and the runs drawn in .runs.csv beside each.
    #[command(
        after_help = "Examples:\n  triadapt plot results/rte_warmup\n  triadapt plot results/rte_refrank --x method.triadapt.ref_rank\n  triadapt plot results/demo --budget 24 --width 450 --height 400 --scale 2.2"
    )]
    Plot {
        /// A results directory holding runs.csv (e.g. results/rte_warmup).
        #[arg(value_name = "RESULTS_DIR")]
        results: PathBuf,
        /// Swept key on the x axis, e.g. method.triadapt.warmup_steps; several keys joined by
        /// commas are one knob (first non-empty per run). Default: the first swept column, joined
        /// with later swept columns that are empty wherever it is set.
        #[arg(long, value_name = "KEY")]
        x: Option<String>,
        /// runs.csv column on the y axis (e.g. f1, mm_accuracy). Default: best_score, the run's
        /// main dev metric.
        #[arg(long, value_name = "NAME")]
        metric: Option<String>,
        /// Folder for the figures (a subfolder named after the results directory is made).
        #[arg(long, default_value = "plots")]
        out: PathBuf,
        /// Only this task (default: every task in runs.csv).
        #[arg(long)]
        task: Option<String>,
        /// Rank-growth and training figures: only the runs of this rank budget (the sum of ranks
        /// a run may reach, e.g. 144 = rank 2 x 72 matrices; LoRA: its total rank). Default: one
        /// figure per budget.
        #[arg(long, value_name = "B")]
        budget: Option<f64>,
        #[command(flatten)]
        size: SizeArgs,
    },
    /// Print the GLUE dev table in the paper's layout (one block per reference rank r; rows:
    /// methods and settings of the other swept keys x MNLI m/mm, SST-2, CoLA, QQP acc/F1, QNLI,
    /// RTE, MRPC, STS-B Corr, All Avg; x100, mean ± std over seeds (n)) and write it as
    /// table.md and table.csv (n, mean, std, min, max per cell).
    #[command(
        after_help = "Examples:\n  triadapt table results/glue_r2\n  triadapt table results/demo --out tables/demo\n  triadapt table results/glue_r2 --reference published_glue.csv"
    )]
    Table {
        /// A results directory holding runs.csv (e.g. results/glue).
        #[arg(value_name = "RESULTS_DIR")]
        results: PathBuf,
        /// Folder for table.md and table.csv (default: the results directory).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Published numbers to print beside ours with the difference: a CSV with the columns
        /// method, budget (the reference rank r), task (mnli_m, mnli_mm, sst2, cola, qqp_acc,
        /// qqp_f1, qnli, rte, mrpc, stsb, all_avg) and score (x100); README "triadapt table".
        #[arg(long, value_name = "FILE")]
        reference: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    #[command(
        after_help = "Examples:\n  triadapt completions bash > /etc/bash_completion.d/triadapt\n  triadapt completions zsh > ~/.zfunc/_triadapt\n  triadapt completions fish > ~/.config/fish/completions/triadapt.fish"
    )]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
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
    Predict {
        /// An HF model directory (config.json + model.safetensors | pytorch_model.bin |
        /// rust_model.ot), a run folder, a triadapt adapter folder, or a PEFT LoRA adapter folder
        /// (applied to its base model).
        #[arg(long)]
        model: PathBuf,
        /// JSON-lines input file.
        #[arg(long)]
        input: PathBuf,
        /// cls: sequence classification/regression logits; qa: start and end logits per token.
        /// Default: an adapter's own head, else cls.
        #[arg(long)]
        head: Option<HeadKind>,
        /// Also print the last hidden state ([len][hidden]).
        #[arg(long)]
        hidden: bool,
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Longest-first truncation length for text inputs (special tokens included).
        #[arg(long, default_value_t = 512)]
        max_len: usize,
        /// Run under bf16 autocast (weights stay float32), as HF under torch.autocast.
        #[arg(long)]
        bf16: bool,
        #[command(flatten)]
        from: AdapterArgs,
    },
    /// Tokenize JSON-lines {"text_a", "text_b"?} with a model's spm.model exactly as HF's
    /// DebertaV2Tokenizer: one JSON line of input_ids, token_type_ids, attention_mask each.
    #[command(
        after_help = "Examples:\n  triadapt tokenize --model data/tiny-deberta-v3 --input inputs.jsonl\n  triadapt tokenize --model spm.model --input pairs.jsonl --max-len 128 --pad"
    )]
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
    Fetch {
        /// model, glue or squad2.
        #[arg(value_name = "WHAT")]
        kind: commands::fetch::FetchKind,
        /// The model's hub name, OWNER/NAME[@REVISION] (model), or the task or `all` (glue);
        /// none for squad2.
        #[arg(value_name = "NAME")]
        name: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Env => commands::env::run(),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "triadapt", &mut std::io::stdout());
            Ok(())
        }
        Command::Heatmap { results, out, task, budget, size } => {
            let size = size.figure_size();
            commands::report::heatmap(&results, &out, &crate::report::heatmap::HeatmapOptions { task, budget, size })
        }
        Command::Plot { results, x, metric, out, task, budget, size } => {
            let size = size.figure_size();
            commands::report::plot(&results, &out, &crate::report::curves::PlotOptions { x, metric, task, budget, size })
        }
        Command::Table { results, out, reference } => commands::report::table(&results, out.as_deref(), reference.as_deref()),
        Command::Bench(args) => commands::bench::run(&args),
        Command::Sweep { file, dry_run, shard, devices, slurm, sbatch_opts } => {
            let shard = shard.map(|s| s.parse::<crate::sweep::Shard>()).transpose()?;
            commands::sweep::run(&commands::sweep::SweepArgs {
                file: &file,
                dry_run,
                shard,
                devices: devices.as_deref(),
                slurm,
                sbatch_opts: sbatch_opts.as_deref(),
            })
        }
        Command::Collect { dirs, out } => commands::sweep::collect(&dirs, out.as_deref()),
        Command::Eval { model, task, split, data_dir, max_len, batch_size, device, predictions, from } => {
            let device = crate::device::parse_device(&device)?;
            let args = commands::eval::EvalArgs {
                model: &model,
                task: &task,
                split: &split,
                data_dir: data_dir.as_deref(),
                max_len,
                batch_size,
                device,
                with_predictions: predictions,
                checkpoint: from.checkpoint,
                base_model: from.base_model.as_deref(),
            };
            println!("{}", serde_json::to_string_pretty(&commands::eval::run(&args)?)?);
            Ok(())
        }
        Command::Merge { adapter, out, from } => commands::adapter::merge(&adapter, from.checkpoint, from.base_model.as_deref(), &out),
        Command::ExportPeft { adapter, out, from } => {
            commands::adapter::export(&adapter, from.checkpoint, from.base_model.as_deref(), &out)
        }
        Command::Train { config, method, sets, out, device, resume, init_adapter } => {
            let method = method.map(|m| m.parse()).transpose()?;
            let init_adapter = init_adapter.as_deref();
            commands::train::run(&commands::train::TrainArgs {
                config: &config,
                method,
                sets: &sets,
                out: out.as_deref(),
                device: device.as_deref(),
                resume,
                init_adapter,
            })
        }
        Command::Predict { model, input, head, hidden, device, max_len, bf16, from } => {
            let device = crate::device::parse_device(&device)?;
            let (checkpoint, base_model) = (from.checkpoint, from.base_model.as_deref());
            commands::predict::run(&commands::predict::PredictArgs {
                model: &model,
                input: &input,
                head,
                hidden,
                device,
                max_len,
                bf16,
                checkpoint,
                base_model,
            })
        }
        Command::Tokenize { model, input, max_len, pad } => commands::tokenize::run(&model, &input, max_len, pad),
        Command::Fetch { kind, name, quiet } => commands::fetch::run(kind, name.as_deref(), quiet),
    }
}
