//! `run_info.json`: where and with what a run was made (triadapt version and commit, LibTorch,
//! device, CUDA, host, times, command line), so a result can be traced back.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub triadapt_version: String,
    /// `git describe --always --dirty` of the source tree at build time ("unknown" outside git).
    pub git_commit: String,
    pub libtorch_version: String,
    pub device: String,
    pub device_name: Option<String>,
    pub cuda_available: bool,
    pub cuda_version: Option<String>,
    pub host: String,
    /// RFC 3339 (UTC).
    pub started: String,
    pub ended: Option<String>,
    /// Previous starts of this run folder (a resumed run keeps its history).
    #[serde(default)]
    pub resumed_at: Vec<String>,
    pub command_line: Vec<String>,
    /// The model as the config names it and, for a hub model, the commit its files came from.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub model_commit: Option<String>,
}

/// The time now as RFC 3339 UTC.
pub fn utc_now() -> String {
    rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0))
}

/// Seconds since the epoch as an RFC 3339 UTC time.
pub fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// This machine's host name (run_info.json, sweep claims).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Writes `run_info.json` at the start of a run (a resume keeps the first start).
pub fn start(run: &Path, device: tch::Device, model: &str, model_commit: Option<&str>) -> Result<RunInfo> {
    let path = run.join("run_info.json");
    let now = utc_now();
    let previous: Option<RunInfo> = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let env = crate::device::environment();
    let info = match previous {
        Some(mut p) => {
            p.resumed_at.push(now);
            p.ended = None;
            p.model = Some(model.to_string());
            p.model_commit = model_commit.map(str::to_string);
            p
        }
        None => RunInfo {
            triadapt_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("TRIADAPT_GIT_COMMIT").into(),
            libtorch_version: env.libtorch.clone(),
            device: format!("{device:?}"),
            device_name: env.device_name.clone(),
            cuda_available: env.cuda_available,
            cuda_version: env.cuda_version.clone(),
            host: host_name(),
            started: now,
            ended: None,
            resumed_at: Vec::new(),
            command_line: std::env::args().collect(),
            model: Some(model.to_string()),
            model_commit: model_commit.map(str::to_string),
        },
    };
    std::fs::write(&path, serde_json::to_string_pretty(&info)?)?;
    Ok(info)
}

/// Records the end time.
pub fn end(run: &Path, mut info: RunInfo) -> Result<()> {
    info.ended = Some(utc_now());
    std::fs::write(run.join("run_info.json"), serde_json::to_string_pretty(&info)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Against Python's datetime.fromtimestamp(s, timezone.utc): the epoch, a leap day, today.
    #[test]
    fn utc_dates_match_python() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_083_200 + 3723), "2026-12-01T01:02:03Z");
    }
}
