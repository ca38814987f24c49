//! LoKr (LyCORIS; Yeh et al. 2023): the Kronecker product of a small full matrix and a
//! (low-rank) one, `ΔW = w1 ⊗ w2`. With `w1 [a, c1]` and `w2 [b, c2, k..]`,
//! `ΔW[i·b + j, p·c2 + q, k..] = w1[i, p] · w2[j, q, k..]`, for a weight `[t, c, k..]` with
//! `t = a·b`, `c = c1·c2`. The spatial axes live in `w2`. No bypass form cheaper than one conv
//! with the recomposed update.
//!
//! # Shapes
//! - `w1`: `[a, c1]`; `w2`: `[b, c2·K]` (its own factors multiplied out)
//! - update: `[a·b, c1·c2·K]` = `[t, c·K]`

use burn::tensor::Tensor;

use super::shape::product;

/// `n = m · (n / m)` with `m` the largest divisor of `n` not above `sqrt(n)` (LyCORIS's
/// default `factorization(n, -1)`). Sizes above 2³² (no layer has that many channels) are not
/// split: `(1, n)`, which keeps the search bounded.
pub fn split(n: usize) -> (usize, usize) {
    let root = n.isqrt();
    if root > 1 << 16 {
        return (1, n);
    }
    let m = (1..=root.max(1))
        .rev()
        .find(|m| n.is_multiple_of(*m))
        .unwrap_or(1);
    (m, n / m)
}

/// The Kronecker product of two matrices: `[a, c1] ⊗ [b, n]` = `[a·b, c1·n]`. With `w2`'s
/// spatial axes innermost (`n = c2·K`), its columns `(p, q, k..)` follow the kernel's
/// `(c, k..)` order.
///
/// # Shapes
/// - `w1`: `[a, c1]`, `w2`: `[b, n]` -> `[a·b, c1·n]`
pub fn kron(w1: Tensor<2>, w2: Tensor<2>) -> Tensor<2> {
    let [a, c1] = w1.dims();
    let [b, n] = w2.dims();
    // An outer product over the two factor pairs, then the row-major reshape that a Kronecker
    // product is.
    (w1.reshape([a, 1, c1, 1]) * w2.reshape([1, b, 1, n])).reshape([a * b, c1 * n])
}

/// `scale · w1 ⊗ w2`, `[t, c·K]` (the scale rides on the small `w1`).
///
/// # Shapes
/// - `w1`: `[a, c1]`, `w2`: `[b, c2·K]` -> `[a·b, c1·c2·K]`
pub fn delta(w1: Tensor<2>, w2: Tensor<2>, scale: f64) -> Tensor<2> {
    kron(w1.mul_scalar(scale), w2)
}

/// Trainable scalars at `rank` on a weight `[t, c, k..]` with the default split and a
/// low-rank `w2`: `a·c1 + r·(b + c2·K)`. Saturating.
pub fn param_count(shape: &[usize], rank: usize) -> usize {
    let [t, c, kernel @ ..] = shape else { return 0 };
    let ((a, b), (c1, c2)) = (split(*t), split(*c));
    a.saturating_mul(c1)
        .saturating_add(rank.saturating_mul(b.saturating_add(c2.saturating_mul(product(kernel)))))
}

/// The largest rank of the low-rank `w2 [b, c2·K]` on a weight `[t, c, k..]`:
/// `min(b, c2·K)`.
pub fn rank_limit(shape: &[usize]) -> usize {
    let [t, c, kernel @ ..] = shape else { return 0 };
    let (b, c2) = (split(*t).1, split(*c).1);
    b.min(c2.saturating_mul(product(kernel)))
}
