//! Inflating trained 2D conv adapters, so that the adapted 3D net equals the adapted 2D net on
//! every slice.
//!
//! Each adapter type says how in its own [`lora_conv::ConvAdapter::inflate`]: the factor that
//! carries the spatial axes is inflated like a kernel, so `ΔK3 = inflate(ΔK2)` whenever the
//! update is linear in that factor.
//! - LoCon: the down kernel `[r, s/g, kh, kw]`;
//! - Tucker-2: the mid kernel `[r, r, kh, kw]`;
//! - CP: a depth factor `[kd, r]` is prepended, one-hot at the centre row (centre mode) or
//!   `1/kd` everywhere (mean mode); it is trainable, so further training on volumes can use
//!   depth;
//! - LoHa: the first product's input side, the second one's repeated along depth;
//! - LoKr: `w2`, which holds the spatial axes.

use lora_conv::{AnyAdapter, Inflater};

use crate::error::{InflateError, Result};
use crate::functional::kernel::inflate_checked;
use crate::options::InflateOptions;

/// Inflate the adapter of a 2D conv kernel (`path` names it in errors).
///
/// # Errors
/// The options' own errors (see [`InflateOptions::validate`]); [`InflateError::Adapter`] for a
/// linear adapter, an adapter whose kernel is not 2D, or a type without inflation.
pub fn inflate_adapter(
    path: &str,
    adapter: AnyAdapter,
    options: &InflateOptions,
) -> Result<AnyAdapter> {
    options.validate()?;
    let (depth, mode) = (options.depth, options.mode);
    let kernel = move |k| inflate_checked(k, depth, mode);
    adapter
        .inflate(path, &Inflater::new(depth, &kernel))
        .map_err(|e| InflateError::Adapter {
            path: path.to_string(),
            reason: match e {
                lora_core::LoraError::UnsupportedGeometry { reason, .. } => reason,
                other => other.to_string(),
            },
        })
}
