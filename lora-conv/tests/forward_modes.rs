//! `LoraConv` in weight-space, bypass and auto form computes the same output and the same
//! factor gradients, on a grid of Conv1d/2d/3d geometries (strides, symmetric, asymmetric and
//! same padding, dilation, 1x1 and rectangular kernels), for every variant. Grouped convs run
//! weight-space under `Auto` and refuse `Bypass`; dropout refuses `WeightSpace`.
//!
//! Tolerance: `|a − b| ≤ 1e-4·max|b| + 1e-5` (relative to the largest magnitude, with an
//! absolute floor), for outputs and gradients alike.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv1dConfig, Conv2dConfig, Conv3dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d, PaddingConfig3d};
use burn::tensor::{Device, Distribution, Shape, Tensor};
use lora_conv::{ConvLayer, ConvVariant, ForwardMode, LoraConv};
use lora_core::{AdapterSpec, LoraError};

fn close<const D: usize>(a: Tensor<D>, b: Tensor<D>, what: &str) {
    let scale = b.clone().abs().max().into_scalar::<f32>();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    let bound = 1e-4 * scale + 1e-5;
    assert!(
        diff <= bound,
        "{what}: max |diff| {diff} > {bound} (max |ref| {scale})"
    );
}

/// Every float gradient of the adapter's factors, flattened and concatenated.
fn factor_grads<C: ConvLayer>(layer: &LoraConv<C>, grads: &burn::tensor::Gradients) -> Tensor<1> {
    struct Grads<'a> {
        grads: &'a burn::tensor::Gradients,
        out: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = param.val().grad(self.grads) {
                let n = g.shape().num_elements();
                self.out.push(g.reshape([n]));
            }
        }
    }
    let mut visitor = Grads {
        grads,
        out: Vec::new(),
    };
    layer.adapter().visit(&mut visitor);
    assert!(!visitor.out.is_empty(), "the factors got no gradient");
    Tensor::cat(visitor.out, 0)
}

/// Random non-zero factors (fresh adapters have a zero up factor).
fn randomize<C: ConvLayer>(layer: LoraConv<C>) -> LoraConv<C> {
    struct R;
    impl burn::module::ModuleMapper for R {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|old| {
                let rg = old.is_require_grad();
                Tensor::random(old.shape(), Distribution::Normal(0.0, 0.3), &old.device())
                    .set_require_grad(rg)
            })
        }
    }
    let adapter = layer.adapter().clone().map(&mut R);
    layer.with_adapter("layer", adapter).unwrap()
}

fn check_modes<C: ConvLayer + Clone, const N: usize>(name: &str, conv: C, input: &[usize]) {
    let groups = conv.geometry().groups;
    for training in [false, true] {
        let device = if training {
            Device::flex().autodiff()
        } else {
            Device::flex()
        };
        device.seed(7);
        let conv = conv.clone().to_device(&device);
        let x = Tensor::<N>::random(Shape::from(input.to_vec()), Distribution::Default, &device);
        let x = if training { x.require_grad() } else { x };
        for variant in ConvVariant::BUILTIN {
            let what = format!("{name} {variant} training={training}");
            let spec = AdapterSpec::new(2, 3.0);
            let reference_mode = if groups == 1 {
                ForwardMode::Bypass
            } else {
                ForwardMode::WeightSpace
            };
            let layer = randomize(
                LoraConv::new(
                    name,
                    conv.clone(),
                    variant,
                    &spec,
                    0.0,
                    reference_mode,
                    &device,
                )
                .unwrap(),
            );
            let reference = layer.forward(x.clone());
            // Independent of either form: the base conv with the kernel W + scale·ΔK.
            let merged = layer.clone().merge().forward_nd(x.clone());
            close(
                reference.clone().detach(),
                merged.detach(),
                &format!("{what}: vs merged"),
            );
            let reference_grads = training.then(|| {
                let grads = reference.clone().sum().backward();
                (factor_grads(&layer, &grads), x.grad(&grads).unwrap())
            });
            for mode in ForwardMode::ALL {
                if groups != 1 && mode == ForwardMode::Bypass {
                    let err = layer.clone().with_mode(name, mode).unwrap_err();
                    assert!(
                        matches!(err, LoraError::UnsupportedGeometry { .. }),
                        "{err}"
                    );
                    continue;
                }
                let other = layer.clone().with_mode(name, mode).unwrap();
                let out = other.forward(x.clone());
                close(
                    out.clone().detach(),
                    reference.clone().detach(),
                    &format!("{what} {mode}"),
                );
                if let Some((factors, input_grad)) = &reference_grads {
                    let grads = out.sum().backward();
                    close(
                        factor_grads(&other, &grads),
                        factors.clone(),
                        &format!("{what} {mode}: factor gradients"),
                    );
                    close(
                        x.grad(&grads).unwrap(),
                        input_grad.clone(),
                        &format!("{what} {mode}: input gradient"),
                    );
                }
            }
        }
    }
}

#[test]
fn forms_agree_on_conv2d_geometries() {
    let device = Device::flex();
    let cases: Vec<(&str, Conv2dConfig, [usize; 4])> = vec![
        (
            "3x3 same-size",
            Conv2dConfig::new([4, 6], [3, 3]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            [2, 4, 9, 9],
        ),
        (
            "3x3 stride 2",
            Conv2dConfig::new([4, 6], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            [2, 4, 9, 8],
        ),
        (
            "asymmetric padding",
            Conv2dConfig::new([3, 5], [2, 3]).with_padding(PaddingConfig2d::Explicit(0, 1, 1, 2)),
            [2, 3, 7, 6],
        ),
        (
            "same padding",
            Conv2dConfig::new([3, 4], [4, 3]).with_padding(PaddingConfig2d::Same),
            [1, 3, 8, 7],
        ),
        (
            "dilation 2",
            Conv2dConfig::new([3, 4], [3, 3])
                .with_dilation([2, 2])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2)),
            [2, 3, 9, 9],
        ),
        ("1x1", Conv2dConfig::new([5, 3], [1, 1]), [2, 5, 6, 6]),
        (
            "groups 2",
            Conv2dConfig::new([4, 6], [3, 3])
                .with_groups(2)
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            [2, 4, 7, 7],
        ),
    ];
    for (name, config, input) in cases {
        check_modes::<_, 4>(name, config.init(&device), &input);
    }
}

#[test]
fn forms_agree_on_conv1d_and_conv3d() {
    let device = Device::flex();
    check_modes::<_, 3>(
        "conv1d k5 stride 2",
        Conv1dConfig::new(3, 5, 5)
            .with_stride(2)
            .with_padding(PaddingConfig1d::Explicit(2, 1))
            .init(&device),
        &[2, 3, 17],
    );
    check_modes::<_, 5>(
        "conv3d 3x3x3",
        Conv3dConfig::new([3, 4], [3, 3, 3])
            .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
            .init(&device),
        &[1, 3, 5, 6, 6],
    );
}

#[test]
fn dropout_needs_the_bypass_form() {
    let device = Device::flex();
    let conv = Conv2dConfig::new([3, 4], [3, 3]).init(&device);
    let spec = AdapterSpec::new(2, 2.0);
    let err = LoraConv::new(
        "blocks.0.conv",
        conv.clone(),
        ConvVariant::LoCon,
        &spec,
        0.1,
        ForwardMode::WeightSpace,
        &device,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("blocks.0.conv") && msg.contains("0.1"),
        "{msg}"
    );
    // Auto with dropout trains in bypass form (the only one that applies dropout).
    let auto = LoraConv::new(
        "c",
        conv,
        ConvVariant::LoCon,
        &spec,
        0.1,
        ForwardMode::Auto,
        &device,
    )
    .unwrap();
    assert_eq!(auto.form(&[64, 3, 28, 28], true, true), ForwardMode::Bypass);
}

/// A bypass layer takes only a conv adapter of its own kernel: a linear adapter (no conv
/// branch) and a kernel of another shape are errors naming the layer, not a panic later.
#[test]
fn with_adapter_refuses_linear_and_foreign_kernels() {
    let device = Device::flex();
    let conv = Conv2dConfig::new([4, 6], [3, 3]).init(&device);
    let spec = AdapterSpec::new(2, 2.0);
    let layer = LoraConv::wrap("blocks.0", conv, ConvVariant::LoCon, &spec, 0.0, &device).unwrap();
    let linear = lora_conv::AnyAdapter::linear(lora_conv::LoConAdapter::from_linear(
        &lora_core::LinearAdapter::new("x", 4, 6, &spec, &device).unwrap(),
    ));
    match layer.clone().with_adapter("blocks.0", linear) {
        Err(LoraError::UnsupportedGeometry { path, .. }) => assert_eq!(path, "blocks.0"),
        other => panic!("{other:?}"),
    }
    let other = lora_conv::ConvVariant::LoCon
        .build("x", &[6, 4, 5, 5], &spec, &device)
        .unwrap();
    match layer.with_adapter("blocks.0", other) {
        Err(LoraError::ShapeMismatch {
            expected, actual, ..
        }) => {
            assert_eq!((expected, actual), (vec![6, 4, 3, 3], vec![6, 4, 5, 5]));
        }
        other => panic!("{other:?}"),
    }
}
