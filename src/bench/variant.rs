//! What `bench` trains (`--method`): one variant per method, and TriAdaptLoRA twice (at rank r,
//! and growing from r/2). Each method's set-up at the average rank is its own config's
//! (`MethodConfig::at_bench_rank`, src/peft/method.rs).

use std::str::FromStr;

use anyhow::Result;

use crate::peft::method::MethodName;

crate::listed::listed_enum! {
    /// What trains, and how its ranks are set up for timing.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Variant {
        Full,
        /// LoRA at rank r.
        Lora,
        /// AdaLoRA: r_init = 1.5 r, target r, masking at every step (t_init = t_final = 0, dT = 1).
        Adalora,
        /// IncreLoRA: from r/2 to an average of r, growing every step after the warm-up.
        Increlora,
        /// TriAdaptLoRA started at rank r with a budget of r (no growth): the same average rank as LoRA.
        Triadapt,
        /// TriAdaptLoRA from r/2 to an average of r, growing every step of the timed window.
        TriadaptGrow,
    }
}

impl Variant {
    /// The method the variant trains.
    pub fn method(self) -> MethodName {
        match self {
            Variant::Full => MethodName::Full,
            Variant::Lora => MethodName::Lora,
            Variant::Adalora => MethodName::Adalora,
            Variant::Increlora => MethodName::Increlora,
            Variant::Triadapt | Variant::TriadaptGrow => MethodName::Triadapt,
        }
    }

    /// Whether the variant starts a growing method below the average rank to grow during the
    /// timed steps (`triadapt-grow`; IncreLoRA always grows).
    pub fn grows(self) -> bool {
        self == Variant::TriadaptGrow
    }

    /// The method's name; `triadapt-grow` for the growing TriAdaptLoRA variant.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::TriadaptGrow => "triadapt-grow",
            other => other.method().as_str(),
        }
    }
}

impl FromStr for Variant {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Variant::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| anyhow::anyhow!("--method {s:?}: expected one of {}", Variant::ALL.map(|m| m.as_str()).join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Variant::ALL` cannot miss a variant (`listed_enum!`); a method without a variant fails here.
    #[test]
    fn every_method_has_a_variant() {
        for m in MethodName::ALL {
            assert!(Variant::ALL.iter().any(|v| v.method() == m), "bench::Variant has no variant for {m:?}");
        }
    }

    #[test]
    fn variants_are_named() {
        for v in Variant::ALL {
            assert_eq!(v.as_str().parse::<Variant>().unwrap(), v);
        }
    }
}
