//! Tucker-2 (LyCORIS `use_tucker`; the design document's "CP"):
//! `ΔK[t, s, k..] = Σ_p Σ_q up[t, p] · mid[p, q, k..] · down[q, s]`.
//!
//! # Shapes
//! With `c = s/g` and `K = Π k_j`:
//! - `down`: `[r, c]`, `mid`: `[r, r·K]` (the kxk r->r core, flattened), `up`: `[t, r]`
//! - update: `[t, c·K]`, in the order of the kernel `[t, c, k..]`

use burn::tensor::{Shape, Tensor};

use super::conv::{ConvArgs, conv_nd, pointwise};
use super::shape::{channel_rank_limit, product};

/// `scale·ΔK` flattened as `[t, c·K]`, with two matmuls.
///
/// # Shapes
/// - `down`: `[r, c]`, `mid`: `[r, r·K]`, `up`: `[t, r]` -> `[t, c·K]`
pub fn delta(down: Tensor<2>, mid: Tensor<2>, up: Tensor<2>, scale: f64) -> Tensor<2> {
    let [t, r] = up.dims();
    let [_, c] = down.dims();
    let k = mid.dims()[1] / r.max(1);
    // Two plain matmuls; only rank-sized tensors are permuted, never the [t, c·K] result.
    // M[p, k, s] = Σ_q mid[p, q, k] down[q, s]: one [r·K, r] x [r, c] matmul.
    let m = mid
        .reshape([r, r, k])
        .swap_dims(1, 2)
        .reshape([r * k, r])
        .matmul(down);
    // [p, k, s] -> [p, s, k]; ΔK = (scale·up) · M: one [t, r] x [r, c·K] matmul.
    let m = m.reshape([r, k, c]).swap_dims(1, 2).reshape([r, c * k]);
    let out = up.mul_scalar(scale).matmul(m);
    debug_assert_eq!(out.dims(), [t, c * k]);
    out
}

/// The bypass branch `conv(x, scale·ΔK)` from the factors: a 1x1 down conv (c -> r), the kxk
/// core with the base's stride, padding and dilation (r -> r), a 1x1 up conv (r -> t).
///
/// # Shapes
/// - `x`: `[B, c, ..d]`, factors as [`delta`], `spatial`: the `d` kernel sizes -> `[B, t, ..d']`
pub fn branch<const N: usize>(
    x: Tensor<N>,
    down: Tensor<2>,
    mid: Tensor<2>,
    up: Tensor<2>,
    scale: f64,
    spatial: &[usize],
    conv: &ConvArgs,
) -> Tensor<N> {
    let [r, _] = down.dims();
    let mut shape = vec![r, r];
    shape.extend_from_slice(spatial);
    let mid = mid.reshape::<N, _>(Shape::from(shape));
    // Zero padding commutes with the bias-free 1x1 down conv, so the mid conv pads.
    let hidden = pointwise(x, down);
    let hidden = conv_nd(hidden, mid, conv.stride, conv.padding, conv.dilation, 1);
    // Scaling the small up factor, not the branch output, saves a full-size pass.
    pointwise(hidden, up.mul_scalar(scale))
}

/// Trainable scalars at `rank` on a weight `[t, c, k..]`: `r·(c + t) + r²·K`. Saturating.
pub fn param_count(shape: &[usize], rank: usize) -> usize {
    let [t, c, kernel @ ..] = shape else { return 0 };
    rank.saturating_mul(c.saturating_add(*t))
        .saturating_add(rank.saturating_mul(rank).saturating_mul(product(kernel)))
}

/// The largest rank on a weight `[t, c, k..]`: `min(t, c)`.
pub fn rank_limit(shape: &[usize]) -> usize {
    channel_rank_limit(shape)
}
