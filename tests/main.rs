//! The integration tests, one binary (each area a module): linking LibTorch and polars once
//! instead of once per file is most of what a clean `make test` spends on tests.

mod common;

mod adalora_peft;
mod adapter_cli;
mod bench;
mod checkpoints;
mod cli;
mod conformance;
mod eval;
mod export;
mod fetch;
mod hf_parity;
mod increlora;
mod methods;
mod metrics;
mod op_count;
mod peft_import;
mod report;
mod run_loop;
mod squad;
mod sweep;
mod sweep_claims;
mod tokenizer;
mod train;
