//! Input data: where models and datasets are on disk (`hub`, no network) and how they get there
//! (`fetch`), the GLUE and SQuAD 2.0 readers, the tokenizer, and batching.
pub mod batch;
pub mod fetch;
pub mod glue;
pub mod hub;
pub mod squad;
pub mod tokenizer;
