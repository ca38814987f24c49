//! Rank bounds: up to which rank is a variant smaller than the full kernel, and Tucker-2
//! smaller than LoCon?
//!
//! Ground truth is an exact integer search over the parameter counts of [`param_count`] (each
//! type's own, through its [`ConvVariant`]). The
//! design document's closed forms (for groups = 1, `K = k^d`) are given beside it:
//! - LoCon < full      ⟺ `r < t·s·K / (s·K + t)`
//! - Tucker-2 < full ⟺ `r < (−(t+s)/K + sqrt((t+s)²/K² + 4·s·t)) / 2`
//! - CP < full      ⟺ `r < t·s·K / (s + t + Σ k_j)` (not in the document)
//! - Tucker-2 < LoCon  ⟺ `r < s·(K − 1)/K`
//!
//! and its "stricter" (never larger) bounds:
//! - LoCon: `r < min(t,s)²/max(t,s) · K/(K+1)`
//! - Tucker-2: `r < −max(t,s)/K + min(t,s)·sqrt(1/K² + 1)`
//!
//! For `t = s` and a 3x3 kernel they give the document's worked example: LoCon pays off below
//! `0.9·s`, Tucker-2 below `0.89·s`, and Tucker-2 beats LoCon below `0.88·s`.

mod count;

pub use count::{full_count, param_count};

use crate::geometry::ConvGeometry;
use crate::variant::ConvVariant;

/// The largest rank whose count, given by the increasing function `count`, is strictly below
/// `limit`; 0 when even rank 1 is not. Exact (binary search on integers).
pub fn largest_rank_below(limit: usize, count: impl Fn(usize) -> usize) -> usize {
    // count(r) >= r for every variant, so the answer is below `limit`.
    let (mut lo, mut hi) = (0usize, limit);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if count(mid) < limit {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo
}

/// The largest rank an adapter of `variant` accepts on this geometry (what its constructor
/// checks): see [`kernel_rank_limit`].
pub fn rank_limit(variant: ConvVariant, geometry: &ConvGeometry) -> usize {
    kernel_rank_limit(variant, &geometry.weight_shape())
}

/// The largest rank an adapter of `variant` accepts on a kernel of shape `[t, s/g, k..]` (the
/// type's own [`crate::ConvAdapter::rank_limit`]): `min(t, (s/g)·K)` for LoCon, `min(t, s/g)`
/// for Tucker-2, and for CP the product of every mode but the largest (the generic bound on
/// tensor rank). 0 for a shape with fewer than two axes.
pub fn kernel_rank_limit(variant: ConvVariant, shape: &[usize]) -> usize {
    variant.rank_limit(shape)
}

/// The largest rank at which `variant` has strictly fewer parameters than the full kernel.
/// No cap at `min(s, t)`.
pub fn max_rank(variant: ConvVariant, geometry: &ConvGeometry) -> usize {
    largest_rank_below(full_count(geometry), |r| param_count(variant, geometry, r))
}

/// The largest rank at which Tucker-2 has strictly fewer parameters than LoCon (exact).
pub fn max_rank_tucker2_below_locon(geometry: &ConvGeometry) -> usize {
    // r²K + r(c+t) < r(cK + t)  ⟺  r·K < c·(K − 1)  for r ≥ 1.
    // A zero-size kernel (K = 0) gives 0 instead of an underflow.
    let (c, k) = (geometry.in_per_group(), geometry.kernel_volume());
    c.saturating_mul(k.saturating_sub(1)).saturating_sub(1) / k.max(1)
}

/// The real-valued thresholds `x` of the closed forms: a rank pays off iff `r < x`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClosedForm {
    /// LoCon < full.
    pub locon: f64,
    /// Tucker-2 < full.
    pub tucker2: f64,
    /// CP < full.
    pub cp: f64,
    /// Tucker-2 < LoCon.
    pub tucker2_below_locon: f64,
    /// The document's stricter LoCon bound.
    pub locon_strict: f64,
    /// The document's stricter Tucker-2 bound.
    pub tucker2_strict: f64,
}

/// The document's closed forms, with `s` read as the input channels per group.
pub fn closed_form(geometry: &ConvGeometry) -> ClosedForm {
    let t = geometry.out_channels as f64;
    let s = geometry.in_per_group() as f64;
    let k = geometry.kernel_volume() as f64;
    let sum_k = geometry.kernel.iter().sum::<usize>() as f64;
    let (big, small) = (t.max(s), t.min(s));
    ClosedForm {
        locon: t * s * k / (s * k + t),
        tucker2: (-(t + s) / k + ((t + s).powi(2) / (k * k) + 4.0 * s * t).sqrt()) / 2.0,
        cp: t * s * k / (s + t + sum_k),
        tucker2_below_locon: s * (k - 1.0) / k,
        locon_strict: small * small / big * k / (k + 1.0),
        tucker2_strict: -big / k + small * (1.0 / (k * k) + 1.0).sqrt(),
    }
}

/// The largest integer strictly below `x` (0 if none is positive).
pub fn largest_integer_below(x: f64) -> usize {
    if x <= 1.0 {
        return 0;
    }
    let f = x.ceil() - 1.0;
    f as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: the largest r with count(r) < limit, by walking up from 1.
    fn walk(limit: usize, count: impl Fn(usize) -> usize) -> usize {
        let mut r = 0;
        while count(r + 1) < limit {
            r += 1;
        }
        r
    }

    fn grid() -> Vec<ConvGeometry> {
        let mut out = vec![];
        for t in [1, 2, 3, 8, 16, 33, 64, 128] {
            for s in [1, 3, 8, 16, 64, 100] {
                for kernel in [
                    vec![1, 1],
                    vec![3, 3],
                    vec![5, 5],
                    vec![3],
                    vec![3, 3, 3],
                    vec![1, 7],
                ] {
                    out.push(ConvGeometry::new(s, t, kernel));
                }
            }
        }
        out
    }

    /// `x` is a closed-form threshold; `exact` the searched answer. At an integer boundary the
    /// float may land on either side, so only there one step of slack is allowed.
    fn agrees(x: f64, exact: usize) -> bool {
        let near_integer = (x - x.round()).abs() < 1e-9;
        largest_integer_below(x) == exact
            || (near_integer && largest_integer_below(x + 1e-6) == exact)
    }

    #[test]
    fn search_is_exact_against_brute_force() {
        for g in grid() {
            for v in ConvVariant::DECOMPOSITIONS {
                let full = full_count(&g);
                assert_eq!(
                    max_rank(v, &g),
                    walk(full, |r| param_count(v, &g, r)),
                    "{v} {g:?}"
                );
            }
            let tucker_vs_locon = walk(usize::MAX, |r| {
                if param_count(ConvVariant::Tucker2, &g, r) < param_count(ConvVariant::LoCon, &g, r)
                {
                    0
                } else {
                    usize::MAX
                }
            });
            assert_eq!(max_rank_tucker2_below_locon(&g), tucker_vs_locon, "{g:?}");
        }
    }

    #[test]
    fn closed_forms_agree_with_the_search_and_strict_bounds_never_exceed_it() {
        for g in grid() {
            let cf = closed_form(&g);
            let locon = max_rank(ConvVariant::LoCon, &g);
            let tucker2 = max_rank(ConvVariant::Tucker2, &g);
            assert!(
                agrees(cf.locon, locon),
                "locon {g:?}: {} vs {locon}",
                cf.locon
            );
            assert!(
                agrees(cf.tucker2, tucker2),
                "tucker2 {g:?}: {} vs {tucker2}",
                cf.tucker2
            );
            assert!(agrees(cf.cp, max_rank(ConvVariant::Cp, &g)), "cp {g:?}");
            assert!(
                agrees(cf.tucker2_below_locon, max_rank_tucker2_below_locon(&g)),
                "{g:?}"
            );
            // The stricter bounds are never above the exact thresholds.
            assert!(cf.locon_strict <= cf.locon + 1e-9, "locon strict {g:?}");
            assert!(
                cf.tucker2_strict <= cf.tucker2 + 1e-9,
                "tucker2 strict {g:?}"
            );
            assert!(largest_integer_below(cf.locon_strict) <= locon);
            assert!(largest_integer_below(cf.tucker2_strict) <= tucker2);
        }
    }

    #[test]
    fn reproduces_the_documents_worked_example() {
        // t = s, 3x3: LoCon below 0.9·s, Tucker-2 below 0.89·s, Tucker-2 beats LoCon below 0.88·s
        // (the document truncates to two decimals).
        let s = 1000;
        let g = ConvGeometry::new(s, s, vec![3, 3]);
        let truncated = |r: usize| ((r + 1) * 100 / s) as f64 / 100.0;
        assert_eq!(truncated(max_rank(ConvVariant::LoCon, &g)), 0.90);
        assert_eq!(truncated(max_rank(ConvVariant::Tucker2, &g)), 0.89);
        assert_eq!(truncated(max_rank_tucker2_below_locon(&g)), 0.88);
        let cf = closed_form(&g);
        assert!((cf.locon / s as f64 - 0.9).abs() < 1e-12);
        assert!((cf.tucker2 / s as f64 - 0.8950).abs() < 1e-4);
        assert!((cf.tucker2_below_locon / s as f64 - 8.0 / 9.0).abs() < 1e-12);
    }
}
