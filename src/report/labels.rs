//! The words figures and tables print: method, task and metric names (methods from
//! [`MethodName`], so that a new method needs no line here), axis labels with their units,
//! numbers written short, and the parts of file names.

use crate::peft::method::MethodName;
use crate::task::Task;

/// The paper's name of a method (`triadapt` -> `TriAdaptLoRA`, from [`MethodName::label`]);
/// unknown names unchanged.
pub fn method_label(method: &str) -> String {
    method.parse::<MethodName>().map(|m| m.label().to_string()).unwrap_or_else(|_| method.to_string())
}

/// Sort key of methods in every figure and legend ([`MethodName::figure_order`]: TriAdaptLoRA
/// first); unknown methods after, by name.
pub fn figure_rank(method: &str) -> (usize, String) {
    (method.parse::<MethodName>().map_or(MethodName::ALL.len(), MethodName::figure_order), method.to_string())
}

/// Sort key of methods in the GLUE table ([`MethodName::table_order`]: baselines first,
/// TriAdaptLoRA last); unknown methods after, by name.
pub fn method_rank(method: &str) -> (usize, String) {
    (method.parse::<MethodName>().map_or(MethodName::ALL.len(), MethodName::table_order), method.to_string())
}

/// The paper's name of a task (`sst2` -> `SST-2`, from [`Task::label`]); unknown names
/// upper-cased.
pub fn task_label(task: &str) -> String {
    Task::parse(task).map(|t| t.label().to_string()).unwrap_or_else(|_| task.to_uppercase())
}

/// Whether runs.csv holds `task`'s scores as percentages ([`Task::scores_in_percent`]: SQuAD
/// 2.0); unknown tasks are taken for fractions.
pub fn scores_in_percent(task: &str) -> bool {
    Task::parse(task).is_ok_and(|t| t.scores_in_percent())
}

/// Words for a metric column. `best_score` is named by the run's main metric.
pub fn metric_words(metric: &str, task: &str, main_metric: Option<&str>) -> String {
    let glue = match Task::parse(task) {
        Ok(Task::Glue(spec)) => Some(spec),
        _ => None,
    };
    // MNLI's `accuracy` is its matched dev set's; STS-B's combined score is of correlations.
    let (matched, regression) = (glue.is_some_and(|s| s.matched_dev), glue.is_some_and(|s| s.is_regression()));
    let base = |m: &str| -> String {
        match m {
            "accuracy" if matched => "matched accuracy".into(),
            "accuracy" => "accuracy".into(),
            "f1" => "F1".into(),
            "matthews_correlation" => "Matthews corr.".into(),
            "pearson" => "Pearson corr.".into(),
            "spearmanr" => "Spearman corr.".into(),
            "combined_score" if regression => "Pearson/Spearman mean".into(),
            "combined_score" => "mean of accuracy and F1".into(),
            "m_accuracy" => "matched accuracy".into(),
            "mm_accuracy" => "mismatched accuracy".into(),
            "exact" | "exact_match" => "exact match".into(),
            other => other.replace('_', " "),
        }
    };
    match metric {
        "best_score" => match main_metric {
            Some(m) => base(m),
            None => "main metric".into(),
        },
        m => base(m),
    }
}

/// The factor that turns a metric of `task` into the percent a figure draws: 100 for GLUE's
/// fractions, 1 for SQuAD 2.0 (its official scores are percent already) and for columns that
/// are not fractions.
pub fn percent_factor(metric: &str, task: &str) -> f64 {
    if scores_in_percent(task) || !is_fraction_metric(metric) {
        1.0
    } else {
        100.0
    }
}

/// Whether a metric column holds fractions (drawn and tabled as percentages).
pub fn is_fraction_metric(metric: &str) -> bool {
    let m = metric.trim_start_matches("m_").trim_start_matches("mm_");
    matches!(
        m,
        "best_score" | "accuracy" | "f1" | "matthews_correlation" | "pearson" | "spearmanr" | "combined_score" | "exact" | "exact_match"
    ) || metric.starts_with("m_")
        || metric.starts_with("mm_")
}

/// The axis label of a metric column, with its unit: `dev accuracy (%)`.
pub fn metric_axis_label(metric: &str, task: &str, main_metric: Option<&str>) -> String {
    match metric {
        "wall_seconds" => "wall-clock time (s)".into(),
        "trainable_params" => "trainable parameters".into(),
        "total_rank" => "total rank (sum over adapted matrices)".into(),
        "rank_budget" => "rank budget".into(),
        "best_step" => "best step".into(),
        m if is_fraction_metric(m) => format!("dev {} (%)", metric_words(m, task, main_metric)),
        m => m.replace('_', " "),
    }
}

/// The axis label of a swept key, with its symbol or unit where the paper names one.
pub fn knob_label(key: &str) -> String {
    let last = key.rsplit('.').next().unwrap_or(key);
    match last {
        "warmup_steps" if key.starts_with("optim.") => "learning-rate warm-up (steps)".into(),
        "warmup_steps" | "init_warmup" => "warm-up steps t_w".into(),
        "interval" | "incre_interval" => "rank update interval Δt (steps)".into(),
        "ref_rank" => "reference rank r (average per matrix)".into(),
        "target_rank" => "target rank (average per matrix)".into(),
        "init_rank" => "initial rank r0".into(),
        "growth_step" | "incre_rank_num" => "ranks added per growth Δr".into(),
        "rank" => "LoRA rank r".into(),
        "top_k" | "top_h" => "matrices grown per step (top-k)".into(),
        "lr" => "learning rate".into(),
        "orth_reg_weight" => "orthogonal regularisation weight γ".into(),
        "lora_alpha" => "LoRA alpha".into(),
        "lora_dropout" => "LoRA dropout".into(),
        "threshold" => "threshold schedule".into(),
        "importance" => "importance score".into(),
        "epochs" => "epochs".into(),
        "batch_size" => "batch size".into(),
        _ => key.to_string(),
    }
}

/// A name made safe for a file name: letters, digits, `-` and `_`.
pub fn file_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}

/// Formats a value for a figure's text: integers without decimals, else up to 4 significant.
pub fn short_number(v: f64) -> String {
    if v == v.round() && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else if v.abs() >= 0.01 && v.abs() < 1e5 {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

/// The file-name part and the words of a rank budget: `budget24`, `rank budget 24`.
pub fn budget_stem(budget: f64) -> String {
    format!("budget{}", file_safe(&short_number(budget)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_and_units_come_from_the_task() {
        assert_eq!((task_label("sst2"), task_label("squad2"), task_label("wnli")), ("SST-2".into(), "SQuAD 2.0".into(), "WNLI".into()));
        assert!(scores_in_percent("squad2") && !scores_in_percent("rte") && !scores_in_percent("wnli"));
        assert_eq!((percent_factor("accuracy", "rte"), percent_factor("f1", "squad2")), (100.0, 1.0));
        assert_eq!(
            (metric_words("accuracy", "mnli", None), metric_words("accuracy", "rte", None)),
            ("matched accuracy".into(), "accuracy".into())
        );
        assert_eq!(metric_words("combined_score", "stsb", None), "Pearson/Spearman mean");
        assert_eq!(metric_words("combined_score", "mrpc", None), "mean of accuracy and F1");
    }
}
