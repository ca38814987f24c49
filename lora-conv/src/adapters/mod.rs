//! The conv adapter modules, one file each.

mod cp;
mod hf;
mod tucker2;

pub use cp::CpAdapter;
pub use hf::HfAdapter;
pub use tucker2::Tucker2Adapter;

use lora_core::{LoraError, Result};

/// `(t, s/g, K)` of a conv kernel shape `[t, s/g, k_1..k_d]`, d in 1..=3.
pub(crate) fn kernel_parts(path: &str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    match shape {
        [t, c, kernel @ ..] if (1..=3).contains(&kernel.len()) => {
            Ok((*t, *c, kernel.iter().product()))
        }
        _ => Err(LoraError::UnsupportedGeometry {
            path: path.to_string(),
            reason: format!(
                "a conv kernel is [out, in/groups, k..] with 1 to 3 spatial axes, got {shape:?}"
            ),
        }),
    }
}

/// Refuse kernels with an empty axis.
pub(crate) fn check_kernel(path: &str, shape: &[usize]) -> Result<()> {
    if shape.contains(&0) {
        return Err(LoraError::UnsupportedGeometry {
            path: path.to_string(),
            reason: format!("kernel shape {shape:?} has an empty axis"),
        });
    }
    Ok(())
}
