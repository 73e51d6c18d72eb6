//! Trainable tensors as views into a few flat buffers, so that clipping and AdamW run a fixed
//! number of ops per step however many tensors train (on a GPU, a step is bound by the number of
//! kernels it launches; README "Counting kernels").
//!
//! Packing copies every parameter of one dtype and device into one buffer and re-points the
//! parameter (the same tensor the model holds) at its slice, with its moments and entry classes
//! beside it in buffers of the same layout. The gradients autograd writes each step are gathered
//! into a flat gradient buffer by one `cat`, and each `.grad` is re-pointed at its slice, so that
//! clipping in place is seen by every reader of `.grad` (the rank controllers read clipped
//! gradients). Packing happens when the set or shape of parameters changes (registration,
//! growth, restored state), never on an ordinary step.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

extern "C" {
    fn triadapt_stacked_l2_norms(tensors: *const *const libc::c_void, n: libc::size_t) -> *mut libc::c_void;
}

/// The L2 norm of each tensor, stacked (one `aten::_foreach_norm` and one `aten::stack`, as
/// torch.nn.utils.clip_grad_norm_ computes them).
pub fn stacked_l2_norms(tensors: &[Tensor]) -> Result<Tensor> {
    let ptrs: Vec<*const libc::c_void> = tensors.iter().map(|t| t.as_ptr() as *const libc::c_void).collect();
    // SAFETY: every pointer is a live at::Tensor (tch's C_tensor) borrowed for the call; the
    // shim returns a new heap-allocated at::Tensor (owned by the returned Tensor) or null.
    let out = unsafe { triadapt_stacked_l2_norms(ptrs.as_ptr(), ptrs.len()) };
    if out.is_null() {
        bail!("_foreach_norm failed over {} gradient tensors", tensors.len());
    }
    // SAFETY: a fresh at::Tensor from the shim.
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// One flat buffer's members and their slices.
#[derive(Debug)]
pub(super) struct FlatGroup {
    /// Indices into the optimizer's parameter list, in the buffer's order.
    pub members: Vec<usize>,
    /// Offset of each member (same order as `members`).
    pub offsets: Vec<i64>,
    pub value: Tensor,
    /// The gathered gradients: empty until the first gather (`cat` sizes it), so that float32 CPU
    /// training, which never gathers, holds no second gradient buffer.
    pub grad: Tensor,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
    /// Each entry's class (int32), for the per-entry scalars of the update.
    pub class: Tensor,
    /// Float32 CPU buffers, which the one-pass kernel updates.
    pub kernel: bool,
}

impl FlatGroup {
    /// Empty buffers of `n` entries for members of this kind and device.
    pub fn new(kind: Kind, device: Device, members: Vec<usize>, numels: &[i64]) -> Self {
        let mut offsets = Vec::with_capacity(numels.len());
        let mut n = 0;
        for &k in numels {
            offsets.push(n);
            n += k;
        }
        let zeros = |kind: Kind| Tensor::zeros([n], (kind, device));
        FlatGroup {
            members,
            offsets,
            value: zeros(kind),
            grad: Tensor::empty([0], (kind, device)),
            exp_avg: zeros(kind),
            exp_avg_sq: zeros(kind),
            class: zeros(Kind::Int),
            kernel: kind == Kind::Float && device == Device::Cpu,
        }
    }

    /// The slice of `flat` at member position `j`, shaped as `shape`.
    pub fn slice(&self, flat: &Tensor, j: usize, shape: &[i64]) -> Tensor {
        let numel: i64 = shape.iter().product();
        flat.narrow(0, self.offsets[j], numel).view(shape)
    }

    /// Copies the members' gradients into the flat gradient buffer (one `cat`) and re-points each
    /// `.grad` at its slice. False (nothing changed) when some member has no gradient.
    pub fn gather_grads(&self, values: &[&Tensor]) -> bool {
        let grads: Vec<Tensor> = values.iter().map(|v| v.grad()).collect();
        if grads.iter().any(|g| !g.defined()) {
            return false;
        }
        tch::no_grad(|| {
            let flat: Vec<Tensor> = grads.iter().map(|g| g.reshape([-1])).collect();
            let _ = Tensor::cat_out(&self.grad, &flat, 0);
            for (j, mut g) in grads.into_iter().enumerate() {
                g.set_data(&self.slice(&self.grad, j, &g.size()));
            }
        });
        true
    }
}
