//! When, after a finished step, a run evaluates, writes a log line, saves a checkpoint or stops:
//! a pure function of the step count and the run's settings (the keys `eval_steps`,
//! `log_steps`, `save_steps`), so a change to the loop's timing is a change here, unit-tested.

/// The run's intervals, in optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub total_steps: i64,
    pub eval_steps: i64,
    pub log_steps: i64,
    pub save_steps: i64,
}

/// Seconds without a log line after which one is written anyway (a slow run still shows life).
pub const LOG_AT_LEAST_EVERY_SECS: f64 = 60.0;

/// What is due after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Evaluate on the dev set (every `eval_steps`, and at the last step).
    pub evaluate: bool,
    /// Write the log window (curve.csv, metrics.jsonl, the progress line): every `log_steps`,
    /// at every evaluation and checkpoint, at the last step, and after a quiet minute.
    pub log: bool,
    /// Save a checkpoint (every `save_steps` before the last step, whose state is `adapter/`,
    /// and when asked to stop).
    pub save: bool,
    /// End the run after saving (a signal asked for it).
    pub stop: bool,
}

impl Cadence {
    /// Whether the dev set is evaluated after `done` steps (1-based).
    pub fn evaluates(&self, done: i64) -> bool {
        done % self.eval_steps.max(1) == 0 || done == self.total_steps
    }

    /// What is due after `done` steps, with a stop requested or not and `quiet_secs` since the
    /// last log line.
    pub fn after(&self, done: i64, stop_requested: bool, quiet_secs: f64) -> Due {
        let evaluate = self.evaluates(done);
        let save = stop_requested || (done % self.save_steps.max(1) == 0 && done < self.total_steps);
        let log =
            save || evaluate || done % self.log_steps.max(1) == 0 || done == self.total_steps || quiet_secs >= LOG_AT_LEAST_EVERY_SECS;
        Due { evaluate, log, save, stop: stop_requested }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Cadence = Cadence { total_steps: 20, eval_steps: 8, log_steps: 3, save_steps: 5 };

    fn due(evaluate: bool, log: bool, save: bool, stop: bool) -> Due {
        Due { evaluate, log, save, stop }
    }

    /// Every step of a 20-step run with evaluation every 8, logs every 3, checkpoints every 5,
    /// worked by hand.
    #[test]
    fn a_short_run_step_by_step() {
        let want = |done: i64| match done {
            3 | 6 | 9 | 12 | 18 => due(false, true, false, false),
            5 | 10 | 15 => due(false, true, true, false),
            8 | 16 => due(true, true, false, false),
            // The last step evaluates and logs; its state is adapter/, not a checkpoint.
            20 => due(true, true, false, false),
            _ => due(false, false, false, false),
        };
        for done in 1..=20 {
            assert_eq!(C.after(done, false, 0.0), want(done), "after step {done}");
        }
    }

    /// A stop request saves and logs at the next boundary, even at the last step; a quiet
    /// minute forces a log line and nothing else.
    #[test]
    fn a_stop_saves_and_a_quiet_minute_logs() {
        assert_eq!(C.after(7, true, 0.0), due(false, true, true, true));
        assert_eq!(C.after(20, true, 0.0), due(true, true, true, true));
        assert_eq!(C.after(7, false, 59.9), due(false, false, false, false));
        assert_eq!(C.after(7, false, 60.0), due(false, true, false, false));
    }

    /// Intervals of 0 (unset) act as 1 rather than dividing by zero.
    #[test]
    fn zero_intervals_act_as_one() {
        let c = Cadence { total_steps: 4, eval_steps: 0, log_steps: 0, save_steps: 0 };
        assert_eq!(c.after(2, false, 0.0), due(true, true, true, false));
    }
}
