//! Timing the rank controller inside `Trainer::step`: [`TimedController`] wraps the method's
//! controller and records each step's time in its hooks; [`sync`] waits for CUDA so that a time
//! is the work's own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use tch::{Device, Tensor};

use crate::peft::RankController;

/// Per-call times of the wrapped controller's `after_step`.
#[derive(Debug, Default, Clone)]
pub(super) struct CallTimes(pub(super) Arc<Mutex<Vec<Duration>>>);

/// A rank controller that times the `after_step` of the one it wraps (synchronising CUDA first
/// and last, so that the time is the controller's own).
#[derive(Debug)]
pub(super) struct TimedController {
    pub(super) inner: Box<dyn RankController>,
    pub(super) times: CallTimes,
    pub(super) device: Device,
    /// Time of this step's `before_step`, added to its `after_step`: one entry per step.
    pub(super) before: Duration,
}

impl RankController for TimedController {
    fn after_step(&mut self, step: i64, opt: &mut crate::optim::AdamW) -> Result<()> {
        sync(self.device);
        let t0 = Instant::now();
        let r = self.inner.after_step(step, opt);
        sync(self.device);
        let took = t0.elapsed() + std::mem::take(&mut self.before);
        self.times.0.lock().expect("timer lock").push(took);
        r
    }
    fn before_step(&mut self, step: i64) -> Result<()> {
        sync(self.device);
        let t0 = Instant::now();
        let r = self.inner.before_step(step);
        sync(self.device);
        self.before += t0.elapsed();
        r
    }
    fn grown_weight_decay(&self) -> Option<f64> {
        self.inner.grown_weight_decay()
    }
    fn adapters(&self) -> Vec<(String, crate::peft::DynAdapter)> {
        self.inner.adapters()
    }
    fn regularization(&self) -> Option<Tensor> {
        self.inner.regularization()
    }
    fn ranks(&self) -> Vec<(String, i64)> {
        self.inner.ranks()
    }
    fn budget(&self) -> Option<i64> {
        self.inner.budget()
    }
    fn named_params(&self) -> Vec<(String, Tensor)> {
        self.inner.named_params()
    }
    fn trainable_count(&self) -> i64 {
        self.inner.trainable_count()
    }
    fn reported_param_count(&self) -> i64 {
        self.inner.reported_param_count()
    }
    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.inner.state_tensors()
    }
    fn load_state(&mut self, state: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        self.inner.load_state(state)
    }
}

/// Waits for the device's queued work (CUDA; nothing on CPU).
pub(super) fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}
