//! The DeBERTaV2/V3 model: config, backbone, heads, checkpoints, and the linear factory.
pub mod checkpoint;
pub mod config;
pub mod deberta;
pub mod heads;
pub mod linear;

pub use checkpoint::{LoadReport, ModelDir, WeightFormat};
pub use config::DebertaConfig;
pub use heads::{DebertaModel, HeadKind, ModelOutput};
pub use linear::{LinearFactory, LinearLayer, PlainLinearFactory};
