//! The pure maths of turning a parameter budget into ranks ([`crate::budget`] applies it):
//! the two rank searches, and the singular values of a kernel's unfolding and the energy they
//! carry, in `f64`, in plain Rust.
//!
//! A kernel `K [t, s/g, k_1..k_d]` unfolds (row-major, as it is stored) to the matrix
//! `[t, (s/g)·Π k_j]` whose rows are the output channels: the matrix LoCon's update
//! `up·down` is a low-rank approximation of. Its singular values `σ_1 ≥ σ_2 ≥ ..` say how
//! much of the kernel's energy `‖K‖² = Σ σ_i²` a rank-`r` matrix can hold:
//! `Σ_{i≤r} σ_i²` (Eckart–Young).
//!
//! [`singular_values`] is a one-sided (Hestenes) Jacobi SVD: it rotates pairs of columns (of the
//! matrix or of its transpose, whichever has fewer) until they are orthogonal, then reads the
//! singular values off their norms.
//! Its error is a small multiple of `ε·σ_1` (the tests check 1e-9 on known matrices). It costs
//! `O(min(m,n)²·max(m,n))` per sweep, with typically 6 to 10 sweeps: about 2·10⁹ flop for a
//! `256 -> 256` 3x3 kernel.

use burn::tensor::Tensor;
use lora_core::{LoraError, Result};

/// Most sweeps before giving up on convergence (one-sided Jacobi converges quadratically;
/// real matrices need about 10).
const MAX_SWEEPS: usize = 60;

/// The singular values of the row-major `rows x cols` matrix `data`, in descending order,
/// `min(rows, cols)` of them (0 when either side is 0). `path` names the matrix in errors.
///
/// # Errors
/// - [`LoraError::ShapeMismatch`] naming `path` when `data.len() != rows·cols`;
/// - [`LoraError::UnsupportedGeometry`] naming `path` and the first offending entry when an
///   entry is NaN or infinite.
pub fn singular_values(path: &str, data: &[f64], rows: usize, cols: usize) -> Result<Vec<f64>> {
    if rows.checked_mul(cols) != Some(data.len()) {
        return Err(LoraError::ShapeMismatch {
            path: path.to_string(),
            expected: vec![rows, cols],
            actual: vec![data.len()],
        });
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(LoraError::UnsupportedGeometry {
            path: path.to_string(),
            reason: format!(
                "entry ({}, {}) of the {rows}x{cols} matrix is {}; singular values need finite \
                 values",
                i / cols.max(1),
                i % cols.max(1),
                data[i]
            ),
        });
    }
    // Vectors to orthogonalize: the columns when there are no more columns than rows, else the
    // rows (the singular values of A and Aᵀ are the same). Each is contiguous.
    let mut vectors: Vec<Vec<f64>> = if cols <= rows {
        (0..cols)
            .map(|j| (0..rows).map(|i| data[i * cols + j]).collect())
            .collect()
    } else {
        data.chunks(cols).map(<[f64]>::to_vec).collect()
    };
    orthogonalize(&mut vectors);
    let mut values: Vec<f64> = vectors.iter().map(|v| dot(v, v).sqrt()).collect();
    values.sort_by(|a, b| b.total_cmp(a));
    Ok(values)
}

/// Rotate pairs of `vectors` (Jacobi rotations) until every pair is orthogonal to working
/// precision; their norms are then the singular values of the matrix they were the columns of.
fn orthogonalize(vectors: &mut [Vec<f64>]) {
    let n = vectors.len();
    let len = vectors.first().map_or(0, Vec::len);
    let tol = f64::EPSILON * (len.max(1) as f64).sqrt();
    for _ in 0..MAX_SWEEPS {
        let mut rotated = false;
        for i in 0..n {
            for j in i + 1..n {
                let (left, right) = vectors.split_at_mut(j);
                let (a, b) = (&mut left[i], &mut right[0]);
                let (alpha, beta, gamma) = (dot(a, a), dot(b, b), dot(a, b));
                // Orthogonal enough: |a·b| <= tol·‖a‖‖b‖ (also true when either is zero).
                if gamma.abs() <= tol * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                // The rotation that zeroes a·b (Golub & Van Loan §8.5, applied to the Gram
                // matrix's 2x2 block [[alpha, gamma], [gamma, beta]]).
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for (x, y) in a.iter_mut().zip(b.iter_mut()) {
                    let (xa, yb) = (*x, *y);
                    *x = c * xa - s * yb;
                    *y = s * xa + c * yb;
                }
            }
        }
        if !rotated {
            return;
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The singular values (descending) of a kernel `[t, s/g, k..]` unfolded to `[t, (s/g)·K]`,
/// read from `kernel` (any float dtype, any device) and computed in `f64`.
///
/// # Errors
/// [`LoraError::UnsupportedGeometry`] naming `path` for a tensor with fewer than two axes, one
/// whose values cannot be read as floats, or one with a NaN or infinite value.
pub fn kernel_singular_values<const N: usize>(path: &str, kernel: Tensor<N>) -> Result<Vec<f64>> {
    let unsupported = |reason: String| LoraError::UnsupportedGeometry {
        path: path.to_string(),
        reason,
    };
    let dims = kernel.dims();
    if N < 2 {
        return Err(unsupported(format!(
            "a kernel {dims:?} needs output and input axes"
        )));
    }
    let data = kernel
        .into_data()
        .try_into_vec_as::<f64>()
        .map_err(|e| unsupported(format!("kernel values cannot be read as floats: {e}")))?;
    let rows = dims.first().copied().unwrap_or(0);
    singular_values(path, &data, rows, data.len().checked_div(rows).unwrap_or(0))
}

/// Each singular value's share of the total energy, `σ_i² / Σ_j σ_j²`, in the order given
/// (they sum to 1). All zeros when the total is zero (a zero kernel holds no energy to
/// capture), and for an empty list an empty one.
pub fn energy_shares(singular_values: &[f64]) -> Vec<f64> {
    let total: f64 = singular_values.iter().map(|s| s * s).sum();
    singular_values
        .iter()
        .map(|s| if total > 0.0 { s * s / total } else { 0.0 })
        .collect()
}

/// The uniform rule of [`crate::budget`]: the rank of every layer (0: left out), given each
/// layer's largest admissible rank `caps[i]` (0: never adapted) and `cost(i, r)`, its
/// parameters at rank `r >= 1`, non-decreasing in `r`.
///
/// One rank `r` for all, `min(r, caps[i])` per layer, the largest whose total is within
/// `budget`. When rank 1 everywhere is over budget, the layers kept are the most that fit at
/// rank 1: cheapest at rank 1 first, the earlier on ties; the search then runs on them.
pub fn uniform_ranks(
    caps: &[usize],
    budget: usize,
    cost: impl Fn(usize, usize) -> usize,
) -> Vec<usize> {
    let total = |kept: &[usize], r: usize| {
        kept.iter().fold(0usize, |acc, &i| {
            acc.saturating_add(cost(i, r.min(caps[i])))
        })
    };
    let mut kept: Vec<usize> = (0..caps.len()).filter(|&i| caps[i] > 0).collect();
    if total(&kept, 1) > budget {
        kept.sort_by_key(|&i| (cost(i, 1), i));
        let mut spent = 0usize;
        kept.retain(|&i| {
            spent = spent.saturating_add(cost(i, 1));
            spent <= budget
        });
        kept.sort_unstable();
    }
    // The largest r in [0, max cap] with total(r) <= budget (total is non-decreasing in r).
    let (mut lo, mut hi) = (0usize, kept.iter().map(|&i| caps[i]).max().unwrap_or(0));
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if total(&kept, mid) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let mut ranks = vec![0; caps.len()];
    for &i in &kept {
        ranks[i] = lo.min(caps[i]);
    }
    ranks
}

/// The filled rule of [`crate::budget`]: `ranks` (from [`uniform_ranks`]) topped up. While
/// some step fits the budget left, the rank of one layer rises by one: among the layers below
/// their cap `caps[i]` whose step `cost(i, r + 1) − cost(i, r)` fits, the one with the lowest
/// current rank, then the cheapest step, then the earlier layer. So the spend ends within one
/// step of the budget and the ranks stay as even as the caps allow.
pub fn fill_ranks(
    mut ranks: Vec<usize>,
    caps: &[usize],
    budget: usize,
    cost: impl Fn(usize, usize) -> usize,
) -> Vec<usize> {
    let cost = |i: usize, r: usize| if r == 0 { 0 } else { cost(i, r) };
    let mut spent = (0..ranks.len()).fold(0usize, |acc, i| acc.saturating_add(cost(i, ranks[i])));
    loop {
        let best = (0..ranks.len())
            .filter(|&i| ranks[i] < caps[i])
            .map(|i| {
                (
                    ranks[i],
                    cost(i, ranks[i] + 1).saturating_sub(cost(i, ranks[i])),
                    i,
                )
            })
            .filter(|&(_, step, _)| spent.saturating_add(step) <= budget)
            .min();
        let Some((_, step, i)) = best else {
            return ranks;
        };
        ranks[i] += 1;
        spent += step;
    }
}

/// The energy rule of [`crate::budget`]: the rank of every layer (0: left out), given each
/// layer's energy shares `shares[i]` (descending, as [`energy_shares`] of its singular
/// values), its largest admissible rank `caps[i]` and `cost(i, r)`, its parameters at rank
/// `r >= 1` (rank 0 costs nothing).
///
/// From rank 0 everywhere, it raises by one the rank of the layer whose next step has the
/// largest `shares[i][r] / (cost(i, r + 1) − cost(i, r))` (a share past the list's end is 0)
/// among the steps within `caps[i]` and the budget left; ties go to the lower current rank,
/// then the earlier layer. It stops when no step fits.
pub fn energy_ranks(
    shares: &[Vec<f64>],
    caps: &[usize],
    budget: usize,
    cost: impl Fn(usize, usize) -> usize,
) -> Vec<usize> {
    let cost = |i: usize, r: usize| if r == 0 { 0 } else { cost(i, r) };
    let mut ranks = vec![0; caps.len()];
    let mut spent = 0usize;
    loop {
        // (layer, priority, step cost) of the best step that fits.
        let mut best: Option<(usize, f64, usize)> = None;
        for (i, &r) in ranks.iter().enumerate() {
            if r >= caps[i] {
                continue;
            }
            let step = cost(i, r + 1).saturating_sub(cost(i, r)).max(1);
            if spent.saturating_add(step) > budget {
                continue;
            }
            let share = shares.get(i).and_then(|s| s.get(r)).copied().unwrap_or(0.0);
            let priority = share / step as f64;
            if best.is_none_or(|(j, p, _)| priority > p || (priority == p && r < ranks[j])) {
                best = Some((i, priority, step));
            }
        }
        let Some((i, _, step)) = best else {
            return ranks;
        };
        ranks[i] += 1;
        spent += step;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rank_one_matrix_has_one_nonzero_singular_value() {
        // u vᵀ with ‖u‖ = 5 (3, 4), ‖v‖ = 13 (5, 12, 0): σ = 65, 0.
        let (u, v) = ([3.0, 4.0], [5.0, 12.0, 0.0]);
        let data: Vec<f64> = u
            .iter()
            .flat_map(|a| v.iter().map(move |b| a * b))
            .collect();
        let sv = singular_values("m", &data, 2, 3).unwrap();
        assert_eq!(sv.len(), 2);
        assert!((sv[0] - 65.0).abs() < 1e-12, "{sv:?}");
        assert!(sv[1].abs() < 1e-12, "{sv:?}");
    }

    #[test]
    fn bad_input_is_refused_naming_the_matrix() {
        let err = singular_values("k", &[1.0; 5], 2, 3).unwrap_err();
        assert!(err.to_string().contains("`k`"), "{err}");
        let err = singular_values("k", &[1.0, f64::NAN], 1, 2).unwrap_err();
        assert!(err.to_string().contains("(0, 1)"), "{err}");
        assert!(singular_values("k", &[], 0, 4).unwrap().is_empty());
    }

    #[test]
    fn shares_sum_to_one_and_a_zero_spectrum_has_none() {
        let shares = energy_shares(&[3.0, 4.0]);
        assert!((shares[0] - 0.36).abs() < 1e-15 && (shares[1] - 0.64).abs() < 1e-15);
        assert_eq!(energy_shares(&[0.0, 0.0]), vec![0.0, 0.0]);
    }
}
