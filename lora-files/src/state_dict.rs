//! A safetensors state dict held in memory with every entry's dtype, shape and bytes, so that
//! what is not touched (integer buffers, other dtypes) is written back exactly as it was read.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors, View};

use crate::atomic::write_atomic;
use crate::error::{FileError, Result, io};

/// One tensor as stored: dtype, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (PyTorch layout as the file has it).
    pub shape: Vec<usize>,
    /// Raw little-endian bytes, `shape.product() * dtype.size()` of them.
    pub bytes: Vec<u8>,
}

impl Stored {
    /// An f32 tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        Self::from_f32_as(shape, values, Dtype::F32)
    }

    /// f32 values rounded once into `dtype` (F32, F16, BF16 or F64; any other dtype keeps f32).
    pub fn from_f32_as(shape: Vec<usize>, values: &[f32], dtype: Dtype) -> Self {
        let (dtype, bytes): (Dtype, Vec<u8>) = match dtype {
            Dtype::F16 => (
                Dtype::F16,
                values
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            Dtype::BF16 => (
                Dtype::BF16,
                values
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
            Dtype::F64 => (
                Dtype::F64,
                values
                    .iter()
                    .flat_map(|v| f64::from(*v).to_le_bytes())
                    .collect(),
            ),
            _ => (
                Dtype::F32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
        };
        Self {
            dtype,
            shape,
            bytes,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the dtype is a float type this crate computes with.
    pub fn is_float(&self) -> bool {
        matches!(
            self.dtype,
            Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64
        )
    }

    /// The values widened to f32, or `None` for a non-float dtype.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        let b = &self.bytes;
        Some(match self.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F64 => b
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            _ => return None,
        })
    }
}

impl View for &Stored {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// A whole safetensors file: its tensors by key, and its string metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    /// The tensors, by key.
    pub tensors: BTreeMap<String, Stored>,
    /// The `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
}

impl StateDict {
    /// Parse safetensors bytes; `file` names the source in errors.
    ///
    /// # Errors
    /// [`FileError::Io`] naming `file` for a truncated or corrupt file.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        let parsed = SafeTensors::deserialize(bytes).map_err(|e| io(file, e))?;
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| io(file, e))?;
        let mut tensors = BTreeMap::new();
        for (key, view) in parsed.tensors() {
            tensors.insert(
                key,
                Stored {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                },
            );
        }
        let metadata = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok(Self { tensors, metadata })
    }

    /// Read a `.safetensors` file.
    ///
    /// # Errors
    /// [`FileError::Io`] naming `path` when it cannot be read, or is truncated or corrupt.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| io(path.display(), e))?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    /// The safetensors bytes of this state dict.
    ///
    /// # Errors
    /// [`FileError::Io`] naming `file` if safetensors refuses to serialize (inconsistent sizes).
    pub fn to_bytes(&self, file: &str) -> Result<Vec<u8>> {
        let meta: Option<HashMap<String, String>> = if self.metadata.is_empty() {
            None
        } else {
            Some(self.metadata.clone().into_iter().collect())
        };
        safetensors::serialize(self.tensors.iter(), meta).map_err(|e| io(file, e))
    }

    /// Write atomically to `path`.
    ///
    /// # Errors
    /// [`FileError::Io`] naming `path`; an existing file is left as it was.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = self.to_bytes(&path.display().to_string())?;
        write_atomic(path, &bytes)
    }

    /// The float tensor at `key` as f32 values, checked finite.
    ///
    /// # Errors
    /// [`FileError::MissingKey`], [`FileError::Dtype`] for a non-float tensor,
    /// [`FileError::NonFinite`]; each names `file` and `key`.
    pub fn f32(&self, file: &str, key: &str, why: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let stored = self.tensors.get(key).ok_or_else(|| FileError::MissingKey {
            file: file.to_string(),
            key: key.to_string(),
            why: why.to_string(),
        })?;
        let values = stored.to_f32().ok_or_else(|| FileError::Dtype {
            file: file.to_string(),
            key: key.to_string(),
            expected: "F32, F16, BF16 or F64".to_string(),
            actual: format!("{:?}", stored.dtype),
        })?;
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(FileError::NonFinite {
                file: file.to_string(),
                key: key.to_string(),
                index,
            });
        }
        Ok((stored.shape.clone(), values))
    }
}
