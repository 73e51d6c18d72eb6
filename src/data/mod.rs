//! Input data: tokenization (tasks and batching come with the training issue).
pub mod tokenizer;
