//! LoHa (LyCORIS; Hyeon-Woo et al. 2022, FedPara): the Hadamard product of two low-rank
//! products, `ΔW = (w1_a · w1_b) ⊙ (w2_a · w2_b)`. No bypass form cheaper than one conv with
//! the recomposed update.
//!
//! # Shapes
//! With `c = s/g` (or `in` for a linear weight) and `K = Π k_j` (1 for a linear weight):
//! - `w1_a`, `w2_a`: `[t, r]`; `w1_b`, `w2_b`: `[r, c·K]`
//! - update: `[t, c·K]`

use burn::tensor::Tensor;

use super::shape::{matrix_rank_limit, product};

/// `scale · (w1_a · w1_b) ⊙ (w2_a · w2_b)`, `[t, c·K]`.
///
/// # Shapes
/// - `w1_a`, `w2_a`: `[t, r]`, `w1_b`, `w2_b`: `[r, c·K]` -> `[t, c·K]`
pub fn delta(
    w1_a: Tensor<2>,
    w1_b: Tensor<2>,
    w2_a: Tensor<2>,
    w2_b: Tensor<2>,
    scale: f64,
) -> Tensor<2> {
    hadamard(w1_a.mul_scalar(scale).matmul(w1_b), w2_a.matmul(w2_b))
}

/// The element-wise product of the two (already recomposed) factors of a LoHa update.
///
/// # Shapes
/// - `first`, `second`: `[t, n]` -> `[t, n]`
pub fn hadamard(first: Tensor<2>, second: Tensor<2>) -> Tensor<2> {
    first * second
}

/// Trainable scalars at `rank` on a weight `[t, c, k..]`: `2·r·(c·K + t)`. Saturating.
pub fn param_count(shape: &[usize], rank: usize) -> usize {
    let [t, rest @ ..] = shape else { return 0 };
    rank.saturating_mul(2)
        .saturating_mul(product(rest).saturating_add(*t))
}

/// The largest rank on a weight `[t, c, k..]`: `min(t, c·K)`.
pub fn rank_limit(shape: &[usize]) -> usize {
    matrix_rank_limit(shape)
}
