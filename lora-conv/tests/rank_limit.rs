//! `rank_limit` says exactly which ranks each adapter constructor accepts, and its values are
//! the documented caps, checked against numbers written out by hand (not computed by the
//! library function the constructors also call).

#![allow(clippy::unwrap_used, missing_docs)]

use burn::tensor::Device;
use lora_conv::bounds::{kernel_rank_limit, rank_limit};
use lora_conv::{ConvGeometry, ConvVariant};
use lora_core::AdapterSpec;

/// `(geometry, [HF, Tucker-2, CP] caps)`, with the arithmetic spelled out:
/// - HF: `min(t, (s/g)·K)`;
/// - Tucker-2: `min(t, s/g)`;
/// - CP: the product of every mode of `[t, s/g, k..]` but the largest.
fn cases() -> Vec<(ConvGeometry, [usize; 3])> {
    vec![
        // [16, 1, 3, 3]: HF min(16, 1·9) = 9; Tucker-2 min(16, 1) = 1; CP 1·3·3 = 9.
        (ConvGeometry::new(1, 16, vec![3, 3]), [9, 1, 9]),
        // [4, 16, 3, 3]: HF min(4, 144) = 4; Tucker-2 min(4, 16) = 4; CP 4·3·3 = 36.
        (ConvGeometry::new(16, 4, vec![3, 3]), [4, 4, 36]),
        // [8, 8, 1, 5]: HF min(8, 40) = 8; Tucker-2 8; CP 8·1·5 = 40 (one 8 is the largest).
        (ConvGeometry::new(8, 8, vec![1, 5]), [8, 8, 40]),
        // [6, 3, 3, 3, 3]: HF min(6, 81) = 6; Tucker-2 min(6, 3) = 3; CP 3^4 = 81.
        (ConvGeometry::new(3, 6, vec![3, 3, 3]), [6, 3, 81]),
        // groups 4: [8, 2, 3]: HF min(8, 6) = 6; Tucker-2 min(8, 2) = 2; CP 2·3 = 6.
        (
            ConvGeometry {
                groups: 4,
                ..ConvGeometry::new(8, 8, vec![3])
            },
            [6, 2, 6],
        ),
        // [2, 5, 7]: HF min(2, 35) = 2; Tucker-2 min(2, 5) = 2; CP 2·5 = 10.
        (ConvGeometry::new(5, 2, vec![7]), [2, 2, 10]),
        // [3, 2, 1, 1]: HF min(3, 2) = 2; Tucker-2 2; CP 2·1·1 = 2.
        (ConvGeometry::new(2, 3, vec![1, 1]), [2, 2, 2]),
    ]
}

#[test]
fn rank_limit_is_the_documented_cap() {
    for (g, [hf, tucker2, cp]) in cases() {
        assert_eq!(rank_limit(ConvVariant::LoCon, &g), hf, "HF {g:?}");
        assert_eq!(
            rank_limit(ConvVariant::Tucker2, &g),
            tucker2,
            "Tucker-2 {g:?}"
        );
        assert_eq!(rank_limit(ConvVariant::Cp, &g), cp, "CP {g:?}");
    }
    // Shapes that are no kernel have no admissible rank.
    for variant in ConvVariant::BUILTIN {
        assert_eq!(kernel_rank_limit(variant, &[4]), 0);
        assert_eq!(kernel_rank_limit(variant, &[]), 0);
    }
}

#[test]
fn rank_limit_matches_the_constructors() {
    let device = Device::flex();
    for (g, caps) in cases() {
        for (variant, cap) in ConvVariant::BUILTIN.into_iter().zip(caps) {
            let build = |rank| {
                variant.build(
                    "w",
                    &g.weight_shape(),
                    &AdapterSpec::new(rank, 1.0),
                    &device,
                )
            };
            assert!(build(cap).is_ok(), "{variant:?} {g:?} rank {cap}");
            assert!(build(1).is_ok(), "{variant:?} {g:?} rank 1");
            let err = build(cap + 1).unwrap_err().to_string();
            assert!(
                err.contains(&format!("1..={cap}")),
                "{variant:?} {g:?} rank {}: {err}",
                cap + 1
            );
            assert!(build(0).is_err(), "{variant:?} {g:?} rank 0");
        }
    }
}
