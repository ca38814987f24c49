//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong reading a backbone's weights. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BackboneError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The manifest is not a TensorFlow.js weights manifest this reader understands.
    #[error("{path}: not a TensorFlow.js weights manifest this reader can use: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong, with the values.
        reason: String,
    },
    /// The weight files hold a different number of bytes than the manifest describes.
    #[error(
        "{path}: holds {actual} bytes, but the manifest's weights need {expected} (a truncated or mismatched download? re-run ./scripts/fetch-data.sh)"
    )]
    Size {
        /// The weight file (the group's first when a group spans several).
        path: PathBuf,
        /// Bytes the manifest's shapes and dtypes add up to.
        expected: usize,
        /// Bytes on disk.
        actual: usize,
    },
    /// A weight the network needs is missing, or has the wrong shape.
    #[error("{path}: weight {name}: {reason}")]
    Weight {
        /// The manifest.
        path: PathBuf,
        /// The weight's name in the manifest.
        name: String,
        /// What is wrong, with the values.
        reason: String,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, BackboneError>;
