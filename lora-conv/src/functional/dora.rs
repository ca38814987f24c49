//! DoRA (Liu et al. 2024, arXiv 2402.09353): LoCon/LoRA with the weight decomposed into a
//! magnitude and a direction, `W' = m ⊙ V / ‖V‖` with `V = W + scale·ΔW` and the norm per
//! output channel. The update `ΔW` and the bypass branch are LoCon's ([`super::locon`]).
//!
//! # Shapes
//! - `magnitude` (`m`): `[t]`; `V`: `[t, c, k..]`

use burn::tensor::Tensor;

use super::locon;

/// The L2 norm of each row of `w` (its first axis), `[t]`, detached (as PEFT, `‖V‖` is a
/// constant in the backward pass).
///
/// # Shapes
/// - `w`: `[t, ..]` -> `[t]`
pub fn row_norms<const D: usize>(w: &Tensor<D>) -> Tensor<1> {
    let dims = w.dims();
    let t = dims.first().copied().unwrap_or(1);
    let n = dims.iter().skip(1).product::<usize>();
    w.clone()
        .detach()
        .reshape([t, n])
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .reshape([t])
}

/// `m / (‖V‖ + epsilon)` per output channel. A channel whose norm is 0 keeps `m` as its
/// factor (its output is 0 whatever the factor), not `m / 0`.
///
/// # Shapes
/// - `magnitude`: `[t]`, `norms`: `[t]` -> `[t]`
pub fn channel_scale(magnitude: Tensor<1>, norms: Tensor<1>, epsilon: f64) -> Tensor<1> {
    let norms = norms.add_scalar(epsilon);
    let zero = norms.clone().equal_elem(0.0);
    magnitude / norms.mask_fill(zero, 1.0)
}

/// Trainable scalars at `rank` on a weight `[t, c, k..]`: LoCon's `r·(c·K + t)` plus `t`.
pub fn param_count(shape: &[usize], rank: usize) -> usize {
    locon::param_count(shape, rank).saturating_add(shape.first().copied().unwrap_or(0))
}

/// The largest rank on a weight `[t, c, k..]`: LoCon's, `min(t, c·K)`.
pub fn rank_limit(shape: &[usize]) -> usize {
    locon::rank_limit(shape)
}
