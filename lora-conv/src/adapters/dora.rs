//! DoRA (Liu et al. 2024, arXiv 2402.09353): LoRA with the weight decomposed into a magnitude
//! and a direction, `W' = m ⊙ V / ‖V‖` with `V = W + scale·ΔW` and the norm per output channel.

use burn::module::{Module, Param};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::{Adapter, AdapterSpec, Result};

use crate::adapter::{BranchOp, ConvAdapter, ConvArgs, Inflater};
use crate::adapters::LoConAdapter;
use crate::functional::dora::{self, row_norms};
use crate::geometry::ConvGeometry;

/// LoCon/LoRA factors plus a magnitude `m [t]`: `W' = m ⊙ V / ‖V‖`, `V = W + scale·up·down`,
/// `‖V‖` the L2 norm of each output channel's row of `V` (PEFT's `lora_magnitude_vector`,
/// LyCORIS's `dora_scale` with `wd_on_out`).
///
/// As in PEFT, `‖V‖` is treated as a constant in the backward pass (the paper's section 4.3:
/// it saves memory and changes little), so `m` and the factors get the gradient of
/// `m ⊙ V / c` with `c = ‖V‖` held.
///
/// # Init
/// The factors as LoCon's (so `V = W` at attach); `m` is set to `‖W‖` per output channel when
/// the adapter is attached to its weight ([`Adapter::with_base`]), so attaching changes nothing.
/// An adapter read from a file keeps its file's magnitude.
///
/// # Shapes
/// - `lora.down`: `[r, (s/g)·K]`, `lora.up`: `[t, r]`
/// - `magnitude`: `[t]`
/// - `delta_weight()` (the additive part `scale·ΔW`): `[t, s/g, k..]`
#[derive(Module, Debug)]
pub struct DoraAdapter {
    /// The low-rank update of the direction.
    pub lora: LoConAdapter,
    /// `m`, one magnitude per output channel.
    pub magnitude: Param<Tensor<1>>,
    /// Whether `m` still has to be set from the pretrained weight.
    #[module(skip)]
    pub magnitude_from_base: bool,
    /// Added to `‖V‖`: 0 as PEFT, f32's epsilon as LyCORIS.
    #[module(skip)]
    pub epsilon: f64,
}

impl DoraAdapter {
    /// From LoCon/LoRA factors and a magnitude `[t]` (e.g. read from a file).
    pub fn from_parts(lora: LoConAdapter, magnitude: Tensor<1>) -> Self {
        Self {
            lora,
            magnitude: Param::from_tensor(magnitude),
            magnitude_from_base: false,
            epsilon: 0.0,
        }
    }
}

impl ConvAdapter for DoraAdapter {
    const NAME: &'static str = "dora";
    const COUNT: &'static str = "r·(c·K + t) + t";
    const LINEAR: bool = true;
    const BYPASS_RECOMPOSES: bool = true;

    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self> {
        let lora = LoConAdapter::new(path, shape, spec, device)?;
        Ok(Self {
            magnitude: Param::from_tensor(Tensor::ones([shape[0]], device)),
            lora,
            magnitude_from_base: true,
            epsilon: 0.0,
        })
    }

    fn param_count(shape: &[usize], rank: usize) -> usize {
        dora::param_count(shape, rank)
    }

    fn rank_limit(shape: &[usize]) -> usize {
        dora::rank_limit(shape)
    }

    fn shape(&self) -> &[usize] {
        &self.lora.shape
    }

    /// LoCon's branch: the additive part (the layer rescales base plus branch per channel).
    fn branch<const N: usize>(&self, x: Tensor<N>, conv: &ConvArgs) -> Option<Tensor<N>> {
        self.lora.branch(x, conv)
    }

    /// The factors inflate as LoCon's; `m` is multiplied by the depth profile's L2 norm (1 for
    /// centre inflation, `1/sqrt(depth)` for mean inflation), which is what keeps
    /// `m ⊙ V / ‖V‖` summed over depth equal to the 2D weight.
    fn inflate(self, path: &str, to3d: &Inflater) -> Result<Self> {
        let device = self.magnitude.lazy_device();
        let norm = to3d
            .profile(&device)
            .powi_scalar(2)
            .sum()
            .sqrt()
            .into_scalar::<f32>();
        let magnitude = self.magnitude.map(|m| {
            let require_grad = m.is_require_grad();
            m.detach()
                .mul_scalar(f64::from(norm))
                .detach()
                .set_require_grad(require_grad)
        });
        Ok(Self {
            lora: self.lora.inflate(path, to3d)?,
            magnitude,
            ..self
        })
    }

    fn recompose_flops(shape: &[usize], rank: usize) -> f64 {
        let weight: usize = shape.iter().product();
        LoConAdapter::recompose_flops(shape, rank) + 4.0 * weight as f64
    }

    fn branch_ops(g: &ConvGeometry, rank: usize, positions: (f64, f64)) -> Vec<BranchOp> {
        LoConAdapter::branch_ops(g, rank, positions)
    }
}

impl Adapter for DoraAdapter {
    fn rank(&self) -> usize {
        self.lora.rank()
    }

    fn scale(&self) -> f64 {
        self.lora.scale()
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        self.lora.delta_weight()
    }

    fn trainable_params(&self) -> usize {
        self.lora.trainable_params() + self.magnitude.lazy_shape().num_elements()
    }

    fn additive(&self) -> bool {
        false
    }

    /// `m / ‖V‖` per output channel, as `[t, 1, 1..]`. A channel whose `V` is all zero keeps
    /// `m` as its factor (its output is 0 whatever the factor), not `m / 0`.
    fn channel_scale<const D: usize>(&self, adapted: &Tensor<D>) -> Option<Tensor<D>> {
        let scale = dora::channel_scale(self.magnitude.val(), row_norms(adapted), self.epsilon);
        let mut shape = vec![1usize; D];
        shape[0] = scale.dims()[0];
        Some(scale.reshape(Shape::from(shape)))
    }

    fn with_base<const D: usize>(self, base: &Tensor<D>) -> Self {
        if !self.magnitude_from_base {
            return self;
        }
        let norms = row_norms(base);
        Self {
            magnitude: self.magnitude.map(|m| {
                // On the magnitude's own device (autodiff or not), with its training state.
                let require_grad = m.is_require_grad();
                Tensor::<1>::from_data(norms.into_data(), &m.device())
                    .set_require_grad(require_grad)
            }),
            magnitude_from_base: false,
            ..self
        }
    }
}
