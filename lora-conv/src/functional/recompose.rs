//! Recomposition of each conv adapter's update `ΔK` from its factors, with matmuls and
//! broadcasts only (no loop over channels or rank).
//!
//! Factor layouts (all 2-D, so one adapter type serves Conv1d/2d/3d; `c = s/groups`,
//! `K = Π k_j`):
//! - HF: `down [r, c·K]` (the kxk down conv, flattened), `up [t, r]`.
//! - Tucker-2: `down [r, c]`, `mid [r, r·K]` (the kxk r->r conv, flattened), `up [t, r]`.
//! - CP: `up [t, r]` (U), `down [r, c]` (V), one `[k_j, r]` factor per spatial axis.
//!
//! Every function returns `scale·ΔK` flattened as `[t, c·K]`, in the order of the kernel
//! `[t, c, k_1..k_d]` (row-major), ready to be reshaped to it.

use burn::tensor::Tensor;

/// HF (PEFT/diffusers): `ΔK[t, s, k] = Σ_r up[t, r] · down[r, s, k]`.
///
/// # Shapes
/// - `down`: `[r, c·K]`, `up`: `[t, r]` -> `[t, c·K]`
pub fn hf(down: Tensor<2>, up: Tensor<2>, scale: f64) -> Tensor<2> {
    // Scaling the small factor saves a pass over the [t, c·K] result.
    up.mul_scalar(scale).matmul(down)
}

/// Tucker-2 (LyCORIS `use_tucker`):
/// `ΔK[t, s, k] = Σ_p Σ_q up[t, p] · mid[p, q, k] · down[q, s]`.
///
/// # Shapes
/// - `down`: `[r, c]`, `mid`: `[r, r·K]`, `up`: `[t, r]` -> `[t, c·K]`
pub fn tucker2(down: Tensor<2>, mid: Tensor<2>, up: Tensor<2>, scale: f64) -> Tensor<2> {
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

/// CP (Lebedev et al. 2014): `ΔK[t, s, i_1..i_d] = Σ_r U[t, r] · V[r, s] · Π_j F_j[i_j, r]`.
///
/// # Shapes
/// - `up` (U): `[t, r]`, `down` (V): `[r, c]`, `spatial[j]` (F_j): `[k_j, r]` -> `[t, c·K]`
pub fn cp(up: Tensor<2>, down: Tensor<2>, spatial: &[Tensor<2>], scale: f64) -> Tensor<2> {
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
