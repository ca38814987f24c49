//! The weight-space and bypass forms are the same maths: from the same factors, five Adam steps
//! on the same batch leave them computing the same function (tolerance 1e-4 relative, 1e-5 absolute floor), for each
//! adapter type.

#![allow(clippy::unwrap_used, missing_docs)]

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::{AnyAdapter, ConvFactory, ConvVariant, LoraConv, conv_config};
use lora_core::testing::{Tol, assert_close};
use lora_core::{AdapterSpec, LoraParam, attach};

#[test]
fn both_forms_train_identically() {
    let device = Device::flex().autodiff();
    device.seed(3);
    for variant in ConvVariant::BUILTIN {
        let conv: Conv2d = Conv2dConfig::new([4, 6], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let mut weight = attach(&conv, &conv_config(2, 4.0), &ConvFactory::new(variant)).unwrap();
        let adapter: AnyAdapter = weight
            .weight
            .reparameterization::<LoraParam<AnyAdapter>>()
            .unwrap()
            .adapter
            .clone();
        let spec = AdapterSpec::new(2, 4.0);
        let wrapped = LoraConv::wrap("conv", conv.clone(), variant, &spec, 0.0, &device).unwrap();
        let mut bypass = wrapped.with_adapter("conv", adapter).unwrap();

        let x = Tensor::<4>::random([4, 4, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let target = Tensor::<4>::random([4, 6, 8, 8], Distribution::Normal(0.0, 1.0), &device);
        let (mut opt_w, mut opt_b) = (AdamConfig::new().init(), AdamConfig::new().init());
        for _ in 0..5 {
            let loss = (weight.forward(x.clone()) - target.clone())
                .powi_scalar(2)
                .mean();
            let grads = GradientsParams::from_grads(loss.backward(), &weight);
            weight = opt_w.step(1e-2, weight, grads);
            let loss = (bypass.forward(x.clone()) - target.clone())
                .powi_scalar(2)
                .mean();
            let grads = GradientsParams::from_grads(loss.backward(), &bypass);
            bypass = opt_b.step(1e-2, bypass, grads);
        }
        let moved = (weight.forward(x.clone()) - conv.forward(x.clone()))
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(
            moved > 1e-3,
            "{variant:?}: training did not change the output"
        );
        assert_close(
            weight.forward(x.clone()),
            bypass.forward(x),
            Tol {
                rel: 1e-4,
                abs: 1e-5,
            },
            &format!("{variant:?}"),
        );
        let _ = weight.valid();
    }
}
