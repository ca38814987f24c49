//! The experiments' error type.

use thiserror::Error;

use crate::data::DataError;

/// Anything that stops an experiment.
#[derive(Debug, Error)]
pub enum ExpError {
    /// Data missing or malformed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// An adapter could not be built or attached.
    #[error(transparent)]
    Lora(#[from] lora_core::LoraError),
    /// Inflation failed.
    #[error(transparent)]
    Inflate(#[from] lora_3d::InflateError),
    /// A pretrained backbone could not be read.
    #[error(transparent)]
    Backbone(#[from] lora_backbones::BackboneError),
    /// Writing results failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being written.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Bad input: a flag, a data file or an output dir that cannot work, found before training.
    #[error("{0}")]
    Input(String),
    /// Another process is writing to the output dir (it holds the dir's lock).
    #[error(
        "{dir} is in use: another process ({holder}) is writing to it and holds its lock file \
         {dir}/.lock; two writers would interleave its runs.jsonl. Wait for that run to end, or \
         give this one another --out",
        dir = dir.display()
    )]
    Busy {
        /// The output dir.
        dir: std::path::PathBuf,
        /// What the lock file says about its holder (`pid N`).
        holder: String,
    },
    /// A checkpoint could not be read or written.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// `Result` with [`ExpError`].
pub type Result<T> = std::result::Result<T, ExpError>;

/// Attach a description to an I/O error.
pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ExpError {
    let what = what.into();
    move |source| ExpError::Io { what, source }
}
