//! The extension point: what an adapter type implements to get attach, bypass, merge, files,
//! inflation, bounds and the experiments.
//!
//! # Adding an adapter type
//! 1. Write a burn module for its factors in one file and implement [`lora_core::Adapter`]
//!    (rank, scale, `scale·ΔW`, trainable count) and [`ConvAdapter`] for it.
//! 2. Register it once: `lora_conv::register(ConvVariant::of::<MyAdapter>())` (in this crate,
//!    the built-ins are listed in [`ConvVariant::BUILTIN`](crate::ConvVariant::BUILTIN)).
//!
//! From then on its name parses as a [`ConvVariant`](crate::ConvVariant) (command lines, configs, files), and
//! [`ConvFactory`](crate::ConvFactory), [`LoraConv`](crate::LoraConv), merge/unmerge, the
//! native file format, `lora-3d` inflation and the `bounds` and `compare` binaries use it.
//!
//! # Why trait + type erasure
//! burn gives each weight one reparameterization type and does not nest them, so every adapter
//! has to travel inside one carrier type, [`AnyAdapter`](crate::AnyAdapter). A closed enum
//! would need an edit in this crate for every new type and could never take one from another
//! crate; a macro-generated enum would make every model type depend on the set of adapters
//! compiled into it. Instead `AnyAdapter` boxes any `ConvAdapter` behind an object-safe trait,
//! and carries burn's (const-generic) module traversal across the box with
//! [`lora_core::erased`]. The trait itself keeps generic methods (`branch::<N>`), which is
//! what adapter code wants to write; the carrier monomorphizes them for N = 3, 4, 5.

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::{Adapter, AdapterSpec, LoraError, Result};

pub use crate::functional::conv::ConvArgs;
use crate::geometry::ConvGeometry;

/// An adapter type for the weights of convolutions (`[t, s/g, k..]`, 1 to 3 spatial axes) and,
/// optionally, of linear layers (`[out, in]`, no spatial axis).
///
/// Shapes here are in PyTorch's layout, output channels first. For a `Linear` weight (which
/// burn stores as `[d_in, d_out]`), [`AnyAdapter`](crate::AnyAdapter) builds the adapter on
/// `[d_out, d_in]` and transposes its update.
///
/// Implementors must keep [`Adapter::delta_weight`] equal to the bypass branch's effect
/// (`branch(x) = conv(x, scale·ΔW)` with the base's stride, padding and dilation) and
/// [`ConvAdapter::param_count`] equal to [`Adapter::trainable_params`] of a built adapter; the
/// workspace's geometry tests check both for every registered type.
pub trait ConvAdapter: Adapter + Clone {
    /// The name it is registered, parsed, printed and saved under (`"locon"`). Lowercase
    /// ASCII letters and digits.
    const NAME: &'static str;
    /// Other names accepted when parsing (e.g. `"hf"` for LoCon).
    const ALIASES: &'static [&'static str] = &[];
    /// Its parameter count as a formula, for `bounds` and the docs (`"r·(c·K + t)"`, with
    /// `c = s/g` and `K = Π k`).
    const COUNT: &'static str;
    /// Whether it adapts linear weights too (`[out, in]`). When it does not, linear weights
    /// targeted alongside convs get plain LoRA ([`crate::adapters::LoConAdapter`]).
    const LINEAR: bool = false;
    /// Whether its bypass form also needs the recomposed update (DoRA's norm of `W + scale·ΔW`),
    /// for the cost model.
    const BYPASS_RECOMPOSES: bool = false;

    /// A fresh adapter for a weight of shape `[t, c, k..]` (`path` names it in errors). The
    /// update must start at zero, so attaching does not change the model.
    ///
    /// # Errors
    /// Rank 0 or above [`ConvAdapter::rank_limit`], a non-finite alpha, or a shape the type
    /// does not adapt; each names `path`.
    fn new(path: &str, shape: &[usize], spec: &AdapterSpec, device: &Device) -> Result<Self>;

    /// Trainable scalars at `rank` on a weight of `shape`. Non-decreasing in `rank` (the rank
    /// searches of `bounds` rely on it); saturating instead of overflowing.
    fn param_count(shape: &[usize], rank: usize) -> usize;

    /// The largest rank [`ConvAdapter::new`] accepts on `shape` (0: none).
    fn rank_limit(shape: &[usize]) -> usize;

    /// The adapted weight's shape `[t, c, k..]`.
    fn shape(&self) -> &[usize];

    /// The bypass branch `conv(x, scale·ΔW)`, computed from the factors (`x: [B, s, ..d]`,
    /// groups = 1), or `None` when the type has no cheaper form than that conv; the caller then
    /// runs the conv with the recomposed update.
    fn branch<const N: usize>(&self, x: Tensor<N>, conv: &ConvArgs) -> Option<Tensor<N>> {
        let _ = (x, conv);
        None
    }

    /// The 3D adapter of a 2D one (kernel `[t, c, kh, kw]` -> `[t, c, depth, kh, kw]`) whose
    /// update is the inflation of this one's update, factor by factor (see [`Inflater`]).
    ///
    /// # Errors
    /// [`LoraError::UnsupportedGeometry`] naming `path` when the type cannot be inflated (the
    /// default).
    fn inflate(self, path: &str, to3d: &Inflater) -> Result<Self> {
        let _ = to3d;
        Err(LoraError::UnsupportedGeometry {
            path: path.to_string(),
            reason: format!("{} adapters do not implement 3D inflation", Self::NAME),
        })
    }

    /// Multiply-adds ×2 of recomposing `scale·ΔW` (for the forward-form cost model).
    fn recompose_flops(shape: &[usize], rank: usize) -> f64 {
        let weight: usize = shape.iter().product();
        2.0 * rank as f64 * weight as f64
    }

    /// The convolutions of the bypass branch on a layer of `geometry` whose input and output
    /// have `positions` (input, output) spatial positions, in order (for the cost model).
    /// Empty when [`ConvAdapter::branch`] returns `None`.
    fn branch_ops(geometry: &ConvGeometry, rank: usize, positions: (f64, f64)) -> Vec<BranchOp> {
        let _ = (geometry, rank, positions);
        Vec::new()
    }
}

/// The kind of a convolution, for its measured rate in the cost model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A kernel with more than one tap, one group.
    Spatial,
    /// A 1x..x1 kernel.
    Pointwise,
    /// One input channel per group.
    Depthwise,
}

/// One convolution of a bypass branch, as the cost model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BranchOp {
    /// Its kind.
    pub kind: OpKind,
    /// Input channels per group.
    pub cin: f64,
    /// Output channels.
    pub cout: f64,
    /// Kernel taps.
    pub taps: f64,
    /// Spatial positions of its input.
    pub positions_in: f64,
    /// Spatial positions of its output.
    pub positions_out: f64,
}

/// How a 2D kernel becomes a 3D one, handed to [`ConvAdapter::inflate`] by `lora-3d`.
pub struct Inflater<'a> {
    depth: usize,
    kernel: &'a dyn Fn(Tensor<4>) -> Tensor<5>,
}

impl<'a> Inflater<'a> {
    /// Inflate to `depth` slices with `kernel` (`[a, b, kh, kw]` -> `[a, b, depth, kh, kw]`).
    pub fn new(depth: usize, kernel: &'a dyn Fn(Tensor<4>) -> Tensor<5>) -> Self {
        Self { depth, kernel }
    }

    /// The depth of the 3D kernel.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Inflate a kernel `[a, b, kh, kw]` -> `[a, b, depth, kh, kw]`.
    pub fn kernel(&self, kernel: Tensor<4>) -> Tensor<5> {
        (self.kernel)(kernel)
    }

    /// The depth profile of the inflation, `[depth]`: the 3D kernel of a 1x1 kernel of one.
    /// One-hot at the centre slice for centre inflation, `1/depth` everywhere for mean
    /// inflation. A kernel that is linear along depth inflates by this profile.
    pub fn profile(&self, device: &Device) -> Tensor<1> {
        self.kernel(Tensor::<4>::ones([1, 1, 1, 1], device))
            .reshape([self.depth])
    }

    /// Inflate a flattened kernel factor `[a, b·kh·kw]` (its kernel `[a, b, kh, kw]`) to
    /// `[a, b·depth·kh·kw]`, keeping its id and whether it trains.
    pub fn factor(&self, param: Param<Tensor<2>>, [a, b, kh, kw]: [usize; 4]) -> Param<Tensor<2>> {
        let depth = self.depth;
        param.map(|flat| {
            let require_grad = flat.is_require_grad();
            let kernel = flat.detach().reshape(Shape::new([a, b, kh, kw]));
            self.kernel(kernel)
                .reshape([a, b * depth * kh * kw])
                .detach()
                .set_require_grad(require_grad)
        })
    }

    /// A flattened kernel factor `[a, b·kh·kw]` repeated, unscaled, on every depth slice:
    /// `[a, b·depth·kh·kw]`, keeping its id and whether it trains. For the second factor of a
    /// product whose first factor carries the inflation (LoHa), so the product is inflated once.
    pub fn repeat(&self, param: Param<Tensor<2>>, [a, b, kh, kw]: [usize; 4]) -> Param<Tensor<2>> {
        let depth = self.depth;
        param.map(|flat| {
            let require_grad = flat.is_require_grad();
            flat.detach()
                .reshape([a, b, 1, kh * kw])
                .repeat_dim(2, depth)
                .reshape([a, b * depth * kh * kw])
                .detach()
                .set_require_grad(require_grad)
        })
    }

    /// A new trainable-or-frozen factor (as `like`) holding `value`.
    pub fn new_factor<const D: usize>(
        &self,
        value: Tensor<D>,
        like: &Param<Tensor<2>>,
    ) -> Param<Tensor<D>> {
        let trainable = like.clone().train().is_require_grad();
        Param::initialized(ParamId::new(), value.detach()).set_require_grad(trainable)
    }
}

impl core::fmt::Debug for Inflater<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inflater")
            .field("depth", &self.depth)
            .finish()
    }
}
