//! Embeds LibTorch's library directory as an rpath (so neither the binary nor `cargo test` needs
//! LD_LIBRARY_PATH), links libtorch_cuda explicitly so that CUDA is found on a GPU machine, and
//! records the torch version the binary was built against for `triadapt env` and the git commit
//! for run folders' run_info.json. Compiles the op counter (csrc/op_counter.cpp, a LibTorch
//! RecordFunction callback for `triadapt bench --ops`) and the multi-tensor ops tch does not wrap
//! (csrc/multi_tensor.cpp) against the same LibTorch's headers, with the flags torch-sys compiles
//! its own C++ glue with.
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
    compile_op_counter(&dir);
    println!("cargo:rerun-if-changed=build.rs");
}

/// The op counter's C++ shim, against `<torch>/include` (the lib directory's sibling).
fn compile_op_counter(lib_dir: &str) {
    if lib_dir.is_empty() {
        panic!(
            "DEP_TCH_LIBTORCH_LIB is not set: torch-sys did not report LibTorch's lib directory, needed for csrc/op_counter.cpp's headers"
        );
    }
    let include = Path::new(lib_dir).join("../include");
    if !include.join("ATen/record_function.h").exists() {
        panic!("csrc/op_counter.cpp needs LibTorch's headers: {} has no ATen/record_function.h", include.display());
    }
    // torch-sys's choice of ABI: LIBTORCH_CXX11_ABI, else 1 (PyPI torch since 2.7).
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .include(&include)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("csrc/op_counter.cpp")
        .file("csrc/multi_tensor.cpp")
        .compile("triadapt_op_counter");
    println!("cargo:rerun-if-changed=csrc/op_counter.cpp");
    println!("cargo:rerun-if-changed=csrc/multi_tensor.cpp");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
}
