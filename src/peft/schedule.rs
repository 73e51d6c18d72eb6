//! Schedules as pure functions of the step: TriAdaptLoRA's allocation gate, growth count k_t,
//! threshold selection and growth step (docs/method.md, "Allocation"), and AdaLoRA's cubic budget ("Budget schedule and masking", PEFT).

use serde::{Deserialize, Serialize};

/// How many matrices grow at an allocation step (docs/method.md, "Allocation").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdKind {
    /// k = floor((Btot - b) * rho)
    #[default]
    Linear,
    /// k = floor((Btot - b) ^ rho)
    Exponential,
    /// k = top_k (the ablation baseline)
    Fixed,
}

/// Whether growth may pass the total-rank budget (`method.budget`; docs/method.md, "Budget").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BudgetMode {
    /// As the authors' code: every selected matrix gets its full growth step, even past the
    /// budget (TriAdaptLoRA's `increase_to_target_rank`, IncreLoRA's likewise).
    Reference,
    /// Never above the budget: grants go highest score first, the last one cut to what is left.
    #[default]
    Strict,
}

/// Allocation happens at step t when the budget is not reached, warm-up is over and t is a
/// multiple of the update interval.
pub fn allocation_due(t: i64, warmup: i64, interval: i64, total_rank: i64, budget: i64) -> bool {
    total_rank < budget && t > warmup && interval > 0 && t % interval == 0
}

/// Where a run is in its allocation phase: step t, the warm-up t_w and the run's total steps T.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub step: i64,
    pub warmup: i64,
    pub total_steps: i64,
}

/// Number of matrices to grow at step t, clamped to [1, n].
pub fn growth_count(kind: ThresholdKind, top_k: usize, at: Progress, total_rank: i64, budget: i64, n: usize) -> usize {
    let Progress { step: t, warmup, total_steps } = at;
    let rho = (t - warmup) as f64 / (total_steps - warmup).max(1) as f64;
    let remaining = (budget - total_rank).max(0) as f64;
    let k = match kind {
        ThresholdKind::Linear => (remaining * rho).floor(),
        // exp(rho ln(remaining)) as the reference computes it: at exact powers it rounds below
        // the integer where powf does not (remaining 8, rho 1/3: 1.9999999999999998 -> 1).
        ThresholdKind::Exponential => (rho * remaining.ln()).exp().floor(),
        ThresholdKind::Fixed => top_k as f64,
    };
    (k.max(0.0) as usize).clamp(1, n.max(1))
}

/// dr = rbar / 2 rounded down, at least 1 (docs/method.md, "Allocation"), unless the config sets it.
pub fn default_growth_step(ref_rank: i64) -> i64 {
    (ref_rank / 2).max(1)
}

/// Which matrices grow and by how much: threshold tau = the k-th largest score, every matrix
/// with score >= tau grows by `dr` (ties may grow more than k), highest scores first. Under
/// `BudgetMode::Strict` the last grants are cut so that the total never passes `remaining`;
/// under `Reference` every selected matrix gets all of `dr`. Returns (index, ranks).
pub fn select_growth(scores: &[f64], k: usize, dr: i64, remaining: i64, mode: BudgetMode) -> Vec<(usize, i64)> {
    if scores.is_empty() || k == 0 || remaining <= 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // Highest score first; equal scores keep model order (stable sort).
    order.sort_by(|&i, &j| scores[j].partial_cmp(&scores[i]).unwrap_or(std::cmp::Ordering::Equal));
    let tau = scores[order[k.min(scores.len()) - 1]];
    let mut left = remaining;
    let mut out = Vec::new();
    for i in order.into_iter().take_while(|&i| scores[i] >= tau) {
        if mode == BudgetMode::Reference {
            out.push((i, dr));
            continue;
        }
        if left == 0 {
            break;
        }
        let grant = dr.min(left);
        out.push((i, grant));
        left -= grant;
    }
    out
}

/// When and how TriAdaptLoRA grows over one run (its config's schedule keys, docs/method.md,
/// "TriAdaptLoRA / Allocation"), handed to the allocation by name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TriadaptSchedule {
    pub threshold: ThresholdKind,
    /// Steps before the first allocation (t_w).
    pub warmup: i64,
    /// Steps between allocations (delta T).
    pub interval: i64,
    pub total_steps: i64,
    /// A fixed growth count (0: the dynamic threshold decides).
    pub top_k: usize,
    /// Ranks granted to a matrix per allocation.
    pub dr: i64,
    pub mode: BudgetMode,
}

impl TriadaptSchedule {
    /// The allocation at step t: None when none is due; else the growth count k and the grants
    /// for `scores` of matrices at `ranks` under `budget`. `scores` is called only when an
    /// allocation is due (reading the importance updates the controller's memory).
    pub fn allocation(&self, t: i64, ranks: &[i64], budget: i64, scores: impl FnOnce() -> Vec<f64>) -> Option<(usize, Vec<(usize, i64)>)> {
        let b: i64 = ranks.iter().sum();
        if !allocation_due(t, self.warmup, self.interval, b, budget) {
            return None;
        }
        let at = Progress { step: t, warmup: self.warmup, total_steps: self.total_steps };
        let k = growth_count(self.threshold, self.top_k, at, b, budget, ranks.len());
        Some((k, select_growth(&scores(), k, self.dr, budget - b, self.mode)))
    }
}

/// AdaLoRA's budget schedule over one run (PEFT's `RankAllocator.budget_schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdaloraSchedule {
    /// b0: the initial budget (init_r per matrix).
    pub init_budget: i64,
    /// b_T: the final budget (target_r per matrix).
    pub target_budget: i64,
    pub tinit: i64,
    pub tfinal: i64,
    pub total_steps: i64,
    /// Steps between masks in the budget phase (delta T).
    pub delta_t: i64,
}

impl AdaloraSchedule {
    /// The budget at `step` and whether the mask is applied then, exactly as PEFT: b0 until
    /// t_i, a cubic decrease to b_T (truncated to an integer) with masking every dT steps, then
    /// b_T with masking at every step after T - t_f.
    pub fn budget(&self, step: i64) -> (i64, bool) {
        let (tinit, tfinal, total) = (self.tinit, self.tfinal, self.total_steps);
        if step <= tinit {
            (self.init_budget, false)
        } else if step > total - tfinal {
            (self.target_budget, true)
        } else {
            let mul = 1.0 - (step - tinit) as f64 / (total - tfinal - tinit) as f64;
            let budget = ((self.init_budget - self.target_budget) as f64 * mul.powi(3) + self.target_budget as f64) as i64;
            (budget, self.delta_t > 0 && step % self.delta_t == 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the allocation loop with distinct scores: (rounds, step at which the budget is
    /// reached, k per round).
    fn simulate(kind: ThresholdKind) -> (usize, i64, Vec<usize>) {
        let (n, rbar, tw, dt, total) = (72usize, 2i64, 100i64, 100i64, 3900i64);
        let budget = rbar * n as i64;
        let dr = default_growth_step(rbar);
        let mut ranks = vec![1i64; n];
        let scores: Vec<f64> = (0..n).map(|i| 1.0 / (i + 1) as f64).collect();
        let (mut rounds, mut reached, mut ks) = (0, -1, Vec::new());
        for t in 0..total {
            let b: i64 = ranks.iter().sum();
            if !allocation_due(t, tw, dt, b, budget) {
                continue;
            }
            let k = growth_count(kind, 0, Progress { step: t, warmup: tw, total_steps: total }, b, budget, n);
            for (i, g) in select_growth(&scores, k, dr, budget - b, BudgetMode::Strict) {
                ranks[i] += g;
            }
            rounds += 1;
            ks.push(k);
            let after: i64 = ranks.iter().sum();
            assert!(after <= budget, "total rank {after} passed the budget {budget} at t={t}");
            if after == budget && reached < 0 {
                reached = t;
            }
        }
        (rounds, reached, ks)
    }

    #[test]
    fn worked_check_linear_reaches_budget_at_1900_after_18_rounds() {
        let (rounds, reached, ks) = simulate(ThresholdKind::Linear);
        assert_eq!(&ks[..5], &[1, 3, 5, 6, 7]);
        assert_eq!((rounds, reached), (18, 1900));
    }

    #[test]
    fn worked_check_exponential_reaches_budget_at_2700_after_26_rounds() {
        let (rounds, reached, _) = simulate(ThresholdKind::Exponential);
        assert_eq!((rounds, reached), (26, 2700));
    }

    #[test]
    fn growth_count_is_clamped_to_one_and_n() {
        // rho = 0 right after warm-up would give k = 0: clamped up to 1.
        assert_eq!(growth_count(ThresholdKind::Linear, 0, Progress { step: 100, warmup: 100, total_steps: 1000 }, 10, 20, 10), 1);
        assert_eq!(growth_count(ThresholdKind::Fixed, 50, Progress { step: 200, warmup: 100, total_steps: 1000 }, 10, 200, 10), 10);
        assert_eq!(growth_count(ThresholdKind::Fixed, 0, Progress { step: 200, warmup: 100, total_steps: 1000 }, 10, 200, 10), 1);
        assert_eq!(growth_count(ThresholdKind::Linear, 0, Progress { step: 999, warmup: 100, total_steps: 1000 }, 0, 1000, 72), 72);
    }

    #[test]
    fn allocation_only_after_warmup_on_the_interval_and_below_budget() {
        assert!(!allocation_due(100, 100, 100, 10, 20)); // t == t_w is still warm-up
        assert!(allocation_due(200, 100, 100, 10, 20));
        assert!(!allocation_due(250, 100, 100, 10, 20));
        assert!(!allocation_due(300, 100, 100, 20, 20)); // budget reached
    }

    #[test]
    fn growth_step_defaults() {
        assert_eq!(default_growth_step(1), 1);
        assert_eq!(default_growth_step(2), 1);
        assert_eq!(default_growth_step(8), 4);
        assert_eq!(default_growth_step(9), 4);
    }

    #[test]
    fn ties_grow_together_and_the_remaining_budget_caps_the_grants() {
        let strict = BudgetMode::Strict;
        assert_eq!(select_growth(&[0.5, 0.9, 0.5, 0.1], 2, 2, 100, strict), vec![(1, 2), (0, 2), (2, 2)]);
        assert_eq!(select_growth(&[0.5, 0.9, 0.5, 0.1], 3, 2, 3, strict), vec![(1, 2), (0, 1)]);
        // The reference grants every selected matrix all of dr, past the budget.
        assert_eq!(select_growth(&[0.5, 0.9, 0.5, 0.1], 3, 2, 3, BudgetMode::Reference), vec![(1, 2), (0, 2), (2, 2)]);
    }

    /// The reference's int(exp(rho ln(B - b))): with 8 ranks left and rho = 1/3 it is
    /// int(1.9999999999999998) = 1, where 8^(1/3) by powf is exactly 2.
    #[test]
    fn exponential_count_rounds_as_exp_of_the_log() {
        // rho = (t - warmup) / (T - warmup) = 100 / 300.
        assert_eq!(growth_count(ThresholdKind::Exponential, 0, Progress { step: 200, warmup: 100, total_steps: 400 }, 64, 72, 72), 1);
        assert_eq!(8f64.powf(1.0 / 3.0).floor(), 2.0);
        // rho = 1 with 8 left: exp(ln 8) = 7.999999999999998, so the reference grows 7, not 8;
        // rho = 1/2 of 16 left: exp(ln(16) / 2), whatever side of 4 it falls.
        assert_eq!(growth_count(ThresholdKind::Exponential, 0, Progress { step: 400, warmup: 100, total_steps: 400 }, 64, 72, 72), 7);
        let half = growth_count(ThresholdKind::Exponential, 0, Progress { step: 250, warmup: 100, total_steps: 400 }, 56, 72, 72);
        assert_eq!(half, (0.5 * 16f64.ln()).exp().floor() as usize);
    }

    #[test]
    fn adalora_budget_at_each_phase_boundary() {
        // b0 = 12, b_T = 8, t_i = 10, t_f = 20, T = 110, dT = 5: cubic span 80 steps.
        let s = AdaloraSchedule { init_budget: 12, target_budget: 8, tinit: 10, tfinal: 20, total_steps: 110, delta_t: 5 };
        let f = |t| s.budget(t);
        assert_eq!(f(0), (12, false));
        assert_eq!(f(10), (12, false)); // t <= t_i: initial budget, no mask
        assert_eq!(f(11), ((4.0 * (1.0 - 1.0 / 80.0f64).powi(3) + 8.0) as i64, false));
        assert_eq!(f(15), ((4.0 * (1.0 - 5.0 / 80.0f64).powi(3) + 8.0) as i64, true));
        assert_eq!(f(50), ((4.0 * 0.5f64.powi(3) + 8.0) as i64, true)); // 8.5 truncated to 8
        assert_eq!(f(90), (8, true)); // t = T - t_f: end of the cubic
        assert_eq!(f(91), (8, true)); // final phase
        assert_eq!(f(109), (8, true));
    }
}
