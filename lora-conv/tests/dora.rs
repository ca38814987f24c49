//! DoRA as a trainable type: attaching changes nothing (the magnitude starts at `‖W‖`), an
//! output channel whose weight is all zero stays finite, and the layer's display names the
//! type, rank, scale and mode. Its maths against PEFT's is checked by lora-files's fixture test,
//! and weight-space == bypass, merge and unmerge by the geometry grid.

#![allow(clippy::unwrap_used, missing_docs)]

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::{AnyAdapter, ConvFactory, ConvVariant, ForwardMode, LoraConvConfig, conv_config};
use lora_core::{LoraParam, attach, merge, unmerge};

fn conv(device: &Device) -> Conv2d {
    Conv2dConfig::new([4, 6], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device)
}

#[test]
fn attaching_dora_leaves_the_output_unchanged() {
    let device = Device::flex();
    device.seed(11);
    let base = conv(&device);
    let x = Tensor::<4>::random([2, 4, 7, 7], Distribution::Normal(0.0, 1.0), &device);
    let adapted = attach(
        &base,
        &conv_config(2, 4.0),
        &ConvFactory::new(ConvVariant::Dora),
    )
    .unwrap();
    let (a, b) = (adapted.forward(x.clone()), base.forward(x.clone()));
    let scale = b.clone().abs().max().into_scalar::<f32>();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    // m ⊙ W / ‖W‖ with m = ‖W‖: W up to f32 rounding.
    assert!(
        diff <= 1e-5 * scale,
        "attached DoRA moved the output by {diff}"
    );
    // Merge keeps the output, unmerge gives W back.
    let merged = merge(&adapted).unwrap();
    let diff = (merged.forward(x.clone()) - adapted.forward(x))
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff <= 1e-5 * scale, "merged DoRA differs by {diff}");
    let back = unmerge(&merged).unwrap();
    let diff = (back.weight.base() - base.weight.val())
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff <= 1e-6, "unmerged base differs by {diff}");
}

#[test]
fn a_zero_output_channel_stays_finite() {
    let device = Device::flex();
    device.seed(12);
    let base = conv(&device);
    // Output channel 0 has an all-zero kernel: ‖V‖ = 0 there at attach.
    let weight = base.weight.val();
    let mask = Tensor::<4>::ones([1, 4, 3, 3], &device);
    let zeroed = weight.slice_assign([0..1, 0..4, 0..3, 0..3], mask.mul_scalar(0.0));
    let base = Conv2d {
        weight: Param::from_tensor(zeroed),
        ..base
    };
    let x = Tensor::<4>::random([2, 4, 7, 7], Distribution::Normal(0.0, 1.0), &device);
    for mode in [ForwardMode::WeightSpace, ForwardMode::Bypass] {
        let layer = LoraConvConfig::new(ConvVariant::Dora, 2, 4.0)
            .with_mode(mode)
            .init("c", base.clone(), &device)
            .unwrap();
        let y = layer.forward(x.clone());
        let finite = y.is_finite().all().into_scalar::<bool>();
        assert!(finite, "{mode}: a zero channel made the output non-finite");
    }
    let adapted = attach(
        &base,
        &conv_config(2, 4.0),
        &ConvFactory::new(ConvVariant::Dora),
    )
    .unwrap();
    assert!(adapted.forward(x).is_finite().all().into_scalar::<bool>());
}

#[test]
fn the_layer_and_its_reparameterization_show_their_settings() {
    let device = Device::flex();
    let layer = LoraConvConfig::new(ConvVariant::Dora, 2, 4.0)
        .with_mode(ForwardMode::Bypass)
        .init("c", conv(&device), &device)
        .unwrap();
    let shown = format!("{layer}");
    for needle in ["type: dora", "rank: 2", "scale: 2", "mode: Bypass"] {
        assert!(shown.contains(needle), "{needle} missing from {shown}");
    }
    let adapted = attach(
        &conv(&device),
        &conv_config(2, 4.0),
        &ConvFactory::new(ConvVariant::Dora),
    )
    .unwrap();
    let merged = merge(&adapted).unwrap();
    let lora = merged
        .weight
        .reparameterization::<LoraParam<AnyAdapter>>()
        .unwrap();
    let shown = format!("{lora}");
    for needle in ["type: dora", "rank: 2", "merged: true"] {
        assert!(shown.contains(needle), "{needle} missing from {shown}");
    }
}
