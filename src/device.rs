//! Choosing the compute device from the command line, and counted device-to-host reads.

use anyhow::{bail, Result};
use tch::Device;

/// `cpu`, `cuda` (first GPU) or `cuda:N`, without checking that the device exists.
pub fn parse_device_name(s: &str) -> Result<Device> {
    Ok(match s {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => Device::Cuda(n),
            None => bail!("unknown device {other:?} (expected cpu, cuda or cuda:N)"),
        },
    })
}

/// [`parse_device_name`], and asking for CUDA where none is found is an error.
pub fn parse_device(s: &str) -> Result<Device> {
    let device = parse_device_name(s)?;
    if let Device::Cuda(n) = device {
        let count = tch::Cuda::device_count() as usize;
        if count == 0 {
            bail!("--device {s}: CUDA is not available here (torch sees no GPU); use --device cpu");
        }
        if n >= count {
            bail!("--device {s}: only {count} CUDA device(s) present");
        }
    }
    Ok(device)
}

thread_local! {
    /// Device-to-host reads made through [`read_f64`] and friends on this thread.
    static HOST_READS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn count_read() {
    HOST_READS.with(|c| c.set(c.get() + 1));
}

/// Device-to-host reads made on this thread so far. Every read of a device value on the host
/// waits for the device to finish all queued work: the training step makes none except on
/// logging, evaluation and allocation steps (tests/methods.rs counts them).
pub fn host_reads() -> u64 {
    HOST_READS.with(|c| c.get())
}

/// A one-element tensor's value on the host (one counted read).
pub fn read_f64(t: &tch::Tensor) -> f64 {
    count_read();
    t.double_value(&[])
}

/// A tensor's values on the host as f64, flattened (one counted read).
pub fn read_vec_f64(t: &tch::Tensor) -> Vec<f64> {
    count_read();
    Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).to_device(Device::Cpu).flatten(0, -1)).expect("a float tensor")
}

/// A boolean tensor's values on the host, flattened (one counted read).
pub fn read_vec_bool(t: &tch::Tensor) -> Vec<bool> {
    count_read();
    Vec::<bool>::try_from(t.to_kind(tch::Kind::Bool).to_device(Device::Cpu).flatten(0, -1)).expect("a bool tensor")
}

/// A 0-dim float32 tensor holding `v` on `device`, made there (a fill, not a host-to-device
/// copy of a host tensor).
pub fn scalar_on(v: f64, device: Device) -> tch::Tensor {
    tch::Tensor::full([] as [i64; 0], v, (tch::Kind::Float, device))
}

/// A device as the CLI and result files name it: `cpu` or `cuda:N`.
pub fn device_name(d: tch::Device) -> String {
    match d {
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
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
    let cuda_version = libtorch
        .split("+cu")
        .nth(1)
        .filter(|v| v.len() >= 3 && v.chars().all(|c| c.is_ascii_digit()))
        .map(|v| format!("{}.{}", &v[..v.len() - 1], &v[v.len() - 1..]));
    let device_name = cuda_available
        .then(|| std::process::Command::new("nvidia-smi").args(["--query-gpu=name", "--format=csv,noheader"]).output().ok())
        .flatten()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().next().map(|l| l.trim().to_string()));
    Environment { libtorch, cuda_available, cuda_version, device_name }
}
