//! The error type shared by every crate of the workspace.

use thiserror::Error;

/// Everything a caller of the LoRA crates can get wrong.
///
/// Every variant that concerns one layer names its parameter path (as burn's module traversal
/// spells it, e.g. `blocks.0.conv.weight`) and the offending values, so that a failed attach on
/// a large model says exactly where and why.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum LoraError {
    /// The rank is zero or above what the adapted weight supports.
    #[error("`{path}`: rank {rank} is invalid for a weight of shape {shape:?}: {reason}")]
    InvalidRank {
        /// Parameter path.
        path: String,
        /// Requested rank.
        rank: usize,
        /// Shape of the adapted weight (burn layout).
        shape: Vec<usize>,
        /// Why the rank was refused, with the bound that applies.
        reason: String,
    },
    /// `alpha` is not a finite number.
    #[error("`{path}`: alpha {alpha} must be finite")]
    InvalidAlpha {
        /// Parameter path.
        path: String,
        /// Requested alpha.
        alpha: f64,
    },
    /// The adapter cannot be built for this weight's shape or layer geometry.
    #[error("`{path}`: unsupported geometry: {reason}")]
    UnsupportedGeometry {
        /// Parameter path (or layer name for bypass modules).
        path: String,
        /// What is unsupported.
        reason: String,
    },
    /// A regular expression in the configuration does not compile.
    #[error("invalid pattern `{pattern}` in `{field}`: {reason}")]
    InvalidPattern {
        /// Configuration field that holds the pattern.
        field: String,
        /// The pattern as given.
        pattern: String,
        /// The regex compiler's message.
        reason: String,
    },
    /// A pattern in the configuration matched no parameter of the model.
    #[error("pattern `{pattern}` in `{field}` matched no parameter; parameter paths are: {known}")]
    UnmatchedPattern {
        /// Configuration field that holds the pattern.
        field: String,
        /// The pattern as given.
        pattern: String,
        /// A few parameter paths of the model, to help fix the pattern.
        known: String,
    },
    /// The model already carries reparameterizations (burn does not nest them).
    #[error(
        "`{path}` is already reparameterized; burn does not support nested reparameterizations"
    )]
    AlreadyAdapted {
        /// Parameter path.
        path: String,
    },
    /// Merge, unmerge or an adapter operation was asked of a model without adapters.
    #[error("the model has no LoRA adapters")]
    NoAdapters,
    /// Merge was asked for adapters whose update already lives in the base weight.
    #[error("already merged: {paths:?}; unmerge first")]
    AlreadyMerged {
        /// Paths of the already merged weights.
        paths: Vec<String>,
    },
    /// Unmerge was asked for adapters that were never merged.
    #[error("not merged: {paths:?}; nothing to unmerge")]
    NotMerged {
        /// Paths of the unmerged weights.
        paths: Vec<String>,
    },
    /// A tensor has the wrong shape for where it goes.
    #[error("`{path}`: expected shape {expected:?}, got {actual:?}")]
    ShapeMismatch {
        /// Tensor path or key.
        path: String,
        /// Expected shape.
        expected: Vec<usize>,
        /// Actual shape.
        actual: Vec<usize>,
    },
    /// A backend was requested that this build does not include, or a device string is malformed.
    #[error("{0}")]
    Device(String),
    /// A key is missing from an adapter file or record.
    #[error("missing key `{key}` in {source_name}")]
    MissingKey {
        /// The key that was looked for.
        key: String,
        /// The file or record it was looked for in.
        source_name: String,
    },
    /// Merging (or unmerging) would write non-finite values into base weights, as PEFT's
    /// `safe_merge` checks. Nothing is changed then.
    #[error(
        "`{paths:?}`: W ± scale·ΔW has non-finite values (NaN or inf), so the update was not \
         folded in; the model is unchanged (check the adapter factors and alpha)"
    )]
    NonFiniteUpdate {
        /// Paths of the weights whose merged value would not be finite.
        paths: Vec<String>,
    },
    /// An adapter type name that is not registered.
    #[error("unknown adapter type `{name}`; registered types: {known}")]
    UnknownVariant {
        /// The name as given.
        name: String,
        /// The registered names.
        known: String,
    },
    /// An adapter type registered under a name (or alias) another type already has.
    #[error("adapter type name `{name}` is taken by {taken_by}; {refused} was not registered")]
    DuplicateName {
        /// The name both types claim.
        name: String,
        /// The Rust type registered first.
        taken_by: String,
        /// The Rust type refused.
        refused: String,
    },
    /// A convolution geometry that no convolution has (zero channels, an empty kernel axis,
    /// groups that do not divide the channels...).
    #[error("invalid conv geometry: {reason}")]
    InvalidGeometry {
        /// What is wrong, naming the field and its value.
        reason: String,
    },
    /// The target patterns matched parameters, but none whose tensor rank the config adapts
    /// (`tensor_ranks`), so nothing would be adapted.
    #[error(
        "the `targets` patterns matched {matched}, but their tensor ranks {ranks:?} are not in \
         tensor_ranks {allowed:?}; nothing would be adapted (conv kernels have rank 3, 4 or 5: \
         use lora_conv::conv_config or LoraConfig::with_tensor_ranks)"
    )]
    ExcludedByTensorRank {
        /// A few of the matched parameter paths, with their shapes.
        matched: String,
        /// The tensor ranks of the matched parameters.
        ranks: Vec<usize>,
        /// `tensor_ranks` of the config.
        allowed: Vec<usize>,
    },
    /// Reading or parsing an external file failed.
    #[error("{path}: {reason}")]
    Io {
        /// File path.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Shorthand for results in the LoRA crates.
pub type Result<T> = core::result::Result<T, LoraError>;
