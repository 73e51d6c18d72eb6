//! Embeds LibTorch's library directory as an rpath (so neither the binary nor `cargo test` needs
//! LD_LIBRARY_PATH), links libtorch_cuda explicitly so that CUDA is found on a GPU machine, and
//! records the torch version the binary was built against for `triadapt env`.
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
    println!("cargo:rustc-env=TRIADAPT_LIBTORCH_DIR={dir}");
    println!("cargo:rerun-if-changed=build.rs");
}
