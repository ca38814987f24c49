//! LoKr (LyCORIS; Yeh et al. 2023): a Kronecker product of a small full matrix and a
//! low-rank one, for linear weights and conv kernels.

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::init::{input_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, LoraError, Result};

use crate::adapter::{ConvAdapter, Inflater};
use crate::adapters::weight_parts;
use crate::functional::lokr::{self, split};

/// `ΔW = scale · w1 ⊗ w2`: with `w1 [a, c1]` and `w2 [b, c2, k..]`,
/// `ΔW[i·b + j, p·c2 + q, k..] = scale · w1[i, p] · w2[j, q, k..]`, for a weight
/// `[t, c, k..]` with `t = a·b`, `c = c1·c2`.
///
/// `(a, b)` and `(c1, c2)` split `t` and `c` as LyCORIS does by default: the largest divisor
/// not above the square root, then its cofactor. `w2` is the low-rank product
/// `w2_a · w2_b` of rank `r` (LyCORIS `lokr_w2_a`, `lokr_w2_b`), or a full matrix
/// (`lokr_w2`) when loaded so; the spatial axes live in `w2`.
///
/// # Init
/// `w1` and `w2_a` are Kaiming-uniform, `w2_b` is zero, so the update starts at zero.
///
/// # Shapes
/// - `w1`: `[a, c1]`
/// - `w2_a`: `[b, r]`, `w2_b`: `[r, c2·K]`, or `w2`: `[b, c2·K]`
/// - `delta_weight()`: `[t, c, k..]`
#[derive(Module, Debug)]
pub struct LoKrAdapter {
    /// The small full factor `[a, c1]`.
    pub w1: Param<Tensor<2>>,
    /// Output side of the low-rank `w2`, `[b, r]`.
    pub w2_a: Option<Param<Tensor<2>>>,
    /// Input side of the low-rank `w2`, `[r, c2·K]`, zero at init.
    pub w2_b: Option<Param<Tensor<2>>>,
    /// `w2` as a full matrix `[b, c2·K]` (instead of `w2_a`, `w2_b`).
    pub w2: Option<Param<Tensor<2>>>,
    /// `alpha/r` or `alpha/sqrt(r)`; LyCORIS uses 1 for a full `w2`.
    pub scale: f64,
    /// The adapted weight's shape `[t, c, k..]`.
    #[module(skip)]
    pub shape: Vec<usize>,
}

impl LoKrAdapter {
    /// From factors: `w1 [a, c1]` and `w2` either `Ok((w2_a [b, r], w2_b [r, c2·K]))` or
    /// `Err(w2 [b, c2·K])`, for a weight of `shape`.
    ///
    /// # Errors
    /// [`LoraError::ShapeMismatch`] naming `path` when the factors do not multiply out to
    /// `shape`.
    pub fn from_factors(
        path: &str,
        shape: &[usize],
        w1: Tensor<2>,
        w2: core::result::Result<(Tensor<2>, Tensor<2>), Tensor<2>>,
        scale: f64,
    ) -> Result<Self> {
        let [a, c1] = w1.dims();
        let (b, c2k) = match &w2 {
            Ok((w2_a, w2_b)) => (w2_a.dims()[0], w2_b.dims()[1]),
            Err(full) => (full.dims()[0], full.dims()[1]),
        };
        let (t, c, k) = weight_parts(path, shape, 0..=3)?;
        if let Ok((w2_a, w2_b)) = &w2
            && w2_a.dims()[1] != w2_b.dims()[0]
        {
            return Err(LoraError::ShapeMismatch {
                path: format!("{path} (lokr_w2_b)"),
                expected: vec![w2_a.dims()[1], c2k],
                actual: w2_b.dims().to_vec(),
            });
        }
        // t = a·b, c = c1·c2 and w2's columns are c2·K.
        if a * b != t || c1 == 0 || c % c1 != 0 || c2k != (c / c1) * k {
            return Err(LoraError::ShapeMismatch {
                path: format!("{path} (w1 [a, c1] ⊗ w2 [b, c2·K])"),
                expected: shape.to_vec(),
                actual: vec![a, b, c1, c2k],
            });
        }
        let (w2_a, w2_b, w2) = match w2 {
            Ok((w2_a, w2_b)) => (
                Some(Param::from_tensor(w2_a)),
                Some(Param::from_tensor(w2_b)),
                None,
            ),
            Err(full) => (None, None, Some(Param::from_tensor(full))),
        };
        Ok(Self {
            w1: Param::from_tensor(w1),
            w2_a,
            w2_b,
            w2,
            scale,
            shape: shape.to_vec(),
        })
    }

    /// `w2` as `[b, c2·K]`.
    fn w2_matrix(&self) -> Option<Tensor<2>> {
        match (&self.w2, &self.w2_a, &self.w2_b) {
            (Some(full), _, _) => Some(full.val()),
            (None, Some(a), Some(b)) => Some(a.val().matmul(b.val())),
            _ => None,
        }
    }
}

impl ConvAdapter for LoKrAdapter {
    const NAME: &'static str = "lokr";
    const ALIASES: &'static [&'static str] = &["kronecker"];
    const COUNT: &'static str = "a·c1 + r·(b + c2·K), t = a·b, c = c1·c2";
    const LINEAR: bool = true;

    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, k) = weight_parts(path, shape, 0..=3)?;
        spec.check(
            path,
            shape,
            Self::rank_limit(shape),
            "min(b, c2·K) of w2 [b, c2·K]",
        )?;
        let ((a, b), (c1, c2)) = (split(t), split(c));
        let r = spec.rank;
        Ok(Self {
            w1: input_factor([a, c1], c1, spec, device),
            w2_a: Some(input_factor([b, r], r, spec, device)),
            w2_b: Some(zero_factor([r, c2 * k], device)),
            w2: None,
            scale: spec.scale(),
            shape: shape.to_vec(),
        })
    }

    fn param_count(shape: &[usize], rank: usize) -> usize {
        lokr::param_count(shape, rank)
    }

    fn rank_limit(shape: &[usize]) -> usize {
        lokr::rank_limit(shape)
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// `w2` carries the spatial axes and `ΔW` is linear in it: `w2_b` (or the full `w2`) is
    /// inflated as a kernel.
    fn inflate(self, _path: &str, to3d: &Inflater) -> Result<Self> {
        let [t, c, kh, kw] = self.shape[..] else {
            return Ok(self);
        };
        let c2 = c / self.w1.lazy_shape()[1].max(1);
        let shape = vec![t, c, to3d.depth(), kh, kw];
        let rows = |p: &Param<Tensor<2>>| p.lazy_shape()[0];
        Ok(Self {
            w2_b: self.w2_b.map(|p| {
                let r = rows(&p);
                to3d.factor(p, [r, c2, kh, kw])
            }),
            w2: self.w2.map(|p| {
                let b = rows(&p);
                to3d.factor(p, [b, c2, kh, kw])
            }),
            shape,
            ..self
        })
    }
}

impl Adapter for LoKrAdapter {
    /// The rank of the low-rank `w2`; for a full `w2`, its smaller side.
    fn rank(&self) -> usize {
        match (&self.w2_a, &self.w2) {
            (Some(a), _) => a.lazy_shape()[1],
            (None, Some(full)) => {
                let [b, n] = full.lazy_shape().dims();
                b.min(n)
            }
            _ => 0,
        }
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        let w2 = self
            .w2_matrix()
            .unwrap_or_else(|| Tensor::zeros([0, 0], &self.w1.lazy_device()));
        // The spatial axes are innermost in w2, so the Kronecker product's columns already
        // follow the kernel's (c, k..) order.
        lokr::delta(self.w1.val(), w2, self.scale).reshape(Shape::from(self.shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        [
            Some(&self.w1),
            self.w2_a.as_ref(),
            self.w2_b.as_ref(),
            self.w2.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| p.lazy_shape().num_elements())
        .sum()
    }
}
