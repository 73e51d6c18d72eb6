//! LoRA: h = W0 x + (alpha / r) B A x with a fixed rank; A Kaiming-uniform, B zero (PEFT's
//! initialisation).

use tch::{Device, Kind, Tensor};

use super::Adapter;

#[derive(Debug)]
pub struct LoraAdapter {
    /// r x d_in
    pub a: Tensor,
    /// d_out x r
    pub b: Tensor,
    pub scaling: f64,
}

impl LoraAdapter {
    /// PEFT: `kaiming_uniform_(A, a=sqrt(5))`, i.e. U(-1/sqrt(d_in), 1/sqrt(d_in)); B = 0.
    pub fn new(d_in: i64, d_out: i64, r: i64, alpha: f64, device: Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        let a = (Tensor::rand([r, d_in], (Kind::Float, device)) * (2.0 * bound) - bound).set_requires_grad(true);
        let b = Tensor::zeros([d_out, r], (Kind::Float, device)).set_requires_grad(true);
        LoraAdapter { a, b, scaling: alpha / r as f64 }
    }
}

impl Adapter for LoraAdapter {
    fn delta(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.a.tr()).matmul(&self.b.tr()) * self.scaling
    }

    fn add_delta(&self, base: &Tensor, x: &Tensor) -> Tensor {
        super::add_low_rank(base, &(x.matmul(&self.a.tr()) * self.scaling), &self.b)
    }

    fn delta_weight(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scaling
    }

    fn rank(&self) -> i64 {
        self.a.size()[0]
    }

    fn params(&self) -> Vec<(&'static str, Tensor)> {
        vec![("lora_A", self.a.shallow_clone()), ("lora_B", self.b.shallow_clone())]
    }

    fn trainable_count(&self) -> i64 {
        self.a.numel() as i64 + self.b.numel() as i64
    }

    fn lora_factors(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| (self.a.detach().copy(), &self.b.detach() * self.scaling))
    }

    fn set_tensor(&mut self, role: &str, value: Tensor) -> anyhow::Result<()> {
        let dev = self.a.device();
        match role {
            "lora_A" => {
                // A saved adapter of another rank (a PEFT rank_pattern, --init-adapter) keeps
                // alpha: the scaling becomes alpha / r of its own rank.
                let old_rank = self.rank();
                self.a = super::leaf(&value, dev);
                if self.rank() != old_rank {
                    self.scaling = self.scaling * old_rank as f64 / self.rank() as f64;
                }
            }
            "lora_B" => self.b = super::leaf(&value, dev),
            _ => return Err(super::unknown_role("LoRA", role)),
        }
        Ok(())
    }
}

/// The `method.lora` block.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoraConfig {
    pub rank: i64,
    /// LoRA's own adapter dropout; unset: `method.lora_dropout`. An experiment file that serves
    /// every method sets `lora_dropout` for the growing methods and this to 0 for LoRA.
    pub dropout: Option<f64>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { rank: 2, dropout: None }
    }
}

impl LoraConfig {
    /// Checks the block's values; errors name the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.rank < 1 {
            anyhow::bail!("key `method.lora.rank` = {}: must be at least 1", self.rank);
        }
        Ok(())
    }
}

/// LoRA's ranks never change; the controller only reports them.
#[derive(Debug)]
pub struct LoraController {
    adapters: Vec<(String, super::Shared<LoraAdapter>)>,
}

impl LoraController {
    pub fn new(adapters: Vec<(String, super::Shared<LoraAdapter>)>) -> Self {
        LoraController { adapters }
    }
}

impl super::RankController for LoraController {
    fn adapters(&self) -> Vec<(String, super::DynAdapter)> {
        super::dyn_adapters(&self.adapters)
    }
}
