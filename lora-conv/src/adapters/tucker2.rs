//! Tucker-2 conv LoRA (LyCORIS `use_tucker`; the design document calls it "CP").

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::init::{input_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, Result};

use crate::adapters::{check_kernel, kernel_parts};
use crate::functional::conv::{conv_nd, pointwise};
use crate::functional::{kernel_rank_limit, recompose};
use crate::variant::ConvVariant;

/// `ΔK[t, s, k..] = Σ_p Σ_q up[t, p] · mid[p, q, k..] · down[q, s]`: a 1x1 down conv s/g -> r,
/// a kxk mid conv r -> r with the base's stride, padding and dilation, and a 1x1 up conv
/// r -> t. A Tucker decomposition of the kernel along its two channel modes (the spatial modes
/// stay whole in `mid`).
///
/// # Shapes
/// - `down`: `[r, s/g]`
/// - `mid`: `[r, r·K]` (the kernel `[r, r, k..]`, flattened)
/// - `up`: `[t, r]`
/// - `delta_weight()`: `[t, s/g, k..]`
#[derive(Module, Debug)]
pub struct Tucker2Adapter {
    /// 1x1 down conv `[r, s/g]`.
    pub down: Param<Tensor<2>>,
    /// Core kxk conv `[r, r·K]`.
    pub mid: Param<Tensor<2>>,
    /// 1x1 up conv `[t, r]`, zero at init.
    pub up: Param<Tensor<2>>,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scale: f64,
    /// The adapted kernel's shape `[t, s/g, k..]`.
    #[module(skip)]
    pub kernel_shape: Vec<usize>,
}

impl Tucker2Adapter {
    /// Build for a kernel of shape `[t, s/g, k..]`.
    ///
    /// `down` and `mid` are Kaiming-uniform with their own fan-ins (`s/g` and `r·K`), `up` is
    /// zero, as in LyCORIS.
    ///
    /// # Errors
    /// Rank 0 or above `min(t, s/g)`, non-finite alpha, or a shape that is no conv kernel.
    pub fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, k) = kernel_parts(path, shape)?;
        let limit = kernel_rank_limit(ConvVariant::Tucker2, shape);
        check_kernel(path, shape)?;
        spec.check(path, shape, limit, "min(out, in/groups)")?;
        let r = spec.rank;
        Ok(Self {
            down: input_factor([r, c], c, spec, device),
            mid: input_factor([r, r * k], r * k, spec, device),
            up: zero_factor([t, r], device),
            scale: spec.scale(),
            kernel_shape: shape.to_vec(),
        })
    }

    /// The adapter branch of the bypass form (see [`crate::LoraConv`]).
    pub fn branch<const N: usize>(
        &self,
        x: Tensor<N>,
        stride: &[usize],
        padding: &[(usize, usize)],
        dilation: &[usize],
    ) -> Tensor<N> {
        let [r, _] = self.down.lazy_shape().dims();
        let mut shape = vec![r, r];
        shape.extend_from_slice(&self.kernel_shape[2..]);
        let mid = self.mid.val().reshape::<N, _>(Shape::from(shape));
        // Zero padding commutes with the bias-free 1x1 down conv, so the mid conv pads.
        let hidden = pointwise(x, self.down.val());
        let hidden = conv_nd(hidden, mid, stride, padding, dilation, 1);
        // Scaling the small up factor, not the branch output, saves a full-size pass.
        pointwise(hidden, self.up.val().mul_scalar(self.scale))
    }
}

impl Adapter for Tucker2Adapter {
    fn rank(&self) -> usize {
        self.up.lazy_shape()[1]
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        recompose::tucker2(self.down.val(), self.mid.val(), self.up.val(), self.scale)
            .reshape(Shape::from(self.kernel_shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        [&self.down, &self.mid, &self.up]
            .iter()
            .map(|p| p.lazy_shape().num_elements())
            .sum()
    }
}
