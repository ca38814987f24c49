//! CP: the canonical polyadic decomposition of the kernel (Lebedev et al. 2014,
//! arXiv 1412.6553).

use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Shape, Tensor};
use lora_core::init::{input_factor, uniform_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, FactorInit, Result};

use crate::adapter::{BranchOp, ConvAdapter, ConvArgs, Inflater, OpKind};
use crate::adapters::weight_parts;
use crate::functional::cp;
use crate::functional::shape::product;
use crate::geometry::ConvGeometry;

/// `ΔK[t, s, i_1..i_d] = Σ_r U[t, r] · V[r, s] · Π_j F_j[i_j, r]`: `r` rank-one terms, one
/// factor per mode of the kernel.
///
/// Bypass form: a 1x1 conv s/g -> r (V), then one depthwise conv per spatial axis (F_j, with
/// the base's stride, padding and dilation on that axis), then a 1x1 conv r -> t (U).
///
/// # Init
/// `U` is zero. `V` is Kaiming-uniform (bound `1/sqrt(s/g)`) and each `F_j` is uniform with
/// bound `sqrt(3/k_j)`, i.e. unit variance per kernel row. Then each rank-one input filter
/// `V[r, :] ⊗ F_1[:, r] ⊗ .. ⊗ F_d[:, r]` has the same per-element variance, `1/(3·(s/g)·K)`, as
/// LoCon's Kaiming-uniform down kernel, so once `U` is trained, `ΔK` has the scale LoCon's has
/// at the same rank and alpha. (With Gaussian init: `V ~ N(0, 1/r²)` and `F_j ~ N(0, 1/k_j)`.)
///
/// # Shapes
/// - `up` (U): `[t, r]`
/// - `down` (V): `[r, s/g]` (as Tucker-2's `down`: a 1x1 conv s/g -> r)
/// - `spatial[j]` (F_j): `[k_j, r]`
/// - `delta_weight()`: `[t, s/g, k..]`
#[derive(Module, Debug)]
pub struct CpAdapter {
    /// Output-channel factor U `[t, r]`, zero at init.
    pub up: Param<Tensor<2>>,
    /// Input-channel factor V `[r, s/g]`.
    pub down: Param<Tensor<2>>,
    /// One factor F_j `[k_j, r]` per spatial axis.
    pub spatial: Vec<Param<Tensor<2>>>,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scale: f64,
    /// The adapted kernel's shape `[t, s/g, k..]`.
    #[module(skip)]
    pub shape: Vec<usize>,
}

impl ConvAdapter for CpAdapter {
    const NAME: &'static str = "cp";
    const ALIASES: &'static [&'static str] = &["cpd"];
    const COUNT: &'static str = "r·(c + t + Σ k)";

    /// A CP rank can exceed `min(t, s/g)`; the cap is the generic bound on tensor rank, the
    /// product of every mode size but the largest.
    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, _) = weight_parts(path, shape, 1..=3)?;
        spec.check(
            path,
            shape,
            Self::rank_limit(shape),
            "product of all modes but the largest",
        )?;
        let r = spec.rank;
        let spatial = shape[2..]
            .iter()
            .map(|&k| match spec.init {
                FactorInit::KaimingUniform => {
                    uniform_factor([k, r], (3.0 / k as f64).sqrt(), device)
                }
                FactorInit::Gaussian => Param::from_tensor(Tensor::random(
                    [k, r],
                    Distribution::Normal(0.0, (1.0 / k as f64).sqrt()),
                    device,
                )),
            })
            .collect();
        Ok(Self {
            up: zero_factor([t, r], device),
            down: input_factor([r, c], c, spec, device),
            spatial,
            scale: spec.scale(),
            shape: shape.to_vec(),
        })
    }

    fn param_count(shape: &[usize], rank: usize) -> usize {
        cp::param_count(shape, rank)
    }

    /// The product of every mode but (one copy of) the largest.
    fn rank_limit(shape: &[usize]) -> usize {
        cp::rank_limit(shape)
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn branch<const N: usize>(&self, x: Tensor<N>, conv: &ConvArgs) -> Option<Tensor<N>> {
        let spatial: Vec<Tensor<2>> = self.spatial.iter().map(Param::val).collect();
        Some(cp::branch(
            x,
            self.up.val(),
            self.down.val(),
            &spatial,
            self.scale,
            conv,
        ))
    }

    /// A depth factor `[depth, r]` is prepended: every column is the inflation's depth profile
    /// (one-hot at the centre slice, or `1/depth` everywhere). It trains like the other
    /// factors, so further training on volumes can use depth.
    fn inflate(self, _path: &str, to3d: &Inflater) -> Result<Self> {
        let [t, c, kh, kw] = self.shape[..] else {
            return Ok(self);
        };
        let r = self.up.lazy_shape()[1];
        let device = self.up.lazy_device();
        let depth = to3d.depth();
        let profile = to3d.profile(&device).reshape([depth, 1]).repeat_dim(1, r);
        let mut spatial = vec![to3d.new_factor(profile, &self.up)];
        spatial.extend(self.spatial);
        Ok(Self {
            spatial,
            shape: vec![t, c, depth, kh, kw],
            ..self
        })
    }

    fn recompose_flops(shape: &[usize], rank: usize) -> f64 {
        let [t, c, kernel @ ..] = shape else {
            return 0.0;
        };
        let (t, c, k, r) = (*t as f64, *c as f64, product(kernel) as f64, rank as f64);
        2.0 * r * c * k + 2.0 * t * r * c * k
    }

    fn branch_ops(g: &ConvGeometry, rank: usize, (n_in, n_out): (f64, f64)) -> Vec<BranchOp> {
        let (s, t, r) = (g.in_channels as f64, g.out_channels as f64, rank as f64);
        let mut ops = vec![BranchOp {
            kind: OpKind::Pointwise,
            cin: s,
            cout: r,
            taps: 1.0,
            positions_in: n_in,
            positions_out: n_in,
        }];
        // One depthwise conv per axis; the spatial size moves from n_in to n_out.
        let axes = g.dims().max(1) as f64;
        let step = (n_out / n_in.max(1.0)).powf(1.0 / axes);
        let mut at = n_in;
        for &k in &g.kernel {
            ops.push(BranchOp {
                kind: OpKind::Depthwise,
                cin: 1.0,
                cout: r,
                taps: k as f64,
                positions_in: at,
                positions_out: at * step,
            });
            at *= step;
        }
        ops.push(BranchOp {
            kind: OpKind::Pointwise,
            cin: r,
            cout: t,
            taps: 1.0,
            positions_in: n_out,
            positions_out: n_out,
        });
        ops
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
        cp::delta(self.up.val(), self.down.val(), &spatial, self.scale)
            .reshape(Shape::from(self.shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        self.spatial
            .iter()
            .chain([&self.up, &self.down])
            .map(|p| p.lazy_shape().num_elements())
            .sum()
    }
}
