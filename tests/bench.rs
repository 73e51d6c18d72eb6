//! `triadapt bench` runs on the tiny shape and reports every field (timings are never asserted).

use std::process::Command;

fn triadapt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_triadapt")).args(args).output().expect("run triadapt")
}

#[test]
fn bench_on_the_tiny_shape_prints_its_fields() {
    let out = triadapt(&["bench", "--model-config", "tiny", "--steps", "2", "--threads", "1"]);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for field in ["examples/s", "median step", "rank controller", "peak memory", "GFLOP/s"] {
        assert!(text.contains(field), "no `{field}` in:\n{text}");
    }

    // JSON, a growing method, the phase breakdown: the keys the suite reads.
    let out = triadapt(&["bench", "--model-config", "tiny", "--steps", "2", "--threads", "1", "--method", "triadapt-grow", "--breakdown", "--json"]);
    assert!(out.status.success(), "bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let row: serde_json::Value = serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    for key in ["examples_per_s", "step_ms_median", "step_ms_p25", "step_ms_p75", "cpu_ms_per_step", "controller_ms_per_step", "peak_rss_mb", "model_gflop_per_step", "forward_ms"] {
        assert!(row[key].as_f64().is_some_and(|v| v.is_finite() && v >= 0.0), "{key}: {}", row[key]);
    }
    assert!(row["avg_rank_end"].as_f64().unwrap() > row["avg_rank_start"].as_f64().unwrap(), "triadapt-grow grew nothing: {row}");
}
