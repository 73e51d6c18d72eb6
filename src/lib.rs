//! triadapt: TriAdaptLoRA and its baselines on DeBERTaV2/V3, built on tch (LibTorch).
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
pub mod device;
pub mod files;
mod listed;
pub mod metrics;
pub mod model;
pub mod op_count;
pub mod optim;
pub mod peft;
pub mod precision;
pub mod progress;
pub mod report;
pub mod sweep;
pub mod train;
