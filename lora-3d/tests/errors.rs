//! Every error case of inflation gives its error, and names what is wrong.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig, Conv3d};
use burn::tensor::Device;
use common::{Net2d, grid};
use lora_3d::{
    Inflate, InflateError, InflateMode, InflateOptions, Inflation, inflate, inflate_adapter,
};
use lora_conv::{AnyAdapter, ConvFactory, ConvVariant, LoConAdapter, conv_config};
use lora_core::{AdapterSpec, LinearAdapter, attach};

fn conv(padding: PaddingConfig2d, stride: [usize; 2], kernel: [usize; 2]) -> Conv2d {
    Conv2dConfig::new([2, 4], kernel)
        .with_padding(padding)
        .with_stride(stride)
        .init(&Device::flex())
}

#[test]
fn bad_depths() {
    let c = || conv(PaddingConfig2d::Valid, [1, 1], [3, 3]);
    let err = inflate(c(), &InflateOptions::new(0)).unwrap_err();
    assert!(matches!(err, InflateError::ZeroDepth), "{err}");
    let err = inflate(c(), &InflateOptions::new(4)).unwrap_err();
    assert!(matches!(err, InflateError::EvenDepth { depth: 4 }), "{err}");
    assert!(err.to_string().contains("odd"), "{err}");
    let err = inflate(c(), &InflateOptions::new(3).with_depth_stride(2)).unwrap_err();
    assert!(
        matches!(err, InflateError::InexactDepth { mode: "centre", .. }),
        "{err}"
    );
    let err = inflate(c(), &InflateOptions::new(3).with_depth_padding(0)).unwrap_err();
    assert!(err.to_string().contains("(kd-1)/2 = 1"), "{err}");
    let mean = InflateOptions::new(3)
        .with_mode(InflateMode::Mean)
        .with_depth_padding(3);
    let err = inflate(c(), &mean).unwrap_err();
    assert!(
        matches!(err, InflateError::InexactDepth { mode: "mean", .. }),
        "{err}"
    );
}

#[test]
fn padding_burn_conv3d_cannot_express() {
    let err = inflate(
        conv(PaddingConfig2d::Explicit(1, 1, 0, 1), [1, 1], [3, 3]),
        &InflateOptions::new(3),
    )
    .unwrap_err();
    assert!(matches!(err, InflateError::Padding { .. }), "{err}");
    assert!(err.to_string().contains("asymmetric"), "{err}");
    let err = inflate(
        conv(PaddingConfig2d::Same, [2, 2], [3, 3]),
        &InflateOptions::new(3),
    )
    .unwrap_err();
    assert!(err.to_string().contains("stride [2, 2]"), "{err}");
    // Inside a network, the error names the layer.
    let mut mid = grid()[0].clone();
    mid.padding = PaddingConfig2d::Explicit(0, 1, 1, 1);
    let net = Net2d::new(&mid, &Device::flex());
    let err = inflate(net, &InflateOptions::new(3)).unwrap_err();
    assert!(err.to_string().contains("`c2.weight`"), "{err}");
}

#[test]
fn linear_adapter_is_not_a_kernel() {
    let device = Device::flex();
    let spec = AdapterSpec::new(2, 4.0);
    let adapter = AnyAdapter::linear(LoConAdapter::from_linear(
        &LinearAdapter::new("head.weight", 6, 5, &spec, &device).unwrap(),
    ));
    let err = inflate_adapter("head.weight", adapter, &InflateOptions::new(3)).unwrap_err();
    assert!(matches!(err, InflateError::Adapter { .. }), "{err}");
    assert!(err.to_string().contains("head.weight"), "{err}");
}

/// A custom layer that builds its 3D weight itself (new id) loses the adapter: an error, not a
/// silently un-adapted model.
#[derive(Module, Debug)]
struct Careless {
    conv: Conv2d,
}

impl Inflate for Careless {
    type Output = Conv3d;

    fn inflate(self, cx: &mut Inflation) -> lora_3d::Result<Conv3d> {
        let inflated = self.conv.inflate(cx)?;
        let weight = burn::module::Param::from_tensor(inflated.weight.val());
        Ok(Conv3d { weight, ..inflated })
    }
}

#[test]
fn lost_adapters_are_reported() {
    let device = Device::flex();
    let model = Careless {
        conv: Conv2dConfig::new([2, 4], [3, 3]).init(&device),
    };
    let adapted = attach(
        &model,
        &conv_config(2, 2.0),
        &ConvFactory::new(ConvVariant::LoCon),
    )
    .unwrap();
    let err = inflate(adapted, &InflateOptions::new(3)).unwrap_err();
    assert!(matches!(err, InflateError::LostAdapters { .. }), "{err}");
    assert!(err.to_string().contains("conv.weight"), "{err}");
}
