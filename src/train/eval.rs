//! Eval-mode predictions and a dev set's metrics, now in [`crate::task::predict`] (the task
//! layer evaluates; training only asks it). Kept as a path so that `train::eval::*` users build
//! while issue 20's split of `train` lands; new code imports `crate::task::predict`.

pub use crate::task::predict::*;
