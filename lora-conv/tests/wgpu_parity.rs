//! `LoraConv` on wgpu computes what it computes on the CPU (flex): the output of every variant
//! in weight-space, bypass and auto form, the merged conv, and in training the factor and
//! input gradients.
//!
//! Tolerance: `|a − b| ≤ 1e-4·max|b| + 1e-5` (relative to the largest magnitude, absolute
//! floor), for outputs and gradients alike.
//!
//! The wgpu device exists when the workspace is built with `--features lora-core/wgpu`, as
//! `./scripts/test.sh` does; on a machine without a GPU it runs on Mesa's lavapipe, which that
//! script installs. Built without the feature, the test says so and checks nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Distribution, Gradients, Tensor};
use lora_conv::{ConvLayer, ConvVariant, ForwardMode, LoraConv};
use lora_core::{AdapterSpec, DeviceSpec};

fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
    let scale = b.clone().abs().max().into_scalar::<f32>();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    let bound = 1e-4 * scale + 1e-5;
    assert!(
        diff <= bound,
        "{what}: max |diff| {diff} > {bound} (max |cpu| {scale})"
    );
}

/// Non-zero factors (a fresh adapter's up factor is zero, which would hide a wrong branch).
struct Randomize;
impl ModuleMapper for Randomize {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|old| {
            let require_grad = old.is_require_grad();
            Tensor::random(old.shape(), Distribution::Normal(0.0, 0.3), &old.device())
                .set_require_grad(require_grad)
        })
    }
}

/// The factors' gradients, flattened, on `cpu`.
fn factor_grads(layer: &LoraConv<Conv2d>, grads: &Gradients, cpu: &Device) -> Tensor<1> {
    struct Collect<'a> {
        grads: &'a Gradients,
        cpu: Device,
        out: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = param.val().grad(self.grads) {
                let n = g.shape().num_elements();
                self.out.push(g.reshape([n]).to_device(&self.cpu));
            }
        }
    }
    let mut collect = Collect {
        grads,
        cpu: cpu.clone(),
        out: Vec::new(),
    };
    layer.adapter().visit(&mut collect);
    assert!(!collect.out.is_empty(), "no factor got a gradient");
    Tensor::cat(collect.out, 0)
}

#[test]
fn conv_adapters_on_wgpu_match_the_cpu() {
    let spec = DeviceSpec::Wgpu(None);
    if !spec.is_compiled_in() {
        eprintln!(
            "wgpu is not compiled in (build with --features lora-core/wgpu): nothing checked"
        );
        return;
    }
    let gpu_plain = spec.device().unwrap();
    for training in [false, true] {
        let (cpu, gpu) = if training {
            (Device::flex().autodiff(), gpu_plain.clone().autodiff())
        } else {
            (Device::flex(), gpu_plain.clone())
        };
        cpu.seed(21);
        let conv = Conv2dConfig::new([5, 6], [3, 3])
            .with_stride([2, 1])
            .with_padding(PaddingConfig2d::Explicit(1, 0, 2, 1))
            .init(&cpu);
        let x = Tensor::<4>::random([2, 5, 9, 8], Distribution::Default, &cpu);
        for variant in ConvVariant::BUILTIN {
            for mode in ForwardMode::ALL {
                let what = format!("{variant} {mode} training={training}");
                let layer = LoraConv::new(
                    "conv",
                    conv.clone(),
                    variant,
                    &AdapterSpec::new(2, 3.0),
                    0.0,
                    mode,
                    &cpu,
                )
                .unwrap();
                let adapter = layer.adapter().clone().map(&mut Randomize);
                let layer = layer.with_adapter("conv", adapter).unwrap();
                // `fork` keeps the factors leaves of the new device's graph (`to_device` would
                // make them outputs of a device move, with no gradient of their own).
                let on_gpu = layer.clone().fork(&gpu);
                let (x_cpu, x_gpu) = if training {
                    (
                        x.clone().require_grad(),
                        x.clone().to_device(&gpu).require_grad(),
                    )
                } else {
                    (x.clone(), x.clone().to_device(&gpu))
                };
                let expected = layer.forward(x_cpu.clone());
                let got = on_gpu.forward(x_gpu.clone());
                close(
                    got.clone().detach().to_device(&cpu),
                    expected.clone().detach(),
                    &what,
                );
                if training {
                    let grads_cpu = expected.sum().backward();
                    let grads_gpu = got.sum().backward();
                    close(
                        factor_grads(&on_gpu, &grads_gpu, &cpu),
                        factor_grads(&layer, &grads_cpu, &cpu),
                        &format!("{what}: factor gradients"),
                    );
                    close(
                        x_gpu.grad(&grads_gpu).unwrap().to_device(&cpu),
                        x_cpu.grad(&grads_cpu).unwrap(),
                        &format!("{what}: input gradient"),
                    );
                } else {
                    let merged = on_gpu.merge().forward_nd(x_gpu).to_device(&cpu);
                    close(merged, expected, &format!("{what}: merged"));
                }
            }
        }
    }
}
