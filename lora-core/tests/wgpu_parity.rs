//! The same linear-LoRA forward on wgpu and on the CPU (flex) agree to 1e-4 relative (1e-5 absolute floor).
//!
//! Runs with `--features wgpu`. On a machine without a GPU, wgpu runs on Mesa's lavapipe
//! (`apt-get install -y mesa-vulkan-drivers`), which `.ci/run` installs.

#![cfg(feature = "wgpu")]
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use common::Mlp;
use lora_core::testing::{Tol, assert_close, randomize_adapters};
use lora_core::{DeviceSpec, LinearFactory, LoraConfig, LoraLinearConfig, attach, merge};

#[test]
fn linear_lora_forward_on_wgpu_matches_cpu() {
    let cpu = DeviceSpec::Cpu.device().unwrap();
    let gpu = DeviceSpec::Wgpu(None).device().unwrap();
    cpu.seed(5);
    let model = Mlp::new(24, 40, 10, &cpu);
    let adapted = randomize_adapters(
        attach(&model, &LoraConfig::new(4, 8.0), &LinearFactory).unwrap(),
        0.3,
    );
    let x = Tensor::<2>::random([9, 24], Distribution::Normal(0.0, 1.0), &cpu);
    let expected = adapted.forward(x.clone());

    // Weight-space form, moved with its adapters.
    let on_gpu = adapted.clone().to_device(&gpu);
    let got = on_gpu.forward(x.clone().to_device(&gpu)).to_device(&cpu);
    assert_close(
        got,
        expected.clone(),
        Tol {
            rel: 1e-4,
            abs: 1e-5,
        },
        "weight-space on wgpu",
    );

    // Merge on the GPU too.
    let merged = merge(&on_gpu).unwrap();
    let got = merged.forward(x.clone().to_device(&gpu)).to_device(&cpu);
    assert_close(
        got,
        expected,
        Tol {
            rel: 1e-4,
            abs: 1e-5,
        },
        "merged on wgpu",
    );

    // Bypass form.
    let bypass = LoraLinearConfig::new(24, 10, 3, 6.0).init(&cpu).unwrap();
    let bypass = lora_core::LoraLinear {
        adapter: randomize_linear(bypass.adapter),
        ..bypass
    };
    let expected = bypass.forward(x.clone());
    let got = bypass
        .to_device(&gpu)
        .forward(x.to_device(&gpu))
        .to_device(&cpu);
    assert_close(
        got,
        expected,
        Tol {
            rel: 1e-4,
            abs: 1e-5,
        },
        "bypass on wgpu",
    );
}

fn randomize_linear(a: lora_core::LinearAdapter) -> lora_core::LinearAdapter {
    let rand =
        |t: Tensor<2>| Tensor::random(t.shape(), Distribution::Normal(0.0, 0.5), &t.device());
    lora_core::LinearAdapter {
        down: a.down.map(rand),
        up: a.up.map(rand),
        scale: a.scale,
    }
}
