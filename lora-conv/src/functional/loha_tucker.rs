//! LoHa with Tucker cores (LyCORIS `use_tucker` on a kernel with more than one tap): each of
//! the two Hadamard factors is a Tucker-2 product whose core keeps the spatial axes,
//! `ΔW = T(t1; w1_a, w1_b) ⊙ T(t2; w2_a, w2_b)` with
//! `T(t; a, b)[o, i, k..] = Σ_p Σ_q a[o, p] · t[p, q, k..] · b[q, i]`.
//!
//! # Shapes
//! With `c = s/g` and `K = Π k_j`:
//! - `w1_a`, `w2_a`: `[t, r]`; `w1_b`, `w2_b`: `[r, c]`; `t1`, `t2`: `[r, r·K]`
//! - update: `[t, c·K]`

use burn::tensor::Tensor;

use super::{loha, tucker2};

/// `scale · T(t1; w1_a, w1_b) ⊙ T(t2; w2_a, w2_b)`, `[t, c·K]`.
///
/// # Shapes
/// - `w1_a`, `w2_a`: `[t, r]`, `w1_b`, `w2_b`: `[r, c]`, `t1`, `t2`: `[r, r·K]` -> `[t, c·K]`
pub fn delta(
    [w1_a, w1_b, t1]: [Tensor<2>; 3],
    [w2_a, w2_b, t2]: [Tensor<2>; 3],
    scale: f64,
) -> Tensor<2> {
    loha::hadamard(
        tucker2::delta(w1_b, t1, w1_a, scale),
        tucker2::delta(w2_b, t2, w2_a, 1.0),
    )
}

/// Trainable scalars at `rank` on a kernel `[t, c, k..]`: two Tucker-2 factors,
/// `2·(r·t + r·c + r²·K)`. Saturating.
pub fn param_count(shape: &[usize], rank: usize) -> usize {
    tucker2::param_count(shape, rank).saturating_mul(2)
}

/// The largest rank on a kernel `[t, c, k..]` (at least one spatial axis): `min(t, c)`.
pub fn rank_limit(shape: &[usize]) -> usize {
    match shape {
        [t, c, _, ..] => (*t).min(*c),
        _ => 0,
    }
}
