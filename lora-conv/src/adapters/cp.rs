//! CP conv LoRA: the canonical polyadic decomposition of the kernel (Lebedev et al. 2014,
//! arXiv 1412.6553).

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::init::{input_factor, uniform_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, FactorInit, Result};

use crate::adapters::{check_kernel, kernel_parts};
use crate::functional::conv::{conv_nd, pointwise};
use crate::functional::{kernel_rank_limit, recompose};
use crate::variant::ConvVariant;

/// `ΔK[t, s, i_1..i_d] = Σ_r U[t, r] · V[s, r] · Π_j F_j[i_j, r]`: `r` rank-one terms, one
/// factor per mode of the kernel.
///
/// Bypass form: a 1x1 conv s/g -> r (V), then one depthwise conv per spatial axis (F_j, with
/// the base's stride, padding and dilation on that axis), then a 1x1 conv r -> t (U).
///
/// # Init
/// `U` is zero. `V` is Kaiming-uniform (bound `1/sqrt(s/g)`) and each `F_j` is uniform with
/// bound `sqrt(3/k_j)`, i.e. unit variance per kernel row. Then each rank-one input filter
/// `V[:, r] ⊗ F_1[:, r] ⊗ .. ⊗ F_d[:, r]` has the same per-element variance, `1/(3·(s/g)·K)`, as
/// HF's Kaiming-uniform down kernel, so once `U` is trained, `ΔK` has the scale HF's has at the
/// same rank and alpha. (With Gaussian init: `V ~ N(0, 1/r²)` and `F_j ~ N(0, 1/k_j)`.)
///
/// # Shapes
/// - `up` (U): `[t, r]`
/// - `down` (V): `[s/g, r]`
/// - `spatial[j]` (F_j): `[k_j, r]`
/// - `delta_weight()`: `[t, s/g, k..]`
#[derive(Module, Debug)]
pub struct CpAdapter {
    /// Output-channel factor U `[t, r]`, zero at init.
    pub up: Param<Tensor<2>>,
    /// Input-channel factor V `[s/g, r]`.
    pub down: Param<Tensor<2>>,
    /// One factor F_j `[k_j, r]` per spatial axis.
    pub spatial: Vec<Param<Tensor<2>>>,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scale: f64,
    /// The adapted kernel's shape `[t, s/g, k..]`.
    #[module(skip)]
    pub kernel_shape: Vec<usize>,
}

impl CpAdapter {
    /// Build for a kernel of shape `[t, s/g, k..]`.
    ///
    /// A CP rank can exceed `min(t, s/g)`; the cap is the generic bound on tensor rank, the
    /// product of every mode size but the largest.
    ///
    /// # Errors
    /// Rank 0 or above that cap, non-finite alpha, or a shape that is no conv kernel.
    pub fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, _) = kernel_parts(path, shape)?;
        check_kernel(path, shape)?;
        spec.check(
            path,
            shape,
            kernel_rank_limit(ConvVariant::Cp, shape),
            "product of all modes but the largest",
        )?;
        let r = spec.rank;
        let spatial = shape[2..]
            .iter()
            .map(|&k| match spec.init {
                FactorInit::KaimingUniform => {
                    uniform_factor([k, r], (3.0 / k as f64).sqrt(), device)
                }
                FactorInit::Gaussian => {
                    let std = (1.0 / k as f64).sqrt();
                    Param::from_tensor(Tensor::random(
                        [k, r],
                        burn::tensor::Distribution::Normal(0.0, std),
                        device,
                    ))
                }
            })
            .collect();
        Ok(Self {
            up: zero_factor([t, r], device),
            down: input_factor([c, r], c, spec, device),
            spatial,
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
        let d = N - 2;
        let mut hidden = pointwise(x, self.down.val().transpose());
        for (axis, factor) in self.spatial.iter().enumerate() {
            let [k, r] = factor.lazy_shape().dims();
            // A depthwise kernel [r, 1, 1.., k, ..1] along this axis only.
            let mut shape = vec![r, 1];
            shape.extend((0..d).map(|j| if j == axis { k } else { 1 }));
            let w = factor.val().transpose().reshape::<N, _>(Shape::from(shape));
            let along = |v: &[usize], other| -> Vec<usize> {
                (0..d)
                    .map(|j| if j == axis { v[j] } else { other })
                    .collect()
            };
            let pad: Vec<(usize, usize)> = (0..d)
                .map(|j| if j == axis { padding[j] } else { (0, 0) })
                .collect();
            hidden = conv_nd(hidden, w, &along(stride, 1), &pad, &along(dilation, 1), r);
        }
        // Scaling the small up factor, not the branch output, saves a full-size pass.
        pointwise(hidden, self.up.val().mul_scalar(self.scale))
    }
}

impl Adapter for CpAdapter {
    fn rank(&self) -> usize {
        self.up.lazy_shape()[1]
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        let spatial: Vec<Tensor<2>> = self.spatial.iter().map(Param::val).collect();
        recompose::cp(self.up.val(), self.down.val(), &spatial, self.scale)
            .reshape(Shape::from(self.kernel_shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        self.spatial
            .iter()
            .chain([&self.up, &self.down])
            .map(|p| p.lazy_shape().num_elements())
            .sum()
    }
}
