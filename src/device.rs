//! Choosing the compute device from the command line.

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
