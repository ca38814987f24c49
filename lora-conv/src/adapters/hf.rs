//! HF conv LoRA (PEFT, diffusers, kohya, LyCORIS LoCon): a kxk down conv then a 1x1 up conv.

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::init::{input_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, Result};

use crate::adapters::{check_kernel, kernel_parts};
use crate::functional::conv::{conv_nd, pointwise};
use crate::functional::{kernel_rank_limit, recompose};
use crate::variant::ConvVariant;

/// `ΔK[t, s, k..] = Σ_r up[t, r] · down[r, s, k..]`.
///
/// The down factor is a conv with the base's kernel size, stride, padding and dilation
/// (s/g -> r), the up factor a 1x1 conv (r -> t). With groups `g > 1` the update is a full
/// `[t, s/g, k..]` kernel applied with the base's groups (LyCORIS semantics): down sees the
/// `s/g` input channels of a group, and `up` mixes ranks freely.
///
/// # Shapes
/// - `down`: `[r, (s/g)·K]` (the kernel `[r, s/g, k..]`, flattened)
/// - `up`: `[t, r]`
/// - `delta_weight()`: `[t, s/g, k..]`
#[derive(Module, Debug)]
pub struct HfAdapter {
    /// Down conv kernel `[r, (s/g)·K]`.
    pub down: Param<Tensor<2>>,
    /// Up 1x1 conv `[t, r]`, zero at init.
    pub up: Param<Tensor<2>>,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scale: f64,
    /// The adapted kernel's shape `[t, s/g, k..]`.
    #[module(skip)]
    pub kernel_shape: Vec<usize>,
}

impl HfAdapter {
    /// Build for a kernel of shape `[t, s/g, k..]`.
    ///
    /// # Errors
    /// Rank 0 or above `min(t, (s/g)·K)`, non-finite alpha, or a shape that is no conv kernel;
    /// each error names `path`.
    pub fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, k) = kernel_parts(path, shape)?;
        let limit = kernel_rank_limit(ConvVariant::Hf, shape);
        check_kernel(path, shape)?;
        spec.check(path, shape, limit, "min(out, in/groups·K)")?;
        Ok(Self {
            down: input_factor([spec.rank, c * k], c * k, spec, device),
            up: zero_factor([t, spec.rank], device),
            scale: spec.scale(),
            kernel_shape: shape.to_vec(),
        })
    }

    /// The adapter branch of the bypass form on an input `[B, s, ..]`, with the base conv's
    /// stride, resolved padding and dilation (groups = 1).
    pub fn branch<const N: usize>(
        &self,
        x: Tensor<N>,
        stride: &[usize],
        padding: &[(usize, usize)],
        dilation: &[usize],
    ) -> Tensor<N> {
        let [r, _] = self.down.lazy_shape().dims();
        let mut shape = vec![r];
        shape.extend_from_slice(&self.kernel_shape[1..]);
        let down = self.down.val().reshape::<N, _>(Shape::from(shape));
        let hidden = conv_nd(x, down, stride, padding, dilation, 1);
        // Scaling the small up factor, not the branch output, saves a full-size pass.
        pointwise(hidden, self.up.val().mul_scalar(self.scale))
    }
}

impl Adapter for HfAdapter {
    fn rank(&self) -> usize {
        self.up.lazy_shape()[1]
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        recompose::hf(self.down.val(), self.up.val(), self.scale)
            .reshape(Shape::from(self.kernel_shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        self.down.lazy_shape().num_elements() + self.up.lazy_shape().num_elements()
    }
}
