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
}

impl FlatGroup {
    /// A group of `members` (of one kind and device) whose buffers are the members' values and
    /// moments concatenated in this order (one `cat` per buffer), and `class` (see
    /// [`class_buffer`]).
    pub fn pack(members: Vec<usize>, values: &[&Tensor], exp_avg: &[&Tensor], exp_avg_sq: &[&Tensor], class: Tensor) -> Self {
        let (kind, device) = (values[0].kind(), values[0].device());
        let mut offsets = Vec::with_capacity(values.len());
        let mut n = 0;
        for v in values {
            offsets.push(n);
            n += v.numel() as i64;
        }
        let flat = |ts: &[&Tensor]| Tensor::cat(&ts.iter().map(|t| t.reshape([-1])).collect::<Vec<_>>(), 0);
        FlatGroup {
            members,
            offsets,
            value: flat(values),
            grad: Tensor::empty([0], (kind, device)),
            exp_avg: flat(exp_avg),
            exp_avg_sq: flat(exp_avg_sq),
            class,
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

/// The classes of one member's entries, for [`class_buffer`].
pub(super) enum MemberClasses<'a> {
    /// Every entry is of this class (a tensor that never grew).
    Uniform(i32),
    /// Entries born at `births[k]` (ascending) are of class `classes[k]`; `birth` holds each
    /// entry's birth step (float, integral values).
    ByBirth { births: Vec<i64>, classes: Vec<i32>, birth: &'a Tensor },
}

/// Every entry's class (int32) for members laid out one after the other (`numels` entries
/// each), in a fixed number of ops however many members there are (re-packing after growth
/// happens on a GPU, where each op is a launch): one repeat of the members' classes, then, for
/// the entries of grown members, a search of (member, birth) in a table of their classes and one
/// indexed copy into place.
pub(super) fn class_buffer(device: Device, numels: &[i64], members: &[MemberClasses]) -> Tensor {
    let total: i64 = numels.iter().sum();
    let upload_i64 = |v: &[i64]| Tensor::from_slice(v).to_device(device);
    let uniform: Vec<i32> = members.iter().map(|m| if let MemberClasses::Uniform(c) = m { *c } else { 0 }).collect();
    let mut class = Tensor::from_slice(&uniform).to_device(device).repeat_interleave_self_tensor(&upload_i64(numels), 0, total);
    // Grown members: their entries' position in the buffer, and the key (member, birth) whose
    // class the sorted table gives.
    let mut starts = Vec::new();
    let mut counts = Vec::new();
    let mut key_base = Vec::new();
    let (mut table_keys, mut table_classes) = (Vec::new(), Vec::new());
    let mut births = Vec::new();
    let span = 1 + members
        .iter()
        .filter_map(|m| if let MemberClasses::ByBirth { births, .. } = m { births.last().copied() } else { None })
        .max()
        .unwrap_or(0);
    let mut offset = 0;
    for (m, &n) in members.iter().zip(numels) {
        if let MemberClasses::ByBirth { births: bs, classes, birth } = m {
            let base = (key_base.len() as i64 * span) as f64;
            starts.push(offset);
            counts.push(n);
            key_base.push(base);
            for (&b, &c) in bs.iter().zip(classes) {
                table_keys.push(base + b as f64);
                table_classes.push(c);
            }
            births.push(birth.reshape([-1]));
        }
        offset += n;
    }
    if births.is_empty() {
        return class;
    }
    let grown: i64 = counts.iter().sum();
    let repeat = |v: Tensor| v.repeat_interleave_self_tensor(&upload_i64(&counts), 0, grown);
    let keys = repeat(Tensor::from_slice(&key_base).to_device(device)) + Tensor::cat(&births, 0).to_kind(Kind::Double);
    let at = keys.searchsorted(&Tensor::from_slice(&table_keys).to_device(device), false, false, "left", None::<Tensor>);
    let grown_class = Tensor::from_slice(&table_classes).to_device(device).index_select(0, &at);
    // Position of the i-th grown entry: i, plus its member's start less the grown entries before it.
    let mut before = 0;
    let shift: Vec<i64> = starts
        .iter()
        .zip(&counts)
        .map(|(&s, &c)| {
            let d = s - before;
            before += c;
            d
        })
        .collect();
    let position = Tensor::arange(grown, (Kind::Int64, device)) + repeat(upload_i64(&shift));
    let _ = class.index_copy_(0, &position, &grown_class);
    class
}
