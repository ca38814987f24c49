//! Whole-network inflation: centre mode is exact on every depth slice for any volume; mean mode
//! is exact only for depth-constant volumes, and the tests tell the two apart.
//!
//! Tolerance: `EXACT_PER_SLICE`, 1e-5 of the largest output magnitude with an absolute floor
//! of 1e-6 (the inflated kernel has zeros off the centre slice, so only summation order
//! differs).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use common::{Net2d, grid, per_slice_check, slice, volume};
use lora_3d::{InflateMode, InflateOptions, inflate};
use lora_core::testing::{Tol, check_close};

const EXACT_PER_SLICE: Tol = Tol {
    rel: 1e-5,
    abs: 1e-6,
};

#[test]
fn centre_inflation_is_exact_per_slice() {
    let device = Device::flex();
    for (i, mid) in grid().iter().enumerate() {
        for depth in [1, 3, 5] {
            let net2d = Net2d::new(mid, &device);
            let net3d = inflate(net2d.clone(), &InflateOptions::new(depth)).unwrap();
            assert_eq!(net3d.c2.kernel_size[0], depth);
            let x = volume(4, &device);
            if let Err(e) = per_slice_check(&net2d, &net3d, &x, EXACT_PER_SLICE) {
                panic!("grid {i} {mid:?}, kd {depth}: {e}");
            }
        }
    }
}

#[test]
fn mean_inflation_is_exact_only_for_depth_constant_volumes() {
    let device = Device::flex();
    for (i, mid) in grid().iter().enumerate() {
        let net2d = Net2d::new(mid, &device);
        // Valid depth padding: every output slice sees only real input slices.
        let options = InflateOptions::new(3)
            .with_mode(InflateMode::Mean)
            .with_depth_padding(0);
        let net3d = inflate(net2d.clone(), &options).unwrap();

        // A depth-constant volume: the 2D image repeated over 9 slices. Three convs of depth 3
        // with no depth padding leave 3 slices, each equal to the 2D net on the image.
        let image = Tensor::<4>::random([2, 2, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        let constant = image.clone().unsqueeze_dim::<5>(2).repeat_dim(2, 9);
        let y3 = net3d.forward(constant);
        let want = net2d.forward(image);
        let [b, k, d, _, _] = y3.dims();
        assert_eq!(d, 3);
        for s in 0..d {
            let got = y3
                .clone()
                .slice([0..b, 0..k, s..s + 1, 0..1, 0..1])
                .reshape([b, k, 1, 1]);
            if let Err(e) = check_close(got, want.clone(), EXACT_PER_SLICE, "mean mode") {
                panic!("grid {i}: mean mode on a constant volume, slice {s}: {e}");
            }
        }

        // A volume that varies in depth: mean mode mixes neighbouring slices, centre does not.
        let x = volume(9, &device);
        let y3 = net3d.forward(x.clone());
        let mut differs = false;
        for s in 0..3 {
            // Output slice s of the valid-padded net is centred on input slice s + 3.
            let want = net2d.forward(slice(&x, s + 3));
            let got = y3
                .clone()
                .slice([0..b, 0..k, s..s + 1, 0..1, 0..1])
                .reshape([b, k, 1, 1]);
            // Far outside the tolerance: 100 times it.
            let loose = Tol {
                rel: 100.0 * EXACT_PER_SLICE.rel,
                abs: 100.0 * EXACT_PER_SLICE.abs,
            };
            differs |= check_close(got, want, loose, "mean mode").is_err();
        }
        assert!(
            differs,
            "grid {i}: mean mode should differ on a varying volume"
        );
    }
}

#[test]
fn inflated_conv_keeps_its_settings() {
    let device = Device::flex();
    let mid = &grid()[2];
    let net2d = Net2d::new(mid, &device);
    let options = InflateOptions::new(5);
    let c2 = inflate(net2d.c2.clone(), &options).unwrap();
    assert_eq!(c2.stride, [1, 1, 2]);
    assert_eq!(c2.dilation, [1, 2, 1]);
    assert_eq!(c2.groups, 2);
    assert_eq!(c2.kernel_size, [5, 3, 3]);
    assert_eq!(c2.padding, burn::nn::PaddingConfig3d::Explicit(2, 2, 0));
    // Bias copied exactly; the centre slice of the kernel is the 2D kernel, the rest zero.
    let b2 = net2d.c2.bias.as_ref().unwrap().val();
    assert_eq!(c2.bias.as_ref().unwrap().val().into_data(), b2.into_data());
    let w3 = c2.weight.val();
    let centre = w3
        .clone()
        .slice([0..8, 0..4, 2..3, 0..3, 0..3])
        .reshape([8, 4, 3, 3]);
    assert_eq!(centre.into_data(), net2d.c2.weight.val().into_data());
    let total = w3.abs().sum().into_scalar::<f32>();
    let kept = net2d.c2.weight.val().abs().sum().into_scalar::<f32>();
    assert!(
        (total - kept).abs() <= 1e-4 * kept,
        "off-centre slices must be zero"
    );
    // Batch norm statistics are carried over.
    let n1 = inflate(net2d.n1.clone(), &options).unwrap();
    assert_eq!(
        n1.running_var.value().into_data(),
        net2d.n1.running_var.value().into_data()
    );
}
