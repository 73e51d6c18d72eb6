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

/// What a run folder records of its environment (`run_info.json`).
pub struct Environment {
    pub libtorch: String,
    pub cuda_available: bool,
    /// The CUDA version the LibTorch build targets (`+cu130` in its version: "13.0").
    pub cuda_version: Option<String>,
    /// The first GPU's name as nvidia-smi reports it, when CUDA is available.
    pub device_name: Option<String>,
}

pub fn environment() -> Environment {
    let libtorch = env!("TRIADAPT_TORCH_VERSION").to_string();
    let cuda_available = tch::Cuda::is_available();
    let cuda_version = libtorch.split("+cu").nth(1).filter(|v| v.len() >= 3 && v.chars().all(|c| c.is_ascii_digit())).map(|v| format!("{}.{}", &v[..v.len() - 1], &v[v.len() - 1..]));
    let device_name = cuda_available
        .then(|| std::process::Command::new("nvidia-smi").args(["--query-gpu=name", "--format=csv,noheader"]).output().ok())
        .flatten()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(|l| l.trim().to_string()));
    Environment { libtorch, cuda_available, cuda_version, device_name }
}

pub fn run() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&report())?);
    Ok(())
}
