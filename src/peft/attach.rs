//! One call that builds a trainable model: the backbone from a model directory (or a config, for
//! random-weight benchmarks) with a method's adapters on its target matrices, as PEFT's
//! `get_peft_model` does; the rank controller over those adapters comes with it.

use anyhow::Result;
use tch::{nn, Device};

use super::method::{MethodConfig, MethodSetup};
use super::{DynAdapter, RankController};
use crate::model::checkpoint::LoadReport;
use crate::model::config::DebertaConfig;
use crate::model::{DebertaModel, HeadKind, ModelDir};

/// A model with a method attached.
pub struct Attached {
    pub vs: nn::VarStore,
    pub model: DebertaModel,
    /// The adapters, with their HF module names, in model order (none for full fine-tuning).
    pub adapters: Vec<(String, DynAdapter)>,
    /// Head tensors left at their initialisation, checkpoint tensors skipped.
    pub report: LoadReport,
    /// The typed set-up (e.g. to start LoRA from a PEFT adapter before training).
    pub setup: MethodSetup,
    /// The method block the model was built with: the trainer takes it from here, so the
    /// adapters and the controller cannot come from two different blocks.
    pub method: MethodConfig,
}

/// Loads `dir` with `head` and `method`'s adapters on `device`.
pub fn attach(dir: &ModelDir, head: HeadKind, method: &MethodConfig, device: Device) -> Result<Attached> {
    let setup = MethodSetup::new(method);
    let (vs, model, report) = dir.load(head, setup.factory(), device)?;
    let adapters = setup.adapters();
    Ok(Attached { vs, model, adapters, report, setup, method: method.clone() })
}

/// Builds a model of `config` with random weights (benchmarks) and `method`'s adapters.
pub fn attach_random(config: &DebertaConfig, head: HeadKind, method: &MethodConfig, device: Device) -> Attached {
    let setup = MethodSetup::new(method);
    let vs = nn::VarStore::new(device);
    let model = DebertaModel::new(&vs.root(), config, head, setup.factory());
    let adapters = setup.adapters();
    Attached { vs, model, adapters, report: LoadReport::default(), setup, method: method.clone() }
}

/// What a trainer holds: the variables, the model, its adapters by HF module name, the controller.
pub type TrainerParts = (nn::VarStore, DebertaModel, Vec<(String, DynAdapter)>, Box<dyn RankController>);

impl Attached {
    /// The parts a trainer holds, with the rank controller for a run of `total_steps`.
    pub fn into_parts(self, total_steps: i64) -> TrainerParts {
        let controller = self.setup.into_controller(&self.method, total_steps);
        (self.vs, self.model, self.adapters, controller)
    }
}
