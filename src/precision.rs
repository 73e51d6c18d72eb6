//! bf16 autocast on CPU and CUDA, as `torch.autocast(device_type, dtype=torch.bfloat16)`.
//!
//! tch 0.24's `tch::autocast` switches on CUDA autocast only, at torch's default float16, and has
//! no way to set the dtype. LibTorch's own C++ entry points (`at::autocast::set_autocast_enabled`,
//! `set_autocast_dtype`, per device type) do both; they are called here by their C++ names.
//! [`enable_bf16`] then checks that the setting took effect (a float32 matrix product under
//! autocast must come out in bf16) and fails with a clear message when it did not, so a LibTorch
//! that changed these functions cannot silently train in the wrong precision.

use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

/// `c10::DeviceType` values (an `int8_t` enum).
const DEVICE_CPU: i8 = 0;
const DEVICE_CUDA: i8 = 1;
/// `c10::ScalarType::BFloat16` (an `int8_t` enum).
const SCALAR_BFLOAT16: i8 = 15;

extern "C" {
    #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
    fn at_set_autocast_dtype(device_type: i8, dtype: i8);
    #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
    fn at_get_autocast_dtype(device_type: i8) -> i8;
    #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
    fn at_set_autocast_enabled(device_type: i8, enabled: bool);
    #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
    fn at_is_autocast_enabled(device_type: i8) -> bool;
    #[link_name = "_ZN2at13globalContextEv"]
    fn at_global_context() -> *mut std::ffi::c_void;
    #[link_name = "_ZN2at7Context18setAllowTF32CuBLASEb"]
    fn at_context_set_allow_tf32_cublas(context: *mut std::ffi::c_void, allow: bool);
    #[link_name = "_ZNK2at7Context15allowTF32CuBLASEv"]
    fn at_context_allow_tf32_cublas(context: *const std::ffi::c_void) -> bool;
}

/// `tf32: true`: lets cuBLAS run float32 matrix products on TF32 tensor cores, as
/// `torch.backends.cuda.matmul.allow_tf32 = True` (off by default, as in PyTorch; no effect on
/// the CPU). Checks that the setting took effect.
pub fn set_tf32(allow: bool) -> Result<()> {
    // SAFETY: `at::globalContext()` returns LibTorch's process-wide context; the two members are
    // a plain setter and getter of one flag (`this` is passed first, as the C++ ABI does).
    let now = unsafe {
        let context = at_global_context();
        at_context_set_allow_tf32_cublas(context, allow);
        at_context_allow_tf32_cublas(context)
    };
    ensure!(now == allow, "LibTorch did not take `tf32: {allow}` (it reports allow_tf32 = {now})");
    Ok(())
}

fn device_type(device: Device) -> i8 {
    if device.is_cuda() {
        DEVICE_CUDA
    } else {
        DEVICE_CPU
    }
}

/// Sets the autocast dtype of `device`'s type to bf16 and checks that it took effect.
pub fn enable_bf16(device: Device) -> Result<()> {
    let dt = device_type(device);
    // SAFETY: plain setters/getters of LibTorch's thread-local autocast state, taking and
    // returning int8 enums by value.
    let dtype = unsafe {
        at_set_autocast_dtype(dt, SCALAR_BFLOAT16);
        at_get_autocast_dtype(dt)
    };
    let probe = autocast(device, true, || {
        let a = Tensor::ones([4, 4], (Kind::Float, device));
        a.matmul(&a).kind()
    });
    ensure!(
        dtype == SCALAR_BFLOAT16 && probe == Kind::BFloat16,
        "bf16 autocast did not take effect on {device:?} (LibTorch reports autocast dtype {dtype}, a float32 \
         matrix product under autocast gave {probe:?}); train without `bf16: true`"
    );
    Ok(())
}

/// Whether bf16 autocast is on for `device`'s type on this thread (inside an [`autocast`] block).
pub fn bf16_autocast_active(device: Device) -> bool {
    let dt = device_type(device);
    // SAFETY: plain getters of LibTorch's thread-local autocast state.
    unsafe { at_is_autocast_enabled(dt) && at_get_autocast_dtype(dt) == SCALAR_BFLOAT16 }
}

/// Runs `f` with autocast on for `device`'s type when `enabled` (restoring the previous state
/// after), as a `with torch.autocast(...)` block. Call [`enable_bf16`] once first.
pub fn autocast<T>(device: Device, enabled: bool, f: impl FnOnce() -> T) -> T {
    if !enabled {
        return f();
    }
    let dt = device_type(device);
    // SAFETY: see `enable_bf16`; the nesting counter and cache calls are torch-sys's C wrappers.
    // The cache of bf16 copies of the weights must be dropped when the outermost block ends, as
    // torch.autocast's exit does: the optimizer then changes the float32 weights in place, and a
    // stale cached copy would be used by the next forward.
    let before = unsafe { at_is_autocast_enabled(dt) };
    unsafe {
        at_set_autocast_enabled(dt, true);
        torch_sys::at_autocast_increment_nesting();
    }
    let out = f();
    unsafe {
        if torch_sys::at_autocast_decrement_nesting() == 0 {
            torch_sys::at_autocast_clear_cache();
        }
        at_set_autocast_enabled(dt, before);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_bf16_autocast_takes_effect_only_inside_the_block() {
        enable_bf16(Device::Cpu).unwrap();
        let a = Tensor::ones([3, 3], (Kind::Float, Device::Cpu));
        assert_eq!(autocast(Device::Cpu, true, || a.matmul(&a).kind()), Kind::BFloat16);
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        assert_eq!(autocast(Device::Cpu, false, || a.matmul(&a).kind()), Kind::Float);
        // Cross-entropy is on CPU autocast's float32 list (softmax is on CUDA's only).
        let labels = Tensor::from_slice(&[0i64, 1, 2]);
        let l = autocast(Device::Cpu, true, || a.matmul(&a).cross_entropy_for_logits(&labels).kind());
        assert_eq!(l, Kind::Float);
    }

    #[test]
    fn tf32_switches_on_and_off() {
        set_tf32(true).unwrap();
        set_tf32(false).unwrap();
    }

    /// The cast cache is dropped at the end of each block: a weight changed in place between two
    /// blocks is seen by the second (torch.autocast's exit clears it the same way).
    #[test]
    fn an_in_place_weight_change_is_seen_by_the_next_block() {
        enable_bf16(Device::Cpu).unwrap();
        let w = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let x = Tensor::ones([1, 2], (Kind::Float, Device::Cpu));
        let first = autocast(Device::Cpu, true, || f64::try_from(x.matmul(&w).sum(Kind::Float)).unwrap());
        tch::no_grad(|| {
            let _ = w.shallow_clone().fill_(3.0);
        });
        let second = autocast(Device::Cpu, true, || f64::try_from(x.matmul(&w).sum(Kind::Float)).unwrap());
        assert_eq!((first, second), (4.0, 12.0));
    }
}
