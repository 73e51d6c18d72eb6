//! The phases of a training step, and an observer the step reports them to as each ends: a
//! benchmark times or counts the real [`super::Trainer::step`] this way, instead of a replica of
//! the step or a wrapper around the rank controller that must forward every hook.

/// A phase of [`super::Trainer::step`], in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The model's forward pass (train mode, dropout reseeded from the step).
    Forward,
    /// The task loss and the method's regulariser.
    Loss,
    /// Dropping the previous gradients.
    ZeroGrad,
    Backward,
    /// Gradient clipping.
    Clipping,
    /// The rank controller's hook before the update (allocation decisions from clipped gradients).
    ControllerBefore,
    /// AdamW.
    Optimizer,
    /// The rank controller after the update (growth, masking) and re-packing what grew.
    ControllerAfter,
}

/// Told the end of every phase of a step.
pub trait StepObserver {
    fn phase_done(&mut self, phase: Phase);
}

/// The observer of an ordinary step: none.
pub struct Unobserved;

impl StepObserver for Unobserved {
    fn phase_done(&mut self, _: Phase) {}
}
