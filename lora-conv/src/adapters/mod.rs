//! The built-in adapter types, one file each. Each is a burn module implementing
//! [`lora_core::Adapter`] and [`crate::ConvAdapter`]; [`crate::ConvVariant::BUILTIN`] registers
//! them.

mod cp;
mod dora;
mod locon;
mod loha;
mod loha_tucker;
mod lokr;
mod tucker2;

pub use cp::CpAdapter;
pub use dora::DoraAdapter;
pub use locon::LoConAdapter;
pub use loha::LoHaAdapter;
pub use loha_tucker::LoHaTuckerAdapter;
pub use lokr::LoKrAdapter;
pub use tucker2::Tucker2Adapter;

use lora_core::{LoraError, Result};

/// `(t, c, K)` of a weight shape `[t, c, k_1..k_d]` with `d` in `spatial` (`K = Π k_j`, 1 for
/// a linear weight), refusing empty axes.
pub(crate) fn weight_parts(
    path: &str,
    shape: &[usize],
    spatial: core::ops::RangeInclusive<usize>,
) -> Result<(usize, usize, usize)> {
    let refuse = |reason: String| LoraError::UnsupportedGeometry {
        path: path.to_string(),
        reason,
    };
    match shape {
        [t, c, kernel @ ..] if spatial.contains(&kernel.len()) => {
            if shape.contains(&0) {
                return Err(refuse(format!("weight shape {shape:?} has an empty axis")));
            }
            Ok((*t, *c, kernel.iter().product()))
        }
        _ if *spatial.start() == 0 => Err(refuse(format!(
            "expected a linear weight [out, in] or a conv kernel [out, in/groups, k..] with up \
             to {} spatial axes, got {shape:?}",
            spatial.end()
        ))),
        _ => Err(refuse(format!(
            "a conv kernel is [out, in/groups, k..] with {} to {} spatial axes, got {shape:?}",
            spatial.start(),
            spatial.end()
        ))),
    }
}
