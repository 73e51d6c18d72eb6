//! Embeds LibTorch's library directory as an rpath (so neither the binary nor `cargo test` needs
//! LD_LIBRARY_PATH), links libtorch_cuda explicitly so that CUDA is found on a GPU machine, and
//! records the torch version the binary was built against for `triadapt env` and the git commit
//! for run folders' run_info.json.
use std::path::Path;

fn main() {
    let dir = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    let mut version = String::from("unknown");
    if !dir.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if Path::new(&dir).join("libtorch_cuda.so").exists() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
        }
        // PyPI torch keeps its version next to lib/: torch/version.py has `__version__ = '...'`.
        if let Ok(text) = std::fs::read_to_string(Path::new(&dir).join("../version.py")) {
            if let Some(line) = text.lines().find(|l| l.starts_with("__version__")) {
                version = line.split('\'').nth(1).unwrap_or("unknown").to_string();
            }
        }
    }
    println!("cargo:rustc-env=TRIADAPT_TORCH_VERSION={version}");
    // The commit the binary was built from, for run_info.json.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TRIADAPT_GIT_COMMIT={commit}");
    if Path::new(".git/HEAD").exists() {
        println!("cargo:rerun-if-changed=.git/HEAD");
    }
    println!("cargo:rustc-env=TRIADAPT_LIBTORCH_DIR={dir}");
    println!("cargo:rerun-if-changed=build.rs");
}
