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
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_string());
    bar
}
