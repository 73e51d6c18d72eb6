//! `triadapt bench`: times training steps (forward, backward, clipping, AdamW, the rank
//! controller: exactly [`Trainer::step`](crate::train::Trainer::step)) on a randomly initialised DeBERTa-v3 of a real shape,
//! after untimed warm-up steps, and reports throughput, the median step time and its spread, the
//! time spent in the rank controller, peak memory and the achieved matmul FLOP rate.
//!
//! `scripts/bench_peft.py` measures the same thing with HF transformers + peft, with the same
//! output keys; `scripts/bench_suite.py` (`make bench`) runs both, alternating, and writes the
//! tables.
//!
//! - `shape.rs` (the built-in model shapes), `variant.rs` (what trains, `--method`), `spec.rs`
//!   (one configuration, its method block from the method's own `MethodConfig::at_bench_rank`,
//!   the random batch);
//! - `runner.rs` (a benchmark: build, warm up, time, summarise), `timed.rs` (the phase timer
//!   observing the real step, CUDA sync), `probes.rs` (process memory and CPU time), `flops.rs` (the
//!   FLOP model and the peak matmul rate), `ops.rs` (ops per phase, `--ops`);
//! - `result.rs` (what a benchmark reports).

mod flops;
mod ops;
mod probes;
mod result;
mod runner;
mod shape;
mod spec;
mod timed;
mod variant;

pub use flops::{matmul_gflops, model_flops, relative_rows_used};
pub use ops::{count_ops, OpsCount};
pub use probes::{process_cpu_seconds, process_memory_kb};
pub use result::{BenchResult, OpsByPhase};
pub use runner::{percentile, run};
pub use shape::Shape;
pub use spec::{BenchSpec, Precision};
pub use variant::Variant;
