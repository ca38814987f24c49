//! Linear LoRA, the adapter of a burn `Linear` weight.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use crate::Result;
use crate::adapter::{Adapter, AdapterSpec};
use crate::init::{input_factor, zero_factor};

/// The low-rank update of a `Linear` weight: `scale · down · up`.
///
/// burn's `Linear` stores its weight as `[d_in, d_out]`, the transpose of PyTorch's
/// `[out, in]`. So here `down` is PEFT's `lora_A.weight` transposed and `up` is `lora_B.weight`
/// transposed, and the update `down·up` has burn's `[d_in, d_out]` layout.
///
/// # Shapes
/// - `down`: `[d_in, r]`
/// - `up`: `[r, d_out]`
/// - `delta_weight()`: `[d_in, d_out]`
#[derive(Module, Debug)]
pub struct LinearAdapter {
    /// Input-side factor, `[d_in, r]`.
    pub down: Param<Tensor<2>>,
    /// Output-side factor, `[r, d_out]`, zero at init.
    pub up: Param<Tensor<2>>,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scale: f64,
}

impl LinearAdapter {
    /// Build an adapter for a `[d_in, d_out]` weight.
    ///
    /// # Errors
    /// [`LoraError::InvalidRank`](crate::LoraError::InvalidRank) if `rank` is 0 or above `min(d_in, d_out)`, and
    /// [`LoraError::InvalidAlpha`](crate::LoraError::InvalidAlpha) if alpha is not finite; both name `path`.
    pub fn new(
        path: &str,
        d_in: usize,
        d_out: usize,
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<Self> {
        spec.check(path, &[d_in, d_out], d_in.min(d_out), "min(d_in, d_out)")?;
        Ok(Self {
            down: input_factor([d_in, spec.rank], d_in, spec, device),
            up: zero_factor([spec.rank, d_out], device),
            scale: spec.scale(),
        })
    }

    /// From PEFT's factors in PyTorch layout: `lora_A.weight [r, d_in]`, `lora_B.weight
    /// [d_out, r]`. They are transposed into burn's layout.
    ///
    /// # Errors
    /// [`LoraError::InvalidRank`](crate::LoraError::InvalidRank) naming `path` for rank 0;
    /// [`LoraError::ShapeMismatch`](crate::LoraError::ShapeMismatch) naming `path` if the
    /// ranks differ.
    pub fn from_peft(path: &str, lora_a: Tensor<2>, lora_b: Tensor<2>, scale: f64) -> Result<Self> {
        let ([r, _], [d_out, r_b]) = (lora_a.dims(), lora_b.dims());
        if r == 0 {
            return Err(crate::LoraError::InvalidRank {
                path: path.to_string(),
                rank: 0,
                shape: lora_a.dims().to_vec(),
                reason: "the factors hold no component; a rank must be at least 1".to_string(),
            });
        }
        if r != r_b {
            return Err(crate::LoraError::ShapeMismatch {
                path: format!("{path}.lora_B"),
                expected: vec![d_out, r],
                actual: vec![d_out, r_b],
            });
        }
        Ok(Self {
            down: Param::from_tensor(lora_a.transpose()),
            up: Param::from_tensor(lora_b.transpose()),
            scale,
        })
    }

    /// The adapter branch of the bypass form: `scale · (x·down)·up`.
    ///
    /// # Shapes
    /// - input: `[..., d_in]`
    /// - output: `[..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let hidden = burn::tensor::module::linear(x, self.down.val(), None);
        burn::tensor::module::linear(hidden, self.up.val(), None).mul_scalar(self.scale)
    }
}

impl Adapter for LinearAdapter {
    fn rank(&self) -> usize {
        self.down.lazy_shape()[1]
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        let delta = self.down.val().matmul(self.up.val()).mul_scalar(self.scale);
        let shape = delta.shape();
        delta.reshape(shape)
    }

    fn trainable_params(&self) -> usize {
        self.down.lazy_shape().num_elements() + self.up.lazy_shape().num_elements()
    }
}
