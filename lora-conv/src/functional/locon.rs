//! LoCon (PEFT, diffusers, kohya, LyCORIS `locon`; plain LoRA on a linear weight):
//! `ΔK[t, s, k..] = Σ_r up[t, r] · down[r, s, k..]`.
//!
//! # Shapes
//! With `c = s/g` input channels per group and `K = Π k_j`:
//! - `down`: `[r, c·K]` (the kxk down conv `[r, c, k..]`, flattened), `up`: `[t, r]`
//! - update: `[t, c·K]`, in the order of the kernel `[t, c, k..]`

use burn::tensor::{Shape, Tensor};

use super::conv::{ConvArgs, conv_nd, pointwise};
use super::shape::{matrix_rank_limit, product};

/// `scale·ΔK = scale · up · down`, flattened as `[t, c·K]`.
///
/// # Shapes
/// - `down`: `[r, c·K]`, `up`: `[t, r]` -> `[t, c·K]`
pub fn delta(down: Tensor<2>, up: Tensor<2>, scale: f64) -> Tensor<2> {
    // Scaling the small factor saves a pass over the [t, c·K] result.
    up.mul_scalar(scale).matmul(down)
}

/// The bypass branch `conv(x, scale·ΔK)` from the factors: the down conv with the base's
/// stride, padding and dilation (c -> r), then a 1x1 up conv (r -> t). Groups = 1.
///
/// # Shapes
/// - `x`: `[B, c, ..d]`, `down`: `[r, c·K]`, `up`: `[t, r]`, `kernel`: the `d` spatial sizes
///   `k..` and `c` as `[c, k..]` -> `[B, t, ..d']`
pub fn branch<const N: usize>(
    x: Tensor<N>,
    down: Tensor<2>,
    up: Tensor<2>,
    scale: f64,
    kernel: &[usize],
    conv: &ConvArgs,
) -> Tensor<N> {
    let [r, _] = down.dims();
    let mut shape = vec![r];
    shape.extend_from_slice(kernel);
    let down = down.reshape::<N, _>(Shape::from(shape));
    let hidden = conv_nd(x, down, conv.stride, conv.padding, conv.dilation, 1);
    // Scaling the small up factor, not the branch output, saves a full-size pass.
    pointwise(hidden, up.mul_scalar(scale))
}

/// Trainable scalars at `rank` on a weight `[t, c, k..]`: `r·(c·K + t)`. Saturating.
pub fn param_count(shape: &[usize], rank: usize) -> usize {
    let [t, rest @ ..] = shape else { return 0 };
    rank.saturating_mul(product(rest).saturating_add(*t))
}

/// The largest rank on a weight `[t, c, k..]`: `min(t, c·K)`.
pub fn rank_limit(shape: &[usize]) -> usize {
    matrix_rank_limit(shape)
}
