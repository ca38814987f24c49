//! What can go wrong with an adapter file, each case naming the file, the key and the values.

use thiserror::Error;

/// Why an adapter file or state dict was refused. Nothing is written when one is returned.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum FileError {
    /// The file cannot be read, written or parsed (truncated, corrupt, missing).
    #[error("{file}: {reason}")]
    Io {
        /// The file.
        file: String,
        /// What the operating system or the parser said.
        reason: String,
    },
    /// A key the format needs is absent.
    #[error("{file}: missing key `{key}` ({why})")]
    MissingKey {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What needed it.
        why: String,
    },
    /// A key nothing in the format or the model accounts for.
    #[error("{file}: unexpected key `{key}` ({why})")]
    UnexpectedKey {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// Why it cannot be used.
        why: String,
    },
    /// A tensor has another shape than the one its role needs.
    #[error("{file}: `{key}` has shape {actual:?}, expected {expected}")]
    Shape {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// What was expected, in words or as a shape.
        expected: String,
        /// The shape found.
        actual: Vec<usize>,
    },
    /// A tensor's dtype cannot be used for its role.
    #[error("{file}: `{key}` has dtype {actual}, expected {expected}")]
    Dtype {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// The dtypes accepted.
        expected: String,
        /// The dtype found.
        actual: String,
    },
    /// A tensor holds a NaN or an infinity.
    #[error("{file}: `{key}` holds a non-finite value at flat index {index}")]
    NonFinite {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// The first offending element.
        index: usize,
    },
    /// Keys of an adapter algorithm this crate does not implement.
    #[error("{file}: `{key}` belongs to the {algorithm} algorithm, which is not supported: {why}")]
    UnsupportedAlgorithm {
        /// The file.
        file: String,
        /// The first key of that algorithm.
        key: String,
        /// The algorithm's name.
        algorithm: String,
        /// What is missing, and what can be done instead.
        why: String,
    },
    /// A configuration field (PEFT's `adapter_config.json`, native metadata) is missing,
    /// malformed, or changes the maths in a way this crate does not implement.
    #[error("{file}: field `{field}` = {value}: {why}")]
    Config {
        /// The file.
        file: String,
        /// The field.
        field: String,
        /// Its value as written (JSON).
        value: String,
        /// Why it is refused.
        why: String,
    },
    /// The tensors are well formed, but what they compute is not a change of the base weight
    /// this crate can hold (e.g. a PEFT LoRA on a grouped conv whose `lora_A` mixes groups).
    #[error("{file}: `{key}` is not a weight update: {why}")]
    NotAWeightUpdate {
        /// The file.
        file: String,
        /// The key.
        key: String,
        /// Why not, with the values that show it.
        why: String,
    },
    /// The base state dict does not fit the adapter (most likely another model than the one
    /// the adapter was made for): the base's entry is missing or has another shape.
    #[error(
        "{base}: the base does not match the adapter: its `{key}` {found}, but {adapter} \
         expects {expected}; check that the base (--base) is the model the adapter was made for"
    )]
    BaseMismatch {
        /// The base file.
        base: String,
        /// The base key.
        key: String,
        /// What the base holds there (`has shape [..]`, `is missing`).
        found: String,
        /// The adapter's key (prefix) that needs the entry, and its file: `` `key` in file ``.
        adapter: String,
        /// What the adapter needs (`shape [..]`).
        expected: String,
    },
    /// The target format cannot express this layer's adapter.
    #[error("layer `{layer}` ({algorithm}) cannot be written as {format}: {why}")]
    Inexpressible {
        /// The module path.
        layer: String,
        /// Its algorithm.
        algorithm: String,
        /// The target format.
        format: String,
        /// Why not.
        why: String,
    },
    /// The merged value of a weight would hold a NaN or an infinity.
    #[error("merging `{key}` would give a non-finite value at flat index {index}")]
    NonFiniteMerge {
        /// The base key.
        key: String,
        /// The first offending element.
        index: usize,
    },
    /// Attaching the file's adapters to a model failed.
    #[error("attaching to the model: {0}")]
    Attach(#[from] lora_core::LoraError),
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, FileError>;

/// A [`FileError::Io`] for `file` (any path-like) with `reason` (any error).
pub(crate) fn io(file: impl std::fmt::Display, reason: impl std::fmt::Display) -> FileError {
    FileError::Io {
        file: file.to_string(),
        reason: reason.to_string(),
    }
}
