//! Linear LoRA learns a rank-r perturbation of a frozen random MLP.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use common::Mlp;
use lora_core::{LinearFactory, LoraConfig, attach, param_counts};

#[test]
fn lora_recovers_a_rank_r_perturbation_with_adam() {
    const RANK: usize = 2;
    let device = Device::flex().autodiff();
    device.seed(2024);
    let base = Mlp::new(16, 32, 8, &device);

    // Target: the same net with rank-2 updates on both weights (fixed seed).
    let perturb = |w: Tensor<2>| {
        let [d_in, d_out] = w.dims();
        let u = Tensor::<2>::random([d_in, RANK], Distribution::Normal(0.0, 0.5), &device);
        let v = Tensor::<2>::random([RANK, d_out], Distribution::Normal(0.0, 0.5), &device);
        w + u.matmul(v)
    };
    let target = Mlp {
        fc1: burn::nn::Linear {
            weight: base.fc1.weight.clone().map(&perturb),
            bias: base.fc1.bias.clone(),
        },
        fc2: burn::nn::Linear {
            weight: base.fc2.weight.clone().map(&perturb),
            bias: base.fc2.bias.clone(),
        },
    }
    .valid();
    let x = Tensor::<2>::random([256, 16], Distribution::Normal(0.0, 1.0), &device);
    let y = target.forward(x.clone().inner()).detach();
    let y = Tensor::from_data(y.into_data(), &device);

    let mut model = attach(&base, &LoraConfig::new(RANK, RANK as f64), &LinearFactory).unwrap();
    assert_eq!(
        param_counts(&model).trainable,
        RANK * (16 + 32) + RANK * (32 + 8)
    );
    let mut optim = AdamConfig::new().init();
    let loss_of = |m: &Mlp| (m.forward(x.clone()) - y.clone()).powi_scalar(2).mean();

    let first = loss_of(&model).into_scalar::<f32>();
    for _ in 0..400 {
        let loss = loss_of(&model);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let last = loss_of(&model).into_scalar::<f32>();
    assert!(
        last * 10.0 < first,
        "loss fell from {first} to {last}, less than 10x"
    );
    // The base never moved.
    let drift = (model.fc1.weight.base() - base.fc1.weight.val())
        .abs()
        .max();
    assert_eq!(drift.into_scalar::<f32>(), 0.0);
}
