//! `triadapt env`: what LibTorch this binary runs on and what it can see.

use serde::Serialize;

#[derive(Serialize)]
pub struct EnvReport {
    pub triadapt_version: &'static str,
    pub torch_version: &'static str,
    pub libtorch_dir: &'static str,
    pub cuda_available: bool,
    pub cudnn_available: bool,
    pub cuda_device_count: i64,
    pub threads: i32,
    /// Where hub models and GLUE are looked for (`HF_HUB_CACHE`, `HF_HOME`, ...).
    pub hf_hub_cache: Option<String>,
    /// Where SQuAD 2.0 is looked for (`TRIADAPT_CACHE`).
    pub triadapt_cache: Option<String>,
    pub hf_endpoint: String,
    /// `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE`: no downloads.
    pub hf_hub_offline: bool,
    /// Whether a hub token was found (`HF_TOKEN` or the token file); never the token itself.
    pub hf_token_found: bool,
}

pub fn report() -> EnvReport {
    EnvReport {
        triadapt_version: env!("CARGO_PKG_VERSION"),
        torch_version: env!("TRIADAPT_TORCH_VERSION"),
        libtorch_dir: env!("TRIADAPT_LIBTORCH_DIR"),
        cuda_available: tch::Cuda::is_available(),
        cudnn_available: tch::Cuda::cudnn_is_available(),
        cuda_device_count: tch::Cuda::device_count(),
        threads: tch::get_num_threads(),
        hf_hub_cache: crate::data::hub::hub_cache_dir().ok().map(|p| p.display().to_string()),
        triadapt_cache: crate::data::hub::own_cache_dir().ok().map(|p| p.display().to_string()),
        hf_endpoint: crate::data::hub::hub_endpoint(),
        hf_hub_offline: crate::data::hub::hub_offline(),
        hf_token_found: crate::data::hub::hub_token().is_some(),
    }
}

pub fn run() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&report())?);
    Ok(())
}
