//! Tucker-2 (LyCORIS `use_tucker`; the design document calls it "CP").

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::init::{input_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, Result};

use crate::adapter::{BranchOp, ConvAdapter, ConvArgs, Inflater, OpKind};
use crate::adapters::weight_parts;
use crate::functional::shape::product;
use crate::functional::tucker2;
use crate::geometry::ConvGeometry;

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
    pub shape: Vec<usize>,
}

impl ConvAdapter for Tucker2Adapter {
    const NAME: &'static str = "tucker2";
    const ALIASES: &'static [&'static str] = &["tucker"];
    const COUNT: &'static str = "r·(c + t) + r²·K";

    /// `down` and `mid` are Kaiming-uniform with their own fan-ins (`s/g` and `r·K`), `up` is
    /// zero, as in LyCORIS.
    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, k) = weight_parts(path, shape, 1..=3)?;
        spec.check(path, shape, Self::rank_limit(shape), "min(out, in/groups)")?;
        let r = spec.rank;
        Ok(Self {
            down: input_factor([r, c], c, spec, device),
            mid: input_factor([r, r * k], r * k, spec, device),
            up: zero_factor([t, r], device),
            scale: spec.scale(),
            shape: shape.to_vec(),
        })
    }

    fn param_count(shape: &[usize], rank: usize) -> usize {
        tucker2::param_count(shape, rank)
    }

    fn rank_limit(shape: &[usize]) -> usize {
        tucker2::rank_limit(shape)
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn branch<const N: usize>(&self, x: Tensor<N>, conv: &ConvArgs) -> Option<Tensor<N>> {
        Some(tucker2::branch(
            x,
            self.down.val(),
            self.mid.val(),
            self.up.val(),
            self.scale,
            &self.shape[2..],
            conv,
        ))
    }

    /// The mid kernel is inflated; `down` and `up` are kept.
    fn inflate(self, _path: &str, to3d: &Inflater) -> Result<Self> {
        let [t, c, kh, kw] = self.shape[..] else {
            return Ok(self);
        };
        let r = self.up.lazy_shape()[1];
        Ok(Self {
            mid: to3d.factor(self.mid, [r, r, kh, kw]),
            shape: vec![t, c, to3d.depth(), kh, kw],
            ..self
        })
    }

    fn recompose_flops(shape: &[usize], rank: usize) -> f64 {
        let [t, c, kernel @ ..] = shape else {
            return 0.0;
        };
        let (t, c, k, r) = (*t as f64, *c as f64, product(kernel) as f64, rank as f64);
        2.0 * r * r * k * c + 2.0 * t * r * c * k
    }

    fn branch_ops(g: &ConvGeometry, rank: usize, (n_in, n_out): (f64, f64)) -> Vec<BranchOp> {
        let (s, t, k, r) = (
            g.in_channels as f64,
            g.out_channels as f64,
            g.kernel_volume() as f64,
            rank as f64,
        );
        let kind = if k > 1.0 {
            OpKind::Spatial
        } else {
            OpKind::Pointwise
        };
        let op = |kind, cin, cout, taps, positions_in, positions_out| BranchOp {
            kind,
            cin,
            cout,
            taps,
            positions_in,
            positions_out,
        };
        vec![
            op(OpKind::Pointwise, s, r, 1.0, n_in, n_in),
            op(kind, r, r, k, n_in, n_out),
            op(OpKind::Pointwise, r, t, 1.0, n_out, n_out),
        ]
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
        tucker2::delta(self.down.val(), self.mid.val(), self.up.val(), self.scale)
            .reshape(Shape::from(self.shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        [&self.down, &self.mid, &self.up]
            .iter()
            .map(|p| p.lazy_shape().num_elements())
            .sum()
    }
}
