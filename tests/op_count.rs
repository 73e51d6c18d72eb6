//! The kernel counter (src/op_count.rs) and the PEFT peer's (scripts/op_count.py) on one
//! hand-counted sequence: a linear with bias, a softmax, a sum, backward, an in-place update.

use std::path::Path;
use std::process::Command;

use tch::{Device, Kind, Tensor};
use triadapt::op_count::OpCounter;

/// By the rule (README "Counting kernels"):
/// forward 3: addmm (one launch with its bias), _softmax, sum (on CPU a fill_ of the output
/// stands in for it: one leaf either way);
/// backward 4: the seed gradient (ones_like's fill_), softmax's backward (on CPU the copy that
/// makes the expanded gradient contiguous is the leaf), the weight's gradient (mm), the bias's
/// (a sum over the batch); the transposes, the expand and AccumulateGrad's detach launch nothing;
/// update 2: the gradient times the rate, then sub_.
const HAND_COUNT: i64 = 9;

fn sequence() -> (i64, std::collections::BTreeMap<String, i64>) {
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);
    let x = Tensor::randn([4, 3], opts);
    let w = Tensor::randn([2, 3], opts).set_requires_grad(true);
    let b = Tensor::randn([2], opts).set_requires_grad(true);
    let counter = OpCounter::start(true).unwrap();
    let loss = x.linear(&w, Some(&b)).softmax(-1, Kind::Float).sum(Kind::Float);
    loss.backward();
    tch::no_grad(|| {
        let _ = w.shallow_clone().g_sub_(&(w.grad() * 0.1));
    });
    (counter.read(), counter.names())
}

#[test]
fn the_counter_counts_a_hand_counted_sequence() {
    let (n, names) = sequence();
    assert_eq!(n, HAND_COUNT, "{names:#?}");
    // Off once dropped: nothing more is counted.
    let again = OpCounter::start(false).unwrap();
    let _ = again.take();
    drop(again);
    let _ = Tensor::ones([3], (Kind::Float, Device::Cpu)) * 2.0;
    let after = OpCounter::start(false).unwrap();
    assert_eq!(after.read(), 0);
}

#[test]
fn the_peer_counter_counts_the_same_sequence_alike() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join(".venv/bin/python"))
        .current_dir(root)
        .arg("scripts/op_count.py")
        .output()
        .expect("the venv's python (make test creates it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let n: i64 = text.lines().next().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("no count in:\n{text}"));
    assert_eq!(n, HAND_COUNT, "torch.profiler's events by the same rule:\n{text}");
}
