//! CP (canonical polyadic; Lebedev et al. 2014, arXiv 1412.6553), one factor per mode of the
//! kernel: `ΔK[t, s, i_1..i_d] = Σ_r U[t, r] · V[r, s] · Π_j F_j[i_j, r]`.
//!
//! # Shapes
//! With `c = s/g` and `K = Π k_j`:
//! - `up` (U): `[t, r]`, `down` (V): `[r, c]`, `spatial[j]` (F_j): `[k_j, r]`
//! - update: `[t, c·K]`, in the order of the kernel `[t, c, k..]`

use burn::tensor::{Shape, Tensor};

use super::conv::{ConvArgs, conv_nd, pointwise};
use super::shape::{product, sum};

/// `scale·ΔK` flattened as `[t, c·K]`: a Khatri-Rao product over the spatial factors, then one
/// matmul.
///
/// # Shapes
/// - `up`: `[t, r]`, `down`: `[r, c]`, `spatial[j]`: `[k_j, r]` -> `[t, c·K]`
pub fn delta(up: Tensor<2>, down: Tensor<2>, spatial: &[Tensor<2>], scale: f64) -> Tensor<2> {
    let [t, r] = up.dims();
    let [_, c] = down.dims();
    // S[r, i_1..i_d] = scale · Π_j F_j[i_j, r], built as a Khatri-Rao product over the axes.
    // The scale rides on the first (smallest) factor, and the product starts from it rather
    // than from ones: each op here costs more in dispatch than in arithmetic at these sizes.
    let mut axes = spatial.iter();
    let mut s = match axes.next() {
        Some(f) => f.clone().transpose().mul_scalar(scale),
        None => Tensor::<2>::full([r, 1], scale, &up.device()),
    };
    for f in axes {
        let [k, _] = f.dims();
        let p = s.dims()[1];
        s = (s.reshape([r, p, 1]) * f.clone().transpose().reshape([r, 1, k])).reshape([r, p * k]);
    }
    let kv = s.dims()[1];
    // VS[r, s, k] = V[r, s] S[r, k]
    let vs = down.reshape([r, c, 1]) * s.reshape([r, 1, kv]);
    up.matmul(vs.reshape([r, c * kv])).reshape([t, c * kv])
}

/// The bypass branch `conv(x, scale·ΔK)` from the factors: a 1x1 conv c -> r (V), one
/// depthwise conv per spatial axis (F_j, with the base's stride, padding and dilation on that
/// axis), a 1x1 conv r -> t (U).
///
/// # Shapes
/// - `x`: `[B, c, ..d]`, factors as [`delta`] with `d = N − 2` spatial factors ->
///   `[B, t, ..d']`
pub fn branch<const N: usize>(
    x: Tensor<N>,
    up: Tensor<2>,
    down: Tensor<2>,
    spatial: &[Tensor<2>],
    scale: f64,
    conv: &ConvArgs,
) -> Tensor<N> {
    let d = N - 2;
    let mut hidden = pointwise(x, down);
    for (axis, factor) in spatial.iter().enumerate() {
        let [k, r] = factor.dims();
        // A depthwise kernel [r, 1, 1.., k, ..1] along this axis only.
        let mut shape = vec![r, 1];
        shape.extend((0..d).map(|j| if j == axis { k } else { 1 }));
        let w = factor
            .clone()
            .transpose()
            .reshape::<N, _>(Shape::from(shape));
        let along = |v: &[usize], other| -> Vec<usize> {
            (0..d)
                .map(|j| if j == axis { v[j] } else { other })
                .collect()
        };
        let pad: Vec<(usize, usize)> = (0..d)
            .map(|j| if j == axis { conv.padding[j] } else { (0, 0) })
            .collect();
        hidden = conv_nd(
            hidden,
            w,
            &along(conv.stride, 1),
            &pad,
            &along(conv.dilation, 1),
            r,
        );
    }
    // Scaling the small up factor, not the branch output, saves a full-size pass.
    pointwise(hidden, up.mul_scalar(scale))
}

/// Trainable scalars at `rank` on a kernel `[t, c, k..]`: `r·(c + t + Σ k_j)`. Saturating.
pub fn param_count(shape: &[usize], rank: usize) -> usize {
    let [t, c, kernel @ ..] = shape else { return 0 };
    rank.saturating_mul(c.saturating_add(*t).saturating_add(sum(kernel)))
}

/// The largest rank on a kernel `[t, c, k..]`: the product of every mode but (one copy of) the
/// largest, the generic bound on tensor rank; 0 for fewer than two axes.
pub fn rank_limit(shape: &[usize]) -> usize {
    if shape.len() < 2 {
        return 0;
    }
    let largest = shape.iter().copied().enumerate().max_by_key(|&(_, x)| x);
    let rest: Vec<usize> = shape
        .iter()
        .enumerate()
        .filter(|&(i, _)| largest.is_none_or(|(j, _)| i != j))
        .map(|(_, &x)| x)
        .collect();
    product(&rest)
}
