//! An adapter file held in memory, whatever format it came from: per layer, the algorithm, its
//! factors (PyTorch layout), rank, alpha, scale and an optional DoRA magnitude; plus whole
//! tensors that replace base entries (PEFT's `modules_to_save`, the native format's extras).

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use lora_conv::functional::dora;

use crate::algorithm::{Algorithm, Delta, Factors, Site, cpu};
use crate::error::{FileError, Result};
use crate::state_dict::Stored;

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A PEFT adapter directory (`adapter_config.json` + `adapter_model.safetensors`).
    Peft,
    /// A LyCORIS or kohya `.safetensors` file.
    Lycoris,
    /// This workspace's own adapter file (safetensors with JSON metadata).
    Native,
}

impl Format {
    /// `peft`, `lycoris` or `native`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Peft => "peft",
            Format::Lycoris => "lycoris",
            Format::Native => "native",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    /// Case-insensitive: `peft`, `PEFT`, `LyCORIS`, `kohya`, `native`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "peft" => Ok(Format::Peft),
            "lycoris" | "kohya" => Ok(Format::Lycoris),
            "native" => Ok(Format::Native),
            _ => Err(format!(
                "unknown format `{s}`; expected peft, lycoris (or kohya) or native, in any case"
            )),
        }
    }
}

/// Which axis a DoRA magnitude is per, and whose conventions its merge follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MagnitudeLayout {
    /// PEFT `lora_magnitude_vector`: per output channel, `[out]` (linear) or `[1, out, 1..]`
    /// (conv); the norm has no epsilon.
    PeftOut,
    /// LyCORIS `dora_scale` with `wd_on_out`: per output channel, `[out, 1..]`; the norm gets
    /// f32's epsilon.
    LycorisOut,
    /// LyCORIS `dora_scale` without `wd_on_out`: per input channel, `[1, in, 1..]`.
    LycorisIn,
}

/// A DoRA magnitude: `W' = m · V / ‖V‖` with `V = W + scale·ΔW`, the norm per channel of the
/// layout's axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Magnitude {
    /// Axis and conventions.
    pub layout: MagnitudeLayout,
    /// The magnitudes, one per channel.
    pub values: Vec<f32>,
    /// Shape as the file stores it.
    pub shape: Vec<usize>,
}

/// One adapted layer.
#[derive(Clone)]
pub struct LayerAdapter {
    /// PyTorch module path (`block.0`); the adapted weight is `<module>.weight`.
    pub module: String,
    /// The layer's key prefix in the file it came from (`lycoris_block_0`,
    /// `base_model.model.block.0`).
    pub key_prefix: String,
    /// The algorithm.
    pub algorithm: &'static dyn Algorithm,
    /// Its factors, by the algorithm's names.
    pub factors: Factors,
    /// Rank.
    pub rank: usize,
    /// Alpha as the file gives it (`None`: absent, read as `alpha = rank`).
    pub alpha: Option<f64>,
    /// The scale multiplying `ΔW`.
    pub scale: f64,
    /// DoRA magnitude, if any.
    pub magnitude: Option<Magnitude>,
    /// The adapted weight's shape in PyTorch layout, when known (native files, a model, or a
    /// resolved base); a merge checks it.
    pub base_shape: Option<Vec<usize>>,
    /// The adapted conv's `groups` (1: ungrouped, a linear layer, or not known). A state dict
    /// does not record it, so it comes from a PEFT file's grouped layout, a native file, or the
    /// caller (`adapter convert --groups`); the PEFT writer needs it for a grouped conv.
    pub groups: usize,
}

impl std::fmt::Debug for LayerAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerAdapter")
            .field("module", &self.module)
            .field("algorithm", &self.algorithm.name())
            .field("rank", &self.rank)
            .field("alpha", &self.alpha)
            .field("scale", &self.scale)
            .field("groups", &self.groups)
            .field("dora", &self.magnitude.as_ref().map(|m| m.layout))
            .finish()
    }
}

/// A whole adapter file.
#[derive(Debug, Clone)]
pub struct AdapterFile {
    /// Where it came from, for errors.
    pub source: String,
    /// Its format.
    pub format: Format,
    /// The adapted layers, in key order.
    pub layers: Vec<LayerAdapter>,
    /// Base entries replaced whole (PEFT `modules_to_save`, native extras), by base key.
    pub replacements: BTreeMap<String, Stored>,
    /// Base entries changed by a whole-tensor difference (LyCORIS's `full` algorithm, `.diff`
    /// and `.diff_b`), by base key (a LyCORIS key stem plus `.weight`/`.bias` until resolved):
    /// merged as `base + multiplier·diff`.
    pub diffs: BTreeMap<String, Stored>,
    /// PEFT's `use_rslora` (scale `alpha/sqrt(r)`), kept for export.
    pub rslora: bool,
}

impl LayerAdapter {
    /// The raw update of this layer.
    ///
    /// # Errors
    /// As [`Algorithm::delta`], naming `file`.
    pub fn delta(&self, file: &str) -> Result<Delta> {
        let site = Site {
            base_shape: self.base_shape.as_deref(),
            rank: Some(self.rank),
            ..Site::new(file, &self.key_prefix)
        };
        self.algorithm.delta(site, &self.factors)
    }

    /// Trainable scalars (factors and magnitude).
    pub fn param_count(&self) -> usize {
        self.algorithm.param_count(&self.factors)
            + self.magnitude.as_ref().map_or(0, |m| m.values.len())
    }

    /// The merged weight `W'` for the base weight `base` of shape `base_shape`, with the
    /// adapter's strength multiplied by `multiplier`.
    ///
    /// - additive: `W + multiplier·scale·ΔW`;
    /// - DoRA: `V = W + scale·ΔW`, `W_dora = m · V / ‖V‖`; LyCORIS's layouts follow LyCORIS
    ///   (`V · (multiplier·(m/‖V‖ − 1) + 1)`), PEFT's interpolate, `W + multiplier·(W_dora − W)`.
    ///   Both equal `W_dora` at multiplier 1.
    ///
    /// # Errors
    /// [`FileError::BaseMismatch`] naming `base_key` in `base_file` and both shapes when `ΔW`
    /// does not have the base's shape; [`FileError::Shape`] when the magnitude does not have one
    /// value per channel.
    pub fn merged(
        &self,
        file: &str,
        base_file: &str,
        base_key: &str,
        base_shape: &[usize],
        base: &[f32],
        multiplier: f64,
    ) -> Result<Vec<f32>> {
        let delta = self.delta(file)?;
        let rows = base_shape.first().copied().unwrap_or(1);
        let cols: usize = base_shape.iter().skip(1).product();
        let fits = delta.matrix.dims() == [rows, cols]
            && delta.shape.as_ref().is_none_or(|s| s == base_shape);
        if !fits {
            return Err(FileError::BaseMismatch {
                base: base_file.to_string(),
                key: base_key.to_string(),
                found: format!("has shape {base_shape:?}"),
                adapter: format!("`{}` in {file}", self.key_prefix),
                expected: delta.shape.as_ref().map_or(
                    format!("{:?} elements once flattened", delta.matrix.dims()),
                    |s| format!("shape {s:?}"),
                ),
            });
        }
        let w = Tensor::<2>::from_data(TensorData::new(base.to_vec(), [rows, cols]), &cpu());
        let update = delta.matrix.mul_scalar(self.scale);
        let merged = match &self.magnitude {
            None => w + update.mul_scalar(multiplier),
            Some(m) => self.dora(file, m, w, update, base_shape, multiplier)?,
        };
        merged
            .into_data()
            .try_to_vec::<f32>()
            .map_err(|e| crate::error::io(file, format!("reading the merged weight: {e:?}")))
    }

    fn dora(
        &self,
        file: &str,
        m: &Magnitude,
        w: Tensor<2>,
        update: Tensor<2>,
        base_shape: &[usize],
        multiplier: f64,
    ) -> Result<Tensor<2>> {
        let [rows, cols] = w.dims();
        let v = w.clone() + update;
        let channels = match m.layout {
            MagnitudeLayout::LycorisIn => base_shape.get(1).copied().unwrap_or(1),
            _ => rows,
        };
        if m.values.len() != channels {
            return Err(FileError::Shape {
                file: file.to_string(),
                key: format!("{}.magnitude", self.key_prefix),
                expected: format!("{channels} values, one per channel"),
                actual: m.shape.clone(),
            });
        }
        let mag = Tensor::<1>::from_data(TensorData::new(m.values.clone(), [channels]), &cpu());
        let eps = if m.layout == MagnitudeLayout::PeftOut {
            0.0
        } else {
            f64::from(f32::EPSILON)
        };
        // The per-channel factor m / ‖V‖ (the module's own, `functional::dora::channel_scale`),
        // broadcast back to [rows, cols].
        let factor = match m.layout {
            MagnitudeLayout::PeftOut | MagnitudeLayout::LycorisOut => {
                dora::channel_scale(mag, dora::row_norms(&v), eps)
                    .reshape([rows, 1])
                    .expand([rows, cols])
            }
            MagnitudeLayout::LycorisIn => {
                let k = cols / channels.max(1);
                let norms = v
                    .clone()
                    .reshape([rows, channels, k])
                    .powi_scalar(2)
                    .sum_dim(0)
                    .sum_dim(2)
                    .sqrt()
                    .reshape([channels]);
                dora::channel_scale(mag, norms, eps)
                    .reshape([1, channels, 1])
                    .expand([rows, channels, k])
                    .reshape([rows, cols])
            }
        };
        Ok(match m.layout {
            MagnitudeLayout::PeftOut => {
                let full = v * factor;
                w.clone() + (full - w).mul_scalar(multiplier)
            }
            _ => {
                let f = factor
                    .sub_scalar(1.0)
                    .mul_scalar(multiplier)
                    .add_scalar(1.0);
                v * f
            }
        })
    }
}
