//! TensorFlow.js weight files: a JSON manifest (`*-weights_manifest.json`) and the binary shards it
//! names, read into named `f32` arrays.
//!
//! The manifest is a list of groups; each group lists the shard files (`paths`), which are
//! concatenated in order, and the weights stored in them, back to back in manifest order. A
//! weight is raw little-endian `float32`, or quantized: `uint8`/`uint16` codes `q` with a
//! `scale` and a `min`, and the value `min + scale * q`. The value is computed in `f64` and
//! rounded once to `f32`, which is what TensorFlow.js's `decodeWeights` does (JavaScript numbers
//! are doubles; the result is stored in a `Float32Array`), so the values are bit-identical to the
//! ones TensorFlow.js runs with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{BackboneError, Result};

/// One weight, dequantized: its shape (TensorFlow's layout, e.g. HWIO for conv filters) and its
/// values in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct TfjsTensor {
    /// The shape as the manifest gives it.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values, row-major.
    pub values: Vec<f32>,
}

/// Every weight of a manifest, by name, and where they came from.
#[derive(Debug, Clone)]
pub struct TfjsWeights {
    /// The manifest file.
    pub manifest: PathBuf,
    /// The weights by name.
    pub tensors: BTreeMap<String, TfjsTensor>,
}

#[derive(Debug, Deserialize)]
struct Group {
    paths: Vec<String>,
    weights: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(Debug, Deserialize)]
struct Quantization {
    dtype: String,
    scale: Option<f64>,
    min: Option<f64>,
}

/// How one entry is stored: bytes per value and how a value is decoded.
enum Storage {
    F32,
    Affine { bytes: usize, scale: f64, min: f64 },
}

impl Storage {
    fn of(entry: &Entry, manifest: &Path) -> Result<Self> {
        let bad = |reason: String| BackboneError::Weight {
            path: manifest.to_path_buf(),
            name: entry.name.clone(),
            reason,
        };
        if entry.dtype != "float32" {
            return Err(bad(format!(
                "dtype {:?}: only float32 weights are read",
                entry.dtype
            )));
        }
        let Some(q) = &entry.quantization else {
            return Ok(Self::F32);
        };
        let bytes = match q.dtype.as_str() {
            "uint8" => 1,
            "uint16" => 2,
            other => {
                return Err(bad(format!(
                    "quantization dtype {other:?}: only uint8 and uint16 are read"
                )));
            }
        };
        match (q.scale, q.min) {
            (Some(scale), Some(min)) if scale.is_finite() && min.is_finite() => {
                Ok(Self::Affine { bytes, scale, min })
            }
            (scale, min) => Err(bad(format!(
                "{} quantization needs a finite scale and min, got scale {scale:?}, min {min:?}",
                q.dtype
            ))),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::F32 => 4,
            Self::Affine { bytes, .. } => *bytes,
        }
    }

    fn decode(&self, raw: &[u8]) -> Vec<f32> {
        match *self {
            Self::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Self::Affine {
                bytes: 1,
                scale,
                min,
            } => raw
                .iter()
                .map(|&q| (min + scale * f64::from(q)) as f32)
                .collect(),
            Self::Affine { scale, min, .. } => raw
                .chunks_exact(2)
                .map(|b| (min + scale * f64::from(u16::from_le_bytes([b[0], b[1]]))) as f32)
                .collect(),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| BackboneError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl TfjsWeights {
    /// Read a manifest and the shard files it names (relative to the manifest's folder).
    ///
    /// # Errors
    /// [`BackboneError::Io`] when a file cannot be read, [`BackboneError::Manifest`] when the
    /// manifest is not one (not JSON of the expected shape, a weight named twice, a shape whose
    /// element count overflows), [`BackboneError::Weight`] for a dtype or quantization this reader
    /// does not decode, and [`BackboneError::Size`] when a group's shards hold more or fewer bytes
    /// than its weights need.
    pub fn read(manifest: &Path) -> Result<Self> {
        let text = read(manifest)?;
        let groups: Vec<Group> =
            serde_json::from_slice(&text).map_err(|e| BackboneError::Manifest {
                path: manifest.to_path_buf(),
                reason: e.to_string(),
            })?;
        let dir = manifest.parent().unwrap_or(Path::new("."));
        let mut tensors = BTreeMap::new();
        for group in &groups {
            let Some(first) = group.paths.first() else {
                return Err(BackboneError::Manifest {
                    path: manifest.to_path_buf(),
                    reason: "a weight group names no weight file (`paths` is empty)".into(),
                });
            };
            let mut bytes = Vec::new();
            for p in &group.paths {
                bytes.extend(read(&dir.join(p))?);
            }
            let mut layout = Vec::with_capacity(group.weights.len());
            let mut expected = 0usize;
            for entry in &group.weights {
                let storage = Storage::of(entry, manifest)?;
                let len = entry
                    .shape
                    .iter()
                    .try_fold(1usize, |n, &d| n.checked_mul(d))
                    .and_then(|n| n.checked_mul(storage.bytes()))
                    .ok_or_else(|| BackboneError::Manifest {
                        path: manifest.to_path_buf(),
                        reason: format!(
                            "weight {}: shape {:?} is too large",
                            entry.name, entry.shape
                        ),
                    })?;
                layout.push((entry, storage, expected..expected + len));
                expected += len;
            }
            if bytes.len() != expected {
                return Err(BackboneError::Size {
                    path: dir.join(first),
                    expected,
                    actual: bytes.len(),
                });
            }
            for (entry, storage, range) in layout {
                let tensor = TfjsTensor {
                    shape: entry.shape.clone(),
                    values: storage.decode(&bytes[range]),
                };
                if tensors.insert(entry.name.clone(), tensor).is_some() {
                    return Err(BackboneError::Manifest {
                        path: manifest.to_path_buf(),
                        reason: format!("weight {} is listed twice", entry.name),
                    });
                }
            }
        }
        Ok(Self {
            manifest: manifest.to_path_buf(),
            tensors,
        })
    }

    /// The weight `name`, checked to have `shape`.
    ///
    /// # Errors
    /// [`BackboneError::Weight`] when it is missing or its shape differs.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&TfjsTensor> {
        let bad = |reason: String| BackboneError::Weight {
            path: self.manifest.clone(),
            name: name.to_string(),
            reason,
        };
        let tensor = self
            .tensors
            .get(name)
            .ok_or_else(|| bad("missing from the manifest".into()))?;
        if tensor.shape != shape {
            return Err(bad(format!("shape {:?}, expected {shape:?}", tensor.shape)));
        }
        Ok(tensor)
    }
}
