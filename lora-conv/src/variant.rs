//! The three conv adapter variants, by name.

use core::fmt;
use core::str::FromStr;

use lora_core::LoraError;
use serde::{Deserialize, Serialize};

/// A conv LoRA variant. Its name picks it from a config or command line (`hf`, `tucker2`, `cp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConvVariant {
    /// PEFT/diffusers/kohya: a kxk down conv s->r, then a 1x1 up conv r->t.
    Hf,
    /// LyCORIS `use_tucker` (the design document's "CP"): 1x1 down, kxk mid r->r, 1x1 up.
    Tucker2,
    /// Canonical polyadic (Lebedev et al. 2014): one factor per mode of the kernel.
    Cp,
}

impl ConvVariant {
    /// Every variant, in a stable order.
    pub const ALL: [ConvVariant; 3] = [ConvVariant::Hf, ConvVariant::Tucker2, ConvVariant::Cp];

    /// The variant's name, as parsed.
    pub fn name(self) -> &'static str {
        match self {
            ConvVariant::Hf => "hf",
            ConvVariant::Tucker2 => "tucker2",
            ConvVariant::Cp => "cp",
        }
    }
}

impl fmt::Display for ConvVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConvVariant {
    type Err = LoraError;

    /// `hf` (or `lora`, `locon`), `tucker2` (or `tucker`), `cp` (or `cpd`); case, `-` and `_`
    /// are ignored.
    ///
    /// # Errors
    /// [`LoraError::UnknownVariant`] naming the string.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "hf" | "lora" | "locon" => Ok(ConvVariant::Hf),
            "tucker2" | "tucker" => Ok(ConvVariant::Tucker2),
            "cp" | "cpd" => Ok(ConvVariant::Cp),
            _ => Err(LoraError::UnknownVariant {
                name: s.to_string(),
            }),
        }
    }
}
