//! Method configuration (the `method:` block of an experiment) and the two-phase set-up: a
//! linear factory for building the model, then the rank controller over the adapters it made.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use super::adalora::{AdaLoraAdapter, AdaLoraConfig, AdaLoraController};
use super::adapted::PositionQuery;
use super::increlora::{IncreLoraAdapter, IncreLoraConfig, IncreLoraController};
use super::lora::{LoraAdapter, LoraConfig, LoraController};
use super::schedule::BudgetMode;
use super::triadapt::{TriAdaptConfig, TriAdaptController, TriAdapter};
use super::{AdapterFactory, RankController, TargetSpec};
use crate::model::linear::{LinearFactory, PlainLinearFactory};
use crate::optim::LrPolicy;

crate::listed::listed_enum! {
    /// A fine-tuning method (`method.name`); `MethodName::ALL` lists every one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum MethodName {
        Full,
        Lora,
        Triadapt,
        Adalora,
        Increlora,
    }
}

impl MethodName {
    pub fn as_str(self) -> &'static str {
        match self {
            MethodName::Full => "full",
            MethodName::Lora => "lora",
            MethodName::Triadapt => "triadapt",
            MethodName::Adalora => "adalora",
            MethodName::Increlora => "increlora",
        }
    }

    /// The paper's name, as figures, tables and legends print it.
    pub fn label(self) -> &'static str {
        match self {
            MethodName::Full => "Full FT",
            MethodName::Lora => "LoRA",
            MethodName::Triadapt => "TriAdaptLoRA",
            MethodName::Adalora => "AdaLoRA",
            MethodName::Increlora => "IncreLoRA",
        }
    }

    /// Position in every figure and legend: TriAdaptLoRA first, then AdaLoRA, IncreLoRA, LoRA,
    /// full fine-tuning.
    pub fn figure_order(self) -> usize {
        match self {
            MethodName::Triadapt => 0,
            MethodName::Adalora => 1,
            MethodName::Increlora => 2,
            MethodName::Lora => 3,
            MethodName::Full => 4,
        }
    }

    /// Position in the GLUE table: the baselines first, TriAdaptLoRA last (the paper's table).
    pub fn table_order(self) -> usize {
        match self {
            MethodName::Full => 0,
            MethodName::Lora => 1,
            MethodName::Adalora => 2,
            MethodName::Increlora => 3,
            MethodName::Triadapt => 4,
        }
    }

    /// The method's colour (RGB) in every figure.
    pub fn colour(self) -> (u8, u8, u8) {
        match self {
            MethodName::Triadapt => (214, 39, 40),
            MethodName::Adalora => (31, 119, 180),
            MethodName::Increlora => (44, 160, 44),
            MethodName::Lora => (255, 127, 14),
            MethodName::Full => (110, 110, 110),
        }
    }

    /// The block of the method's own settings (`method.<block>.*`); full fine-tuning has none.
    pub fn config_block(self) -> Option<&'static str> {
        match self {
            MethodName::Full => None,
            other => Some(other.as_str()),
        }
    }
}

impl std::str::FromStr for MethodName {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        MethodName::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            anyhow::anyhow!("key `method.name`: unknown method {s:?} (expected one of {})", MethodName::ALL.map(|m| m.as_str()).join(", "))
        })
    }
}

/// The `method:` block: which method runs, the settings all adapters share, and one block of
/// settings per method (so one experiment file serves every method via `--method`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    pub name: MethodName,
    /// Scale numerator: LoRA and TriAdaptLoRA use alpha / r, AdaLoRA alpha / r_init.
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// gamma of the orthogonal regularisation (docs/method.md, "Orthogonal regularisation"); LoRA and full fine-tuning ignore it.
    pub orth_reg_weight: f64,
    /// Learning-rate policy of parameters born during training (docs/method.md).
    pub lr_policy: LrPolicy,
    /// Whether TriAdaptLoRA's and IncreLoRA's growth may pass the total-rank budget:
    /// `reference` (the authors' code) or `strict` (never above it).
    pub budget: BudgetMode,
    pub target_modules: Vec<String>,
    pub target_layers: Option<Vec<i64>>,
    /// Whether the query projection of the relative-position embeddings goes through its
    /// adapter (`adapted`, stock HF + PEFT) or not (`frozen`, the IncreLoRA/AdaLoRA GLUE harnesses).
    pub position_query: PositionQuery,
    /// Whether the pooler of a classification head trains (IncreLoRA's harness and ours) or stays
    /// at its initialisation (a PEFT harness with `modules_to_save = ["classifier"]`). The
    /// classifier always trains; full fine-tuning trains everything.
    pub train_pooler: bool,
    pub lora: LoraConfig,
    pub triadapt: TriAdaptConfig,
    pub adalora: AdaLoraConfig,
    pub increlora: IncreLoraConfig,
}

impl Default for MethodConfig {
    fn default() -> Self {
        let t = TargetSpec::default();
        MethodConfig {
            name: MethodName::Triadapt,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            orth_reg_weight: 0.1,
            lr_policy: LrPolicy::Restart,
            budget: BudgetMode::Strict,
            target_modules: t.target_modules,
            target_layers: t.target_layers,
            position_query: PositionQuery::Adapted,
            train_pooler: true,
            lora: LoraConfig::default(),
            triadapt: TriAdaptConfig::default(),
            adalora: AdaLoraConfig::default(),
            increlora: IncreLoraConfig::default(),
        }
    }
}

impl MethodConfig {
    pub fn targets(&self) -> TargetSpec {
        TargetSpec { target_modules: self.target_modules.clone(), target_layers: self.target_layers.clone() }
    }

    /// The adapter-input dropout of this method: the method block's own `dropout` where it has
    /// one and sets it (`method.lora.dropout`, `method.adalora.dropout`: the baselines'
    /// harnesses build their layers without dropout whatever the task file gives the growing
    /// methods), otherwise `method.lora_dropout`.
    pub fn adapter_dropout(&self) -> f64 {
        let own = match self.name {
            MethodName::Lora => self.lora.dropout,
            MethodName::Adalora => self.adalora.dropout,
            _ => None,
        };
        own.unwrap_or(self.lora_dropout)
    }

    /// Checks the values a run cannot work with; errors name the key.
    pub fn validate(&self, num_layers: i64, total_steps: i64) -> Result<()> {
        for (key, p) in [
            ("method.lora_dropout", Some(self.lora_dropout)),
            ("method.lora.dropout", self.lora.dropout),
            ("method.adalora.dropout", self.adalora.dropout),
        ] {
            if let Some(p) = p.filter(|p| !(0.0..1.0).contains(p)) {
                bail!("key `{key}` = {p}: must be in [0, 1)");
            }
        }
        if self.name == MethodName::Full {
            return Ok(());
        }
        self.targets().validate(num_layers).map_err(|e| anyhow::anyhow!("method.{e}"))?;
        match self.name {
            MethodName::Full => Ok(()),
            MethodName::Lora => self.lora.validate(),
            MethodName::Triadapt => self.triadapt.validate(total_steps),
            MethodName::Adalora => self.adalora.validate(total_steps),
            MethodName::Increlora => self.increlora.validate(total_steps),
        }
    }
}

/// Each method's set-up for `triadapt bench` (src/bench/), beside its config so that a new
/// method's benchmark is set up here too.
impl MethodConfig {
    /// This block with the method set up at an average rank of `r` per adapted matrix, its
    /// controller acting at every step after `warmup` untimed steps: LoRA at rank r; AdaLoRA
    /// from r_init = 1.5 r to a target of r, masking at every step (t_init = t_final = 0,
    /// dT = 1); IncreLoRA from r/2 to an average of r, growing every step after the warm-up;
    /// TriAdaptLoRA at rank r with a budget of r (no growth: the same average rank as LoRA), or
    /// with `grow` from r/2 to an average of r, growing a few matrices every step of the timed
    /// window. Full fine-tuning has no rank.
    pub fn at_bench_rank(mut self, r: i64, warmup: i64, grow: bool) -> MethodConfig {
        match self.name {
            MethodName::Full => {}
            MethodName::Lora => self.lora.rank = r,
            MethodName::Adalora => {
                self.adalora.init_rank = (r * 3 / 2).max(r);
                self.adalora.target_rank = r;
                (self.adalora.tinit, self.adalora.tfinal, self.adalora.delta_t) = (0, 0, 1);
            }
            MethodName::Increlora => {
                self.increlora.init_rank = (r / 2).max(1);
                self.increlora.target_rank = r;
                self.increlora.init_warmup = warmup;
                self.increlora.incre_interval = 1;
            }
            MethodName::Triadapt if !grow => {
                (self.triadapt.init_rank, self.triadapt.ref_rank) = (r, r);
                self.triadapt.warmup_steps = 0;
            }
            MethodName::Triadapt => {
                (self.triadapt.init_rank, self.triadapt.ref_rank) = ((r / 2).max(1), r);
                // Allocation at every step after the untimed warm-up: growth happens in the
                // timed window, a few matrices at a time (linear threshold).
                self.triadapt.warmup_steps = warmup;
                self.triadapt.interval = 1;
                self.triadapt.growth_step = Some((r / 4).max(1));
            }
        }
        self
    }

    /// This block with the rank controller allocating (growing, masking) every `interval`
    /// steps: the op count (`bench --ops`) runs every second step, so that its window has both
    /// ordinary and allocation steps. Methods without allocation are unchanged.
    pub fn allocating_every(mut self, interval: i64) -> MethodConfig {
        match self.name {
            MethodName::Adalora => self.adalora.delta_t = interval,
            MethodName::Increlora => self.increlora.incre_interval = interval,
            MethodName::Triadapt => self.triadapt.interval = interval,
            MethodName::Full | MethodName::Lora => {}
        }
        self
    }
}

/// The factory for building the model; after loading, [`MethodSetup::into_controller`].
pub enum MethodSetup {
    Full(PlainLinearFactory),
    Lora(AdapterFactory<LoraAdapter>),
    Triadapt(AdapterFactory<TriAdapter>),
    Adalora(AdapterFactory<AdaLoraAdapter>),
    Increlora(AdapterFactory<IncreLoraAdapter>),
}

impl MethodSetup {
    pub fn new(cfg: &MethodConfig) -> Self {
        let (targets, dropout, alpha, pq) = (cfg.targets(), cfg.adapter_dropout(), cfg.lora_alpha, cfg.position_query);
        match cfg.name {
            MethodName::Full => MethodSetup::Full(PlainLinearFactory),
            MethodName::Lora => {
                let r = cfg.lora.rank;
                MethodSetup::Lora(
                    AdapterFactory::new(targets, dropout, move |_, i, o, dev| LoraAdapter::new(i, o, r, alpha, dev))
                        .with_position_query(pq),
                )
            }
            MethodName::Triadapt => {
                let c = cfg.triadapt.clone();
                MethodSetup::Triadapt(
                    AdapterFactory::new(targets, dropout, move |_, i, o, dev| TriAdapter::new(i, o, c.init_rank, alpha, c.init_std, dev))
                        .with_position_query(pq),
                )
            }
            MethodName::Adalora => {
                let r = cfg.adalora.init_rank;
                MethodSetup::Adalora(
                    AdapterFactory::new(targets, dropout, move |_, i, o, dev| AdaLoraAdapter::new(i, o, r, alpha, dev))
                        .with_position_query(pq),
                )
            }
            MethodName::Increlora => {
                let c = cfg.increlora.clone();
                MethodSetup::Increlora(
                    AdapterFactory::new(targets, dropout, move |_, i, o, dev| IncreLoraAdapter::new(i, o, &c, alpha, dev))
                        .with_position_query(pq),
                )
            }
        }
    }

    pub fn factory(&self) -> &dyn LinearFactory {
        match self {
            MethodSetup::Full(f) => f,
            MethodSetup::Lora(f) => f,
            MethodSetup::Triadapt(f) => f,
            MethodSetup::Adalora(f) => f,
            MethodSetup::Increlora(f) => f,
        }
    }

    /// The adapters the factory has made (after the model was built), type-erased.
    pub fn adapters(&self) -> Vec<(String, super::DynAdapter)> {
        match self {
            MethodSetup::Full(_) => Vec::new(),
            MethodSetup::Lora(f) => super::dyn_adapters(&f.adapters()),
            MethodSetup::Triadapt(f) => super::dyn_adapters(&f.adapters()),
            MethodSetup::Adalora(f) => super::dyn_adapters(&f.adapters()),
            MethodSetup::Increlora(f) => super::dyn_adapters(&f.adapters()),
        }
    }

    pub fn into_controller(self, cfg: &MethodConfig, total_steps: i64) -> Box<dyn RankController> {
        match self {
            MethodSetup::Full(_) => Box::new(FullController),
            MethodSetup::Lora(f) => Box::new(LoraController::new(f.adapters())),
            MethodSetup::Triadapt(f) => Box::new(
                TriAdaptController::new(cfg.triadapt.clone(), f.adapters(), total_steps, cfg.orth_reg_weight).with_budget_mode(cfg.budget),
            ),
            MethodSetup::Adalora(f) => {
                Box::new(AdaLoraController::new(cfg.adalora.clone(), f.adapters(), total_steps, cfg.orth_reg_weight))
            }
            MethodSetup::Increlora(f) => Box::new(
                IncreLoraController::new(cfg.increlora.clone(), f.adapters(), total_steps, cfg.orth_reg_weight)
                    .with_budget_mode(cfg.budget),
            ),
        }
    }
}

/// Full fine-tuning: no adapters; the trainer trains every backbone parameter.
#[derive(Debug)]
pub struct FullController;

impl RankController for FullController {
    fn adapters(&self) -> Vec<(String, super::DynAdapter)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The benchmark's set-up by hand at r = 8 after 2 warm-up steps.
    #[test]
    fn bench_set_up_at_an_average_rank() {
        let at = |name, grow| MethodConfig { name, ..Default::default() }.at_bench_rank(8, 2, grow);
        assert_eq!(at(MethodName::Full, false), MethodConfig { name: MethodName::Full, ..Default::default() });
        assert_eq!(at(MethodName::Lora, false).lora.rank, 8);
        let a = at(MethodName::Adalora, false).adalora;
        assert_eq!((a.init_rank, a.target_rank, a.tinit, a.tfinal, a.delta_t), (12, 8, 0, 0, 1));
        let i = at(MethodName::Increlora, false).increlora;
        assert_eq!((i.init_rank, i.target_rank, i.init_warmup, i.incre_interval), (4, 8, 2, 1));
        let t = at(MethodName::Triadapt, false).triadapt;
        assert_eq!((t.init_rank, t.ref_rank, t.warmup_steps), (8, 8, 0));
        let g = at(MethodName::Triadapt, true).triadapt;
        assert_eq!((g.init_rank, g.ref_rank, g.warmup_steps, g.interval, g.growth_step), (4, 8, 2, 1, Some(2)));
        assert_eq!(at(MethodName::Triadapt, true).allocating_every(2).triadapt.interval, 2);
        assert_eq!(at(MethodName::Adalora, false).allocating_every(2).adalora.delta_t, 2);
        assert_eq!(at(MethodName::Increlora, false).allocating_every(2).increlora.incre_interval, 2);
    }

    /// `ALL` is written with the enum (`listed_enum!`), so it cannot miss a variant; serde's
    /// derive names every variant in its unknown-variant error, and the two lists agree, in
    /// declaration order, with `as_str` the serde name.
    #[test]
    fn all_lists_every_variant() {
        let err = serde_yaml_ng::from_str::<MethodName>("not-a-method").unwrap_err().to_string();
        assert!(err.contains("expected one of"), "{err}");
        let derived: Vec<&str> = err.split('`').skip(3).step_by(2).collect();
        let listed: Vec<&str> = MethodName::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(derived, listed, "MethodName::ALL must list every variant, in declaration order");
        for m in MethodName::ALL {
            assert_eq!(serde_yaml_ng::from_str::<MethodName>(m.as_str()).unwrap(), m, "as_str must be the serde name");
        }
    }
}
