//! Fine-tuning methods. The backbone asks the linear factory for each matrix by HF path; a
//! method's factory wraps the targeted ones in [`AdaptedLinear`] (frozen W0 + bias + adapter) and
//! keeps a typed handle to each adapter for its rank controller. The model never names a method.

pub mod adalora;
pub mod adapted;
pub mod attach;
pub mod export;
pub mod import;
pub mod increlora;
pub mod lora;
pub mod method;
pub mod save;
pub mod schedule;
pub mod targets;
pub mod triadapt;

use std::sync::{Arc, Mutex};

use anyhow::Result;
use tch::Tensor;

use crate::optim::AdamW;

pub use adapted::{AdaptedLinear, AdapterFactory};
pub use attach::{attach, attach_random, Attached};
pub use targets::TargetSpec;

/// `base + h B^T` in one `addmm` over the flattened leading dimensions: `h` is the scaled
/// low-rank activation [.., r], `b` the up projection [d_out, r], `base` the frozen layer's
/// output [.., d_out].
pub fn add_low_rank(base: &Tensor, h: &Tensor, b: &Tensor) -> Tensor {
    let (d_out, r) = (b.size()[0], b.size()[1]);
    base.reshape([-1, d_out]).addmm(&h.reshape([-1, r]), &b.tr()).view(base.size().as_slice())
}

/// A trainable low-rank update of one frozen matrix. Implementations keep their parameters in a
/// few contiguous tensors (grown by reallocation), never one tensor per rank.
pub trait Adapter: Send + std::fmt::Debug {
    /// The update's output `s * dW x` for an input that has already been through adapter dropout.
    fn delta(&self, x: &Tensor) -> Tensor;
    /// `base + delta(x)`, the adapted layer's output. Low-rank adapters override it with
    /// [`add_low_rank`]: the scaling goes on the small [tokens, r] activation and the up
    /// projection accumulates into `base` in the same matrix product, instead of two more passes
    /// over the [tokens, d_out] output.
    fn add_delta(&self, base: &Tensor, x: &Tensor) -> Tensor {
        base + self.delta(x)
    }
    /// The dense update `s * dW` (d_out x d_in), as merged into W0 and exported to PEFT.
    fn delta_weight(&self) -> Tensor;
    /// The current (effective) rank.
    fn rank(&self) -> i64;
    /// Trainable tensors by role name (e.g. `lora_A`); saved as `<module>.<role>`.
    fn params(&self) -> Vec<(&'static str, Tensor)>;
    /// Trainable scalars (entries kept at zero by a structural mask are not counted).
    fn trainable_count(&self) -> i64;
    /// Non-trainable tensors that define the adapter (e.g. structural masks); saved beside the
    /// parameters. Adapters without any keep the default.
    fn buffers(&self) -> Vec<(&'static str, Tensor)> {
        Vec::new()
    }
    /// Replaces the tensor of a role named by `params()` or `buffers()` with a saved value (of
    /// any rank: loading a grown adapter). Parameters come back as trainable leaves.
    fn set_tensor(&mut self, role: &str, value: Tensor) -> Result<()>;
    /// Plain LoRA factors (A': r x d_in, B': d_out x r) with the scaling folded into B', such
    /// that `B' A' == delta_weight()`; r is `rank()` (AdaLoRA between masks: every triplet
    /// still contributing). This is what `export-peft` writes. The
    /// default factorises `delta_weight()` by a truncated SVD; methods override it with their
    /// exact factors.
    fn lora_factors(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let dw = self.delta_weight();
            let r = self.rank().max(1);
            let (u, s, v) = dw.svd(true, true);
            let a = (v.narrow(1, 0, r).tr() * s.narrow(0, 0, r).unsqueeze(1)).contiguous();
            (a, u.narrow(1, 0, r).contiguous())
        })
    }
}

/// A type-erased adapter handle, for code that serves every method (merge, export, save).
pub type DynAdapter = Arc<Mutex<dyn Adapter>>;

/// Erases the adapter type of a controller's handles (same adapters, shared).
pub fn dyn_adapters<A: Adapter + 'static>(adapters: &[(String, Shared<A>)]) -> Vec<(String, DynAdapter)> {
    adapters.iter().map(|(n, a)| (n.clone(), a.clone() as DynAdapter)).collect()
}

/// A shared handle: the linear layer reads it in the forward pass, the controller grows it.
pub type Shared<A> = Arc<Mutex<A>>;

/// #Params of triplet adapters (AdaLoRA, IncreLoRA) as their papers count them: an A row, an E
/// entry and a B column per effective rank, r (d_in + d_out + 1) per matrix (shapes from the
/// `lora_A` [r, d_in] and `lora_B` [d_out, r] parameters).
pub fn triplet_param_count<A: Adapter>(adapters: &[(String, Shared<A>)]) -> i64 {
    adapters
        .iter()
        .map(|(_, a)| {
            let a = a.lock().expect("adapter lock poisoned");
            let params = a.params();
            let dim = |role: &str, axis: usize| params.iter().find(|(r, _)| *r == role).map_or(0, |(_, t)| t.size()[axis]);
            a.rank() * (dim("lora_A", 1) + dim("lora_B", 0) + 1)
        })
        .sum()
}

pub fn shared<A>(a: A) -> Shared<A> {
    Arc::new(Mutex::new(a))
}

/// `||A A^T - I||_F + ||B^T B - I||_F` for A: r x d_in, B: d_out x r (docs/method.md, "Orthogonal regularisation"; PEFT AdaLoRA).
pub fn orthogonality_penalty(a: &Tensor, b: &Tensor) -> Tensor {
    let r = a.size()[0];
    let eye = Tensor::eye(r, (a.kind(), a.device()));
    let pa = (a.matmul(&a.tr()) - &eye).norm();
    let pb = (b.tr().matmul(b) - &eye).norm();
    pa + pb
}

/// A method's rank controller, called by the training loop at fixed points of each step.
pub trait RankController: Send + std::fmt::Debug {
    /// After backward and gradient clipping, before the optimizer step of global step `step`:
    /// where the reference harnesses call their allocators (TriAdaptLoRA reads its importance
    /// here, before this step's update). Controllers that need nothing here keep the default.
    fn before_step(&mut self, step: i64) -> Result<()> {
        let _ = step;
        Ok(())
    }
    /// Weight decay of the entries that growth adds, when the method sets its own (TriAdaptLoRA's
    /// `grown_weight_decay`); None: the optimizer's.
    fn grown_weight_decay(&self) -> Option<f64> {
        None
    }
    /// After the optimizer step of global step `step` (0-based), with that step's gradients still
    /// in place (PEFT's order: backward, optimizer step, `update_and_allocate`, zero_grad).
    /// Growing methods grow here and register the grown tensors with `opt` (born at step+1).
    /// Methods whose ranks never change keep the default.
    fn after_step(&mut self, step: i64, opt: &mut AdamW) -> Result<()> {
        let _ = (step, opt);
        Ok(())
    }
    /// The adapters the controller drives, with their HF module names, in model order (none for
    /// full fine-tuning). The defaults below read everything else from them.
    fn adapters(&self) -> Vec<(String, DynAdapter)>;
    /// A term added to the task loss (orthogonal regularisation), if the method has one.
    fn regularization(&self) -> Option<Tensor> {
        None
    }
    /// The current rank of every adapted matrix, in model order (the heatmap data).
    fn ranks(&self) -> Vec<(String, i64)> {
        self.adapters().iter().map(|(n, a)| (n.clone(), a.lock().expect("adapter lock poisoned").rank())).collect()
    }
    /// The total-rank budget, for methods that have one.
    fn budget(&self) -> Option<i64> {
        None
    }
    /// The adapters' trainable tensors as `<module>.<role>`.
    fn named_params(&self) -> Vec<(String, Tensor)> {
        self.adapters()
            .iter()
            .flat_map(|(n, a)| {
                a.lock().expect("adapter lock poisoned").params().into_iter().map(move |(role, t)| (format!("{n}.{role}"), t))
            })
            .collect()
    }
    /// Trainable adapter scalars (heads not included).
    fn trainable_count(&self) -> i64 {
        self.adapters().iter().map(|(_, a)| a.lock().expect("adapter lock poisoned").trainable_count()).sum()
    }
    /// Adapter scalars as the papers' #Params counts them (docs/method.md, "Counting
    /// parameters"): by default every trainable one; IncreLoRA leaves out its reserve.
    fn reported_param_count(&self) -> i64 {
        self.trainable_count()
    }
    /// State beyond the adapters' tensors that resuming needs (scores, moving averages).
    /// Controllers without such state keep the default.
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }
    /// Restores what `state_tensors` saved (keys without the `controller.` prefix).
    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// A trainable leaf copy of a loaded tensor on `device`.
pub(crate) fn leaf(value: &Tensor, device: tch::Device) -> Tensor {
    value.detach().to_device(device).to_kind(tch::Kind::Float).contiguous().set_requires_grad(true)
}

/// A saved state tensor by key, or an error naming it.
pub(crate) fn state_entry<'a>(state: &'a std::collections::HashMap<String, Tensor>, key: &str) -> Result<&'a Tensor> {
    state.get(key).ok_or_else(|| anyhow::anyhow!("saved controller state lacks `{key}`"))
}

/// The error for a role an adapter does not have.
pub(crate) fn unknown_role(kind: &str, role: &str) -> anyhow::Error {
    anyhow::anyhow!("a {kind} adapter has no tensor `{role}`")
}

fn read<A>(a: &Shared<A>) -> std::sync::MutexGuard<'_, A> {
    a.lock().expect("adapter lock poisoned")
}

/// gamma / (2n) * sum over matrices of the orthogonality penalty of (A, B) (docs/method.md, "Orthogonal regularisation").
pub(crate) fn orthogonality_regularization<A>(
    adapters: &[(String, Shared<A>)],
    gamma: f64,
    ab: impl Fn(&A) -> (Tensor, Tensor),
) -> Option<Tensor> {
    if gamma == 0.0 || adapters.is_empty() {
        return None;
    }
    // Every factor F (A, and B^T) of one shape goes through one batched product F F^T - I: a
    // handful of kernels per shape instead of six per matrix (72 matrices, a few shapes).
    let mut groups: std::collections::BTreeMap<Vec<i64>, Vec<Tensor>> = std::collections::BTreeMap::new();
    for (_, a) in adapters {
        let (a_m, b_m) = ab(&read(a));
        groups.entry(a_m.size()).or_default().push(a_m);
        let bt = b_m.tr();
        groups.entry(bt.size()).or_default().push(bt);
    }
    let total = groups
        .into_values()
        .map(|factors| {
            let f = Tensor::stack(&factors, 0);
            let r = f.size()[1];
            let eye = Tensor::eye(r, (f.kind(), f.device()));
            let gram = f.bmm(&f.transpose(1, 2)) - eye;
            // torch's norm, as the references call it: its gradient at an exactly orthonormal
            // factor is 0, where sqrt(sum of squares) would give inf * 0 = NaN.
            gram.norm_scalaropt_dim(2.0, [1i64, 2].as_slice(), false).sum(f.kind())
        })
        .reduce(|x, y| x + y)?;
    Some(total * (gamma / (2.0 * adapters.len() as f64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(rows: &[&[f32]]) -> Tensor {
        let r = rows.len() as i64;
        Tensor::from_slice(&rows.concat()).view([r, -1]).set_requires_grad(true)
    }

    /// By hand: an exactly orthonormal factor costs 0 and, as torch's norm defines it, gets a zero
    /// gradient (sqrt of a sum of squares gave NaN there and poisoned training); A = diag(2, 1)
    /// rows give ||A A^T - I||_F = ||diag(3, 0)||_F = 3 and gradient 2 (G / ||G||) A = [[4,0,0],
    /// [0,0,0]], both times gamma / (2n).
    #[test]
    fn orthogonality_penalty_and_its_gradient_by_hand_including_exactly_orthonormal_factors() {
        let eye = leaf(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]]);
        let eye_t = leaf(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, 0.0]]);
        let stretched = leaf(&[&[2.0, 0.0, 0.0], &[0.0, 1.0, 0.0]]);
        let eye_t2 = leaf(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, 0.0]]);
        let adapters = vec![
            ("m0".to_string(), shared((eye.shallow_clone(), eye_t.shallow_clone()))),
            ("m1".to_string(), shared((stretched.shallow_clone(), eye_t2.shallow_clone()))),
        ];
        let gamma = 0.5;
        let r = orthogonality_regularization(&adapters, gamma, |(a, b): &(Tensor, Tensor)| (a.shallow_clone(), b.shallow_clone()))
            .expect("gamma > 0");
        assert_eq!(r.double_value(&[]), gamma / 4.0 * 3.0);
        r.backward();
        let grad = |t: &Tensor| Vec::<f32>::try_from(t.grad().flatten(0, -1)).unwrap();
        for t in [&eye, &eye_t, &eye_t2] {
            assert!(grad(t).iter().all(|g| *g == 0.0), "an orthonormal factor's gradient is {:?}", grad(t));
        }
        assert_eq!(grad(&stretched), vec![0.5, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
