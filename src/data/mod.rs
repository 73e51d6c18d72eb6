//! Input data: tokenization (tasks and batching come with the training issue).
pub mod batch;
pub mod fetch;
pub mod glue;
pub mod squad;
pub mod tokenizer;
