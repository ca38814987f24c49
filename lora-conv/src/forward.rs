//! How a [`LoraConv`](crate::LoraConv) computes its output from the same parameters.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The forward form of an adapted conv. All three compute the same function from the same
/// parameters (with dropout off); they differ in cost.
///
/// - [`ForwardMode::WeightSpace`]: recompose `W' = W + scale·ΔW`, then one conv with `W'`.
///   Exact for every geometry, groups included. In training, the gradient of the whole
///   `W'` is computed (the conv's weight-gradient GEMM runs), then flows into the factors.
/// - [`ForwardMode::Bypass`]: `base(x) + branch(x)`. The frozen base conv needs no weight
///   gradient; the low-rank branch adds its own small convs. Grouped convs are refused.
/// - [`ForwardMode::Auto`]: per call, the cheaper of the two under a
///   [`CostModel`](crate::CostModel) for this layer's shape, batch and spatial size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardMode {
    /// One conv with the recomposed weight.
    WeightSpace,
    /// Base conv plus the low-rank branch.
    Bypass,
    /// The cheaper of the two, chosen per call.
    #[default]
    Auto,
}

impl ForwardMode {
    /// Every mode, in a stable order.
    pub const ALL: [ForwardMode; 3] = [
        ForwardMode::WeightSpace,
        ForwardMode::Bypass,
        ForwardMode::Auto,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ForwardMode::WeightSpace => "weight",
            ForwardMode::Bypass => "bypass",
            ForwardMode::Auto => "auto",
        }
    }
}

impl fmt::Display for ForwardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A forward-mode name that is not one of `weight`, `weight-space`, `bypass`, `auto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown forward mode {given:?}: expected weight, bypass or auto")]
pub struct UnknownForwardMode {
    /// What was given.
    pub given: String,
}

impl FromStr for ForwardMode {
    type Err = UnknownForwardMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "weight" | "weight-space" | "weightspace" => Ok(ForwardMode::WeightSpace),
            "bypass" => Ok(ForwardMode::Bypass),
            "auto" => Ok(ForwardMode::Auto),
            _ => Err(UnknownForwardMode {
                given: s.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for mode in ForwardMode::ALL {
            assert_eq!(mode.name().parse::<ForwardMode>(), Ok(mode));
        }
        assert_eq!("weight-space".parse(), Ok(ForwardMode::WeightSpace));
        let err = "fast".parse::<ForwardMode>().unwrap_err();
        assert!(err.to_string().contains("\"fast\""), "{err}");
    }
}
