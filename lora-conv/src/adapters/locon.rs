//! LoCon (PEFT, diffusers, kohya, LyCORIS `locon`): a kxk down conv, then a 1x1 up conv. On a
//! linear weight it is plain LoRA.

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::init::{input_factor, zero_factor};
use lora_core::{Adapter, AdapterSpec, Result};

use crate::adapter::{BranchOp, ConvAdapter, ConvArgs, Inflater, OpKind};
use crate::adapters::weight_parts;
use crate::functional::locon;
use crate::geometry::ConvGeometry;

/// `ΔK[t, s, k..] = Σ_r up[t, r] · down[r, s, k..]`.
///
/// The down factor is a conv with the base's kernel size, stride, padding and dilation
/// (s/g -> r), the up factor a 1x1 conv (r -> t). With groups `g > 1` the update is a full
/// `[t, s/g, k..]` kernel applied with the base's groups (LyCORIS semantics): down sees the
/// `s/g` input channels of a group, and `up` mixes ranks freely. On a linear weight `[t, c]`
/// it is LoRA: `down [r, c]`, `up [t, r]` (PEFT's `lora_A`, `lora_B`).
///
/// # Shapes
/// - `down`: `[r, (s/g)·K]` (the kernel `[r, s/g, k..]`, flattened)
/// - `up`: `[t, r]`
/// - `delta_weight()`: `[t, s/g, k..]`
#[derive(Module, Debug)]
pub struct LoConAdapter {
    /// Down conv kernel `[r, (s/g)·K]`.
    pub down: Param<Tensor<2>>,
    /// Up 1x1 conv `[t, r]`, zero at init.
    pub up: Param<Tensor<2>>,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scale: f64,
    /// The adapted weight's shape `[t, s/g, k..]`.
    #[module(skip)]
    pub shape: Vec<usize>,
}

impl ConvAdapter for LoConAdapter {
    const NAME: &'static str = "locon";
    const ALIASES: &'static [&'static str] = &["hf", "lora"];
    const COUNT: &'static str = "r·(c·K + t)";
    const LINEAR: bool = true;

    /// Kaiming-uniform `down` (fan-in `(s/g)·K`), zero `up`.
    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let (t, c, k) = weight_parts(path, shape, 0..=3)?;
        spec.check(
            path,
            shape,
            Self::rank_limit(shape),
            "min(out, in/groups·K)",
        )?;
        Ok(Self {
            down: input_factor([spec.rank, c * k], c * k, spec, device),
            up: zero_factor([t, spec.rank], device),
            scale: spec.scale(),
            shape: shape.to_vec(),
        })
    }

    fn param_count(shape: &[usize], rank: usize) -> usize {
        locon::param_count(shape, rank)
    }

    fn rank_limit(shape: &[usize]) -> usize {
        locon::rank_limit(shape)
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn branch<const N: usize>(&self, x: Tensor<N>, conv: &ConvArgs) -> Option<Tensor<N>> {
        Some(locon::branch(
            x,
            self.down.val(),
            self.up.val(),
            self.scale,
            &self.shape[1..],
            conv,
        ))
    }

    /// The down kernel is inflated; `up` is kept.
    fn inflate(self, _path: &str, to3d: &Inflater) -> Result<Self> {
        let [t, c, kh, kw] = self.shape[..] else {
            return Ok(self);
        };
        let r = self.up.lazy_shape()[1];
        Ok(Self {
            down: to3d.factor(self.down, [r, c, kh, kw]),
            shape: vec![t, c, to3d.depth(), kh, kw],
            ..self
        })
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
        vec![
            BranchOp {
                kind,
                cin: s,
                cout: r,
                taps: k,
                positions_in: n_in,
                positions_out: n_out,
            },
            BranchOp {
                kind: OpKind::Pointwise,
                cin: r,
                cout: t,
                taps: 1.0,
                positions_in: n_out,
                positions_out: n_out,
            },
        ]
    }
}

impl Adapter for LoConAdapter {
    fn rank(&self) -> usize {
        self.up.lazy_shape()[1]
    }

    fn scale(&self) -> f64 {
        self.scale
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        locon::delta(self.down.val(), self.up.val(), self.scale)
            .reshape(Shape::from(self.shape.clone()))
    }

    fn trainable_params(&self) -> usize {
        self.down.lazy_shape().num_elements() + self.up.lazy_shape().num_elements()
    }
}
