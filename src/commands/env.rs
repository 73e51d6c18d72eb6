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
    }
}

pub fn run() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&report())?);
    Ok(())
}
