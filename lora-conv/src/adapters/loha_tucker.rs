//! LoHa with Tucker cores (LyCORIS `use_tucker` on a kernel with more than one tap): each of
//! the two Hadamard factors is a Tucker-2 product whose core keeps the spatial axes.

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::init::{normal_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, Result};

use crate::adapter::{ConvAdapter, Inflater};
use crate::adapters::{Tucker2Adapter, weight_parts};
use crate::functional::loha_tucker;
use crate::functional::shape::product;

/// `ΔW = scale · T(t1; w1_a, w1_b) ⊙ T(t2; w2_a, w2_b)` with
/// `T(t; a, b)[o, i, k..] = Σ_p Σ_q a[o, p] · t[p, q, k..] · b[q, i]`.
///
/// `2·(r·t + r·c + r²·K)` parameters: cheaper than plain LoHa's `2·r·(c·K + t)` on wide
/// kernels, as Tucker-2 is than LoCon. Conv kernels only; like LoHa, its bypass form is one conv
/// with the recomposed update.
///
/// # Init
/// As LyCORIS: `t1`, `t2` and `w1_a ~ N(0, 0.1²)`, `w1_b`, `w2_b ~ N(0, 1)`, and `w2_a = 0`.
///
/// # Shapes
/// - `w1_a`, `w2_a`: `[t, r]` (LyCORIS stores `hada_w{1,2}_a` as `[r, t]` in this form)
/// - `w1_b`, `w2_b`: `[r, c]`
/// - `t1`, `t2`: `[r, r·K]` (the cores `[r, r, k..]`, flattened; LyCORIS `hada_t{1,2}`)
/// - `delta_weight()`: `[t, c, k..]`
#[derive(Module, Debug)]
pub struct LoHaTuckerAdapter {
    /// First factor, output side `[t, r]`.
    pub w1_a: Param<Tensor<2>>,
    /// First factor, input side `[r, c]`.
    pub w1_b: Param<Tensor<2>>,
    /// First factor's core `[r, r·K]`.
    pub t1: Param<Tensor<2>>,
    /// Second factor, output side `[t, r]`, zero at init.
    pub w2_a: Param<Tensor<2>>,
    /// Second factor, input side `[r, c]`.
    pub w2_b: Param<Tensor<2>>,
    /// Second factor's core `[r, r·K]`.
    pub t2: Param<Tensor<2>>,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scale: f64,
    /// The adapted kernel's shape `[t, c, k..]`.
    #[module(skip)]
    pub shape: Vec<usize>,
}

impl ConvAdapter for LoHaTuckerAdapter {
    const NAME: &'static str = "loha-tucker";
    const COUNT: &'static str = "2·(r·t + r·c + r²·K)";

    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, k) = weight_parts(path, shape, 1..=3)?;
        spec.check(path, shape, Self::rank_limit(shape), "min(out, in/groups)")?;
        let r = spec.rank;
        Ok(Self {
            w1_a: normal_factor([t, r], 0.1, device),
            w1_b: normal_factor([r, c], 1.0, device),
            t1: normal_factor([r, r * k], 0.1, device),
            w2_a: zero_factor([t, r], device),
            w2_b: normal_factor([r, c], 1.0, device),
            t2: normal_factor([r, r * k], 0.1, device),
            scale: spec.scale(),
            shape: shape.to_vec(),
        })
    }

    /// Two Tucker-2 factors.
    fn param_count(shape: &[usize], rank: usize) -> usize {
        loha_tucker::param_count(shape, rank)
    }

    fn rank_limit(shape: &[usize]) -> usize {
        loha_tucker::rank_limit(shape)
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The first core is inflated as a kernel, the second repeated along depth, so that
    /// `ΔW3[.., d, ..] = profile[d] · ΔW2` (as for plain LoHa).
    fn inflate(self, _path: &str, to3d: &Inflater) -> Result<Self> {
        let [t, c, kh, kw] = self.shape[..] else {
            return Ok(self);
        };
        let r = self.w1_a.lazy_shape()[1];
        Ok(Self {
            t1: to3d.factor(self.t1, [r, r, kh, kw]),
            t2: to3d.repeat(self.t2, [r, r, kh, kw]),
            shape: vec![t, c, to3d.depth(), kh, kw],
            ..self
        })
    }

    /// Two Tucker-2 recompositions and their element-wise product.
    fn recompose_flops(shape: &[usize], rank: usize) -> f64 {
        let [_, _, ..] = shape else { return 0.0 };
        2.0 * Tucker2Adapter::recompose_flops(shape, rank) + product(shape) as f64
    }
}

impl Adapter for LoHaTuckerAdapter {
    fn rank(&self) -> usize {
        self.w1_a.lazy_shape()[1]
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        loha_tucker::delta(
            [self.w1_a.val(), self.w1_b.val(), self.t1.val()],
            [self.w2_a.val(), self.w2_b.val(), self.t2.val()],
            self.scale,
        )
        .reshape(Shape::from(self.shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        [
            &self.w1_a, &self.w1_b, &self.t1, &self.w2_a, &self.w2_b, &self.t2,
        ]
        .iter()
        .map(|p| p.lazy_shape().num_elements())
        .sum()
    }
}
