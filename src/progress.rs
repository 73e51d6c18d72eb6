//! Progress bars for long work: shown on a terminal, silent otherwise (CI logs, tests).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` steps with a message slot (loss, lr, rank, throughput) and the ETA.
pub fn step_bar(total: u64, enabled: bool, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if !enabled {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}").expect("valid template").progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}

/// A duration for log lines: `45s`, `12m05s`, `3h07m`.
pub fn duration_text(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".into();
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(super::duration_text(45.4), "45s");
        assert_eq!(super::duration_text(725.0), "12m05s");
        assert_eq!(super::duration_text(3.0 * 3600.0 + 7.0 * 60.0 + 20.0), "3h07m");
        assert_eq!(super::duration_text(f64::NAN), "?");
    }
}
