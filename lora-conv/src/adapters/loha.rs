//! LoHa (LyCORIS; Hyeon-Woo et al. 2022, FedPara): the Hadamard product of two low-rank
//! updates, for linear weights and conv kernels.

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::init::{normal_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, Result};

use crate::adapter::{ConvAdapter, Inflater};
use crate::adapters::weight_parts;
use crate::functional::loha;

/// `ΔW = scale · (w1_a · w1_b) ⊙ (w2_a · w2_b)`, reshaped to `[t, c, k..]`.
///
/// Each product has rank `r`, so the update can reach rank `r²` at `2·r·(t + c·K)` parameters.
/// There is no cheaper bypass than one conv with the recomposed update (LyCORIS's own bypass
/// does that), so [`crate::LoraConv`] runs it that way.
///
/// # Init
/// As LyCORIS: `w1_a ~ N(0, 0.1²)`, `w1_b ~ N(0, 1)`, `w2_b ~ N(0, 1)`, and `w2_a = 0`, so the
/// update starts at zero.
///
/// # Shapes
/// - `w1_a`, `w2_a`: `[t, r]` (LyCORIS `hada_w1_a`, `hada_w2_a`)
/// - `w1_b`, `w2_b`: `[r, c·K]` (LyCORIS `hada_w1_b`, `hada_w2_b`)
/// - `delta_weight()`: `[t, c, k..]`
#[derive(Module, Debug)]
pub struct LoHaAdapter {
    /// First product, output side `[t, r]`.
    pub w1_a: Param<Tensor<2>>,
    /// First product, input side `[r, c·K]`.
    pub w1_b: Param<Tensor<2>>,
    /// Second product, output side `[t, r]`, zero at init.
    pub w2_a: Param<Tensor<2>>,
    /// Second product, input side `[r, c·K]`.
    pub w2_b: Param<Tensor<2>>,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scale: f64,
    /// The adapted weight's shape `[t, c, k..]`.
    #[module(skip)]
    pub shape: Vec<usize>,
}

impl ConvAdapter for LoHaAdapter {
    const NAME: &'static str = "loha";
    const ALIASES: &'static [&'static str] = &["hadamard"];
    const COUNT: &'static str = "2·r·(c·K + t)";
    const LINEAR: bool = true;

    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, k) = weight_parts(path, shape, 0..=3)?;
        spec.check(
            path,
            shape,
            Self::rank_limit(shape),
            "min(out, in/groups·K)",
        )?;
        let r = spec.rank;
        Ok(Self {
            w1_a: normal_factor([t, r], 0.1, device),
            w1_b: normal_factor([r, c * k], 1.0, device),
            w2_a: zero_factor([t, r], device),
            w2_b: normal_factor([r, c * k], 1.0, device),
            scale: spec.scale(),
            shape: shape.to_vec(),
        })
    }

    fn param_count(shape: &[usize], rank: usize) -> usize {
        loha::param_count(shape, rank)
    }

    fn rank_limit(shape: &[usize]) -> usize {
        loha::rank_limit(shape)
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The first product's input side is inflated as a kernel, the second's is repeated
    /// along depth, so `ΔW3[.., d, ..] = profile[d] · ΔW2` (a Hadamard product of two
    /// inflated factors would square the profile, wrong for mean inflation).
    fn inflate(self, _path: &str, to3d: &Inflater) -> Result<Self> {
        let [t, c, kh, kw] = self.shape[..] else {
            return Ok(self);
        };
        let r = self.w1_a.lazy_shape()[1];
        Ok(Self {
            w1_b: to3d.factor(self.w1_b, [r, c, kh, kw]),
            w2_b: to3d.repeat(self.w2_b, [r, c, kh, kw]),
            shape: vec![t, c, to3d.depth(), kh, kw],
            ..self
        })
    }

    fn recompose_flops(shape: &[usize], rank: usize) -> f64 {
        let weight: usize = shape.iter().product();
        4.0 * rank as f64 * weight as f64 + weight as f64
    }
}

impl Adapter for LoHaAdapter {
    fn rank(&self) -> usize {
        self.w1_a.lazy_shape()[1]
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        loha::delta(
            self.w1_a.val(),
            self.w1_b.val(),
            self.w2_a.val(),
            self.w2_b.val(),
            self.scale,
        )
        .reshape(Shape::from(self.shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        [&self.w1_a, &self.w1_b, &self.w2_a, &self.w2_b]
            .iter()
            .map(|p| p.lazy_shape().num_elements())
            .sum()
    }
}
