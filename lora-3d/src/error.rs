//! The error type of inflation.

use lora_core::LoraError;
use thiserror::Error;

/// What can go wrong when inflating a 2D model, layer, kernel or adapter to 3D.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InflateError {
    /// The depth kernel size is zero.
    #[error("depth kernel size must be at least 1, got 0")]
    ZeroDepth,
    /// The depth kernel size is even: there is no centre slice and no symmetric padding.
    #[error(
        "depth kernel size must be odd, got {depth}: an even kernel has no centre slice and \
         needs asymmetric depth padding, which burn's Conv3d does not support"
    )]
    EvenDepth {
        /// The requested depth.
        depth: usize,
    },
    /// The depth kernel size is above [`crate::options::MAX_DEPTH`].
    #[error("depth kernel size {depth} is above the largest supported, {max}")]
    DepthTooLarge {
        /// The requested depth.
        depth: usize,
        /// [`crate::options::MAX_DEPTH`].
        max: usize,
    },
    /// The requested depth geometry breaks the exactness the mode promises.
    #[error("{mode} inflation with depth {depth}: {reason}")]
    InexactDepth {
        /// The mode (`centre` or `mean`).
        mode: &'static str,
        /// The depth kernel size.
        depth: usize,
        /// Why the geometry is inexact.
        reason: String,
    },
    /// The 2D layer's padding has no 3D equivalent in burn's Conv3d (symmetric only).
    #[error("cannot inflate `{path}`: {reason}")]
    Padding {
        /// Path of the layer's weight.
        path: String,
        /// What the padding is and why it cannot be kept.
        reason: String,
    },
    /// A weight carries a reparameterization that is not a LoRA adapter of this workspace.
    #[error(
        "cannot inflate `{path}`: its reparameterization is not a lora-conv `AnyAdapter` or a \
         lora-core `LinearAdapter`; strip or materialize it first"
    )]
    UnknownAdapter {
        /// Path of the weight.
        path: String,
    },
    /// An adapter cannot be inflated as asked (for example a linear adapter on a kernel).
    #[error("cannot inflate the adapter of `{path}`: {reason}")]
    Adapter {
        /// Path of the weight.
        path: String,
        /// Why.
        reason: String,
    },
    /// A custom `Inflate` impl built a weight with a new parameter id, so its adapter could not
    /// be put back.
    #[error(
        "the adapters of {paths:?} were not re-attached: the inflated model has no parameter with \
         their ids. Inflate adapted weights with `Inflation::kernel` or `Inflation::carry`, which \
         keep the id"
    )]
    LostAdapters {
        /// Paths (in the 2D model) of the weights whose adapters were lost.
        paths: Vec<String>,
    },
    /// An error from lora-core (merge state, no adapters).
    #[error(transparent)]
    Lora(#[from] LoraError),
}

/// `Result` with [`InflateError`].
pub type Result<T> = std::result::Result<T, InflateError>;
