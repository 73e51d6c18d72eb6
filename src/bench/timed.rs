//! Timing inside the real `Trainer::step`: [`PhaseTimer`] is told as each phase ends and keeps
//! the rank controller's time (and, for `--breakdown`, every phase's); [`sync`] waits for CUDA so
//! that a time is the work's own.

use std::time::{Duration, Instant};

use tch::Device;

use crate::train::{Phase, StepObserver};

/// Times the phases of the real step as they end: the rank controller's two hooks always
/// (waiting for the device around them, so that the time is the controller's own), and with
/// `breakdown` every phase (forward with the loss, backward with zero_grad and clipping, the
/// optimizer with the controller's first hook).
pub(super) struct PhaseTimer {
    device: Device,
    breakdown: bool,
    /// The end of the last timed phase.
    pub(super) last: Instant,
    pub(super) controller: Duration,
    /// Forward, backward, optimizer.
    pub(super) phases: [Duration; 3],
}

impl PhaseTimer {
    pub(super) fn start(device: Device, breakdown: bool) -> Self {
        sync(device);
        PhaseTimer { device, breakdown, last: Instant::now(), controller: Duration::ZERO, phases: [Duration::ZERO; 3] }
    }
}

impl StepObserver for PhaseTimer {
    fn phase_done(&mut self, phase: Phase) {
        let bounds_controller = matches!(phase, Phase::Clipping | Phase::ControllerBefore | Phase::Optimizer | Phase::ControllerAfter);
        if !self.breakdown && !bounds_controller {
            return;
        }
        sync(self.device);
        let now = Instant::now();
        let took = now - self.last;
        self.last = now;
        match phase {
            Phase::ControllerBefore | Phase::ControllerAfter => self.controller += took,
            _ if !self.breakdown => {}
            Phase::Forward | Phase::Loss => self.phases[0] += took,
            Phase::ZeroGrad | Phase::Backward | Phase::Clipping => self.phases[1] += took,
            Phase::Optimizer => self.phases[2] += took,
        }
    }
}

/// Waits for the device's queued work (CUDA; nothing on CPU).
pub(super) fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}
