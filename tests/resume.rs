//! Exact resume for every method. A test binary of its own: torch's random generator is global,
//! so tests running in parallel threads of one process would interleave their draws.

use crate::common::*;
use tch::{Device, Tensor};
use triadapt::model::{HeadKind, ModelDir};
use triadapt::optim::LrPolicy;
use triadapt::peft::method::{MethodConfig, MethodSetup};
use triadapt::train::{OptimConfig, Trainer};

/// Trains `total` steps straight through, and `split` steps + save + a fresh process-like
/// rebuild + load + the remaining steps: every trained tensor must be bit-identical.
fn resume_is_exact(cfg: &MethodConfig, total: i64, split: i64) {
    use triadapt::peft::save::{apply_adapter, read_adapter, resume, save_adapter};
    let b = batch();
    let mut straight = trainer(cfg, total);
    for step in 0..total {
        straight.step(&b, step).unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut first = trainer(cfg, total);
    for step in 0..split {
        first.step(&b, step).unwrap();
    }
    save_adapter(tmp.path(), &first, cfg, split, &model_dir("v3"), "rte").unwrap();
    drop(first);
    // A fresh build: initial shapes, then the saved tensors (grown shapes) and optimizer state.
    tch::manual_seed(7);
    let dir = ModelDir::open(&model_dir("v3")).unwrap();
    let setup = MethodSetup::new(cfg);
    let (vs, model, _) = dir.load(HeadKind::Cls, setup.factory(), Device::Cpu).unwrap();
    let adapters = setup.adapters();
    apply_adapter(&read_adapter(tmp.path()).unwrap(), &adapters, &vs).unwrap();
    let controller = setup.into_controller(cfg, total);
    let optim = OptimConfig { lr: 5e-3, warmup_steps: 2, weight_decay: 0.01, ..Default::default() };
    let mut resumed = Trainer::new(vs, model, controller, adapters, cfg.name, optim, LrPolicy::Restart, total, 1).unwrap();
    assert_eq!(resume(&mut resumed, tmp.path()).unwrap(), split);
    for step in split..total {
        resumed.step(&b, step).unwrap();
    }
    let ours: Vec<(String, Tensor)> = resumed.controller.named_params().into_iter().chain(resumed.trainable_vars().iter().map(|(n, t)| (n.clone(), t.shallow_clone()))).collect();
    let theirs: std::collections::HashMap<String, Tensor> = straight.controller.named_params().into_iter().chain(straight.trainable_vars().iter().map(|(n, t)| (n.clone(), t.shallow_clone()))).collect();
    assert_eq!(ours.len(), theirs.len());
    for (name, t) in ours {
        assert!(t.equal(&theirs[&name]), "{:?}: {name} differs after resume", cfg.name);
    }
    assert_eq!(resumed.controller.ranks(), straight.controller.ranks());
}

#[test]
fn an_interrupted_run_resumes_bit_identically() {
    let _rng = crate::common::torch_rng();
    use triadapt::peft::method::MethodName::*;
    tch::set_num_threads(1);
    for name in [Lora, Triadapt, Full] {
        // TriAdaptLoRA grows at steps 8, 12, 16 (warm-up 4, interval 4): split after the first.
        resume_is_exact(&method(name), 20, 10);
    }
    let mut ada = method(Adalora);
    (ada.adalora.tinit, ada.adalora.tfinal, ada.adalora.delta_t) = (4, 6, 2);
    resume_is_exact(&ada, 20, 9);
    let mut inc = method(Increlora);
    (inc.increlora.init_warmup, inc.increlora.incre_interval) = (3, 3);
    resume_is_exact(&inc, 20, 7);
}
