//! Parameter counts of each variant, groups included.
//!
//! With `c = s/g` input channels per group and `K = Π k_j`:
//! - full kernel: `t·c·K`
//! - LoCon: `r·(c·K + t)`
//! - Tucker-2: `r·(c + t) + r²·K`
//! - CP: `r·(c + t + Σ k_j)`

use crate::geometry::ConvGeometry;
use crate::variant::ConvVariant;

/// Scalars in the full kernel `[t, s/g, k..]` (bias excluded).
///
/// Saturates at `usize::MAX` instead of overflowing.
pub fn full_count(geometry: &ConvGeometry) -> usize {
    geometry
        .out_channels
        .saturating_mul(geometry.in_per_group())
        .saturating_mul(geometry.kernel_volume())
}

/// Trainable scalars of `variant` at `rank` on a layer of this geometry (the type's own
/// [`crate::ConvAdapter::param_count`] on the kernel shape).
///
/// Saturates at `usize::MAX` instead of overflowing, so it stays non-decreasing in `rank` (what
/// the rank searches of [`super`] rely on) for any input.
pub fn param_count(variant: ConvVariant, geometry: &ConvGeometry, rank: usize) -> usize {
    variant.param_count(&geometry.weight_shape(), rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_formulas_on_a_worked_layer() {
        // 64 -> 128, 3x3, groups 2: c = 32, K = 9.
        let g = ConvGeometry {
            groups: 2,
            ..ConvGeometry::new(64, 128, vec![3, 3])
        };
        assert_eq!(full_count(&g), 128 * 32 * 9);
        assert_eq!(param_count(ConvVariant::LoCon, &g, 4), 4 * (32 * 9 + 128));
        assert_eq!(param_count(ConvVariant::Tucker2, &g, 4), 4 * 160 + 16 * 9);
        assert_eq!(param_count(ConvVariant::Cp, &g, 4), 4 * (32 + 128 + 6));
    }
}
