//! One benchmark configuration ([`BenchSpec`], `--precision`), what it builds from (the model
//! config, the method block) and the random batch it trains on.

use std::str::FromStr;

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::{Shape, Variant};
use crate::data::batch::Batch;
use crate::model::DebertaConfig;
use crate::optim::AdamWVariant;
use crate::optim::LrPolicy;
use crate::peft::method::MethodConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Fp32,
    /// bf16 autocast (CUDA only), as `torch.autocast("cuda", dtype=torch.bfloat16)`.
    Bf16,
}

impl FromStr for Precision {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            other => bail!("--precision {other:?}: expected fp32 or bf16"),
        }
    }
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }
}

/// One benchmark configuration.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    pub shape: Shape,
    /// A DeBERTa config.json to bench instead of `shape` (random weights, two labels).
    pub config_file: Option<std::path::PathBuf>,
    pub variant: Variant,
    pub batch: i64,
    pub seq: i64,
    /// Untimed steps before the timed ones.
    pub warmup: i64,
    /// Timed steps.
    pub steps: i64,
    pub device: Device,
    pub precision: Precision,
    /// The average rank every adapter method is compared at.
    pub rank: i64,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub orth_reg_weight: f64,
    pub lr: f64,
    pub seed: i64,
    /// Time the phases of each timed step (forward, backward, optimizer) as they end inside
    /// `Trainer::step`, waiting for the device at each.
    pub breakdown: bool,
    /// The AdamW arithmetic (`torch`, or `legacy_hf` as the paper's experiments run).
    pub adamw: AdamWVariant,
    /// Also count the ops of each phase of a step ([`count_ops`](super::count_ops)), on a second trainer.
    pub ops: bool,
    /// With `ops`: print each phase's counted op names to stderr (checking the rules file).
    pub ops_names: bool,
}

impl BenchSpec {
    pub fn new(shape: Shape, variant: Variant) -> Self {
        BenchSpec {
            shape,
            config_file: None,
            variant,
            batch: 8,
            seq: 128,
            warmup: 2,
            steps: 8,
            device: Device::Cpu,
            precision: Precision::Fp32,
            rank: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            orth_reg_weight: 0.1,
            lr: 1e-3,
            seed: 1,
            breakdown: false,
            adamw: AdamWVariant::Torch,
            ops: false,
            ops_names: false,
        }
    }

    pub fn total_steps(&self) -> i64 {
        self.warmup + self.steps
    }

    /// The model config: `config_file`'s (with a two-label head), else the shape's.
    pub fn model_config(&self) -> Result<DebertaConfig> {
        let Some(path) = &self.config_file else { return Ok(self.shape.config()) };
        let mut config = DebertaConfig::from_file(path)?;
        (config.num_labels, config.id2label) = (Some(2), None);
        config.validate().map_err(|e| anyhow::anyhow!("--model-config {}: {e}", path.display()))?;
        Ok(config)
    }

    /// The shape's name, or the config file's path.
    pub fn model_config_name(&self) -> String {
        match &self.config_file {
            Some(path) => path.display().to_string(),
            None => self.shape.as_str().to_string(),
        }
    }

    /// The method block of this variant (all six matrices of every layer adapted), each method
    /// set up at the average rank `rank` by its own config ([`MethodConfig::at_bench_rank`]).
    pub fn method_config(&self) -> MethodConfig {
        let m = MethodConfig {
            name: self.variant.method(),
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            orth_reg_weight: self.orth_reg_weight,
            lr_policy: LrPolicy::Restart,
            ..Default::default()
        };
        m.at_bench_rank(self.rank, self.warmup, self.variant.grows())
    }
}

impl BenchSpec {
    /// The method block the op count runs: [`BenchSpec::method_config`] with the controller
    /// allocating (growing, masking) every second step instead of every step, so that the
    /// counted window has both ordinary and allocation steps, ordinary ones after growth too.
    pub fn counting_method_config(&self) -> MethodConfig {
        self.method_config().allocating_every(2)
    }
}

/// A random batch on `device`: ids in [4, vocab), full attention, two labels.
pub(super) fn random_batch(c: &DebertaConfig, batch: i64, seq: i64, device: Device) -> Batch {
    Batch {
        input_ids: Tensor::randint_low(4, c.vocab_size, [batch, seq], (Kind::Int64, device)),
        attention_mask: Tensor::ones([batch, seq], (Kind::Int64, device)),
        token_type_ids: Tensor::zeros([batch, seq], (Kind::Int64, device)),
        labels: Tensor::randint(c.num_labels(), [batch], (Kind::Int64, device)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_a_valid_method_block() {
        for v in Variant::ALL {
            let spec = BenchSpec::new(Shape::Tiny, v);
            spec.method_config().validate(2, spec.total_steps()).unwrap();
            spec.counting_method_config().validate(2, spec.total_steps()).unwrap();
        }
    }
}
