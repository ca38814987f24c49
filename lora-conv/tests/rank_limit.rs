//! `rank_limit` says exactly which ranks each adapter constructor accepts.

#![allow(clippy::unwrap_used, missing_docs)]

use burn::tensor::Device;
use lora_conv::functional::rank_limit;
use lora_conv::{AnyAdapter, ConvGeometry, ConvVariant};
use lora_core::AdapterSpec;

#[test]
fn rank_limit_matches_the_constructors() {
    let device = Device::flex();
    let geometries = [
        ConvGeometry::new(1, 16, vec![3, 3]),
        ConvGeometry::new(16, 4, vec![3, 3]),
        ConvGeometry::new(8, 8, vec![1, 5]),
        ConvGeometry::new(3, 6, vec![3, 3, 3]),
        ConvGeometry {
            groups: 4,
            ..ConvGeometry::new(8, 8, vec![3])
        },
    ];
    for g in &geometries {
        for variant in [ConvVariant::Hf, ConvVariant::Tucker2, ConvVariant::Cp] {
            let limit = rank_limit(variant, g);
            let build = |rank| {
                AnyAdapter::conv(
                    variant,
                    "w",
                    &g.weight_shape(),
                    &AdapterSpec::new(rank, 1.0),
                    &device,
                )
            };
            assert!(build(limit).is_ok(), "{variant:?} {g:?} rank {limit}");
            assert!(
                build(limit + 1).is_err(),
                "{variant:?} {g:?} rank {}",
                limit + 1
            );
        }
    }
}
