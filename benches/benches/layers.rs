//! (d) One conv layer at shapes from real networks: ResNet-18's 3x3 convs (64 at 56², 128 at
//! 28², 256 at 14², 512 at 7², batch 8), a 1D conv and an inflated 3x3x3 conv on a 16-deep
//! volume. Per shape: the training step (forward and backward, the input needing its
//! gradient as inside a network) of full fine-tuning and of every variant at rank 4 in
//! weight-space, bypass and auto form, and the same forms' inference.

#![allow(missing_docs, clippy::unwrap_used)]

use benches::{LAYERS, LayerShape};
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Conv3d, Conv3dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d, PaddingConfig3d};
use burn::tensor::{Device, Distribution, Shape, Tensor};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, criterion_group};
use lora_conv::{ConvLayer, ConvVariant, ForwardMode, LoraConv};
use lora_core::AdapterSpec;

const RANK: usize = 4;

fn input<const N: usize>(shape: &LayerShape, device: &Device) -> Tensor<N> {
    let mut dims = vec![shape.batch, shape.channels];
    dims.extend(std::iter::repeat_n(shape.size, shape.dims));
    Tensor::random(Shape::from(dims), Distribution::Normal(0.0, 1.0), device)
}

fn run<C: ConvLayer + Clone, const N: usize>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    shape: &LayerShape,
    make: impl Fn(&Device) -> C,
) {
    let name = shape.name;
    for training in [true, false] {
        let device = if training {
            Device::flex().autodiff()
        } else {
            Device::flex()
        };
        device.seed(0);
        let conv = make(&device);
        let x = input::<N>(shape, &device);
        let x = if training { x.require_grad() } else { x };
        let what = if training { "train" } else { "infer" };
        let step = |y: Tensor<N>| {
            if training {
                let _ = y.sum().backward();
            } else {
                let _ = y.into_data();
            }
        };
        group.bench_function(format!("{what}/{name}/full"), |b| {
            b.iter(|| step(conv.forward_nd(x.clone())))
        });
        for variant in ConvVariant::DECOMPOSITIONS {
            let spec = AdapterSpec::new(RANK, RANK as f64);
            let wrapped = LoraConv::new(
                "conv",
                conv.clone(),
                variant,
                &spec,
                0.0,
                ForwardMode::Bypass,
                &device,
            )
            .unwrap();
            let wrapped = benches::cnn::randomize_branch(wrapped, 0.05);
            for mode in ForwardMode::ALL {
                let layer = wrapped.clone().with_mode("conv", mode).unwrap();
                group.bench_function(format!("{what}/{name}/{variant}-r{RANK}-{mode}"), |b| {
                    b.iter(|| step(layer.forward(x.clone())))
                });
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("layers");
    group.sampling_mode(SamplingMode::Flat);
    for shape in &LAYERS {
        let ch = shape.channels;
        match shape.dims {
            1 => run::<Conv1d, 3>(&mut group, shape, |d| {
                Conv1dConfig::new(ch, ch, 3)
                    .with_padding(PaddingConfig1d::Explicit(1, 1))
                    .init(d)
            }),
            2 => run::<Conv2d, 4>(&mut group, shape, |d| {
                Conv2dConfig::new([ch, ch], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(d)
            }),
            _ => run::<Conv3d, 5>(&mut group, shape, |d| {
                Conv3dConfig::new([ch, ch], [3, 3, 3])
                    .with_padding(PaddingConfig3d::Explicit(1, 1, 1))
                    .init(d)
            }),
        }
    }
    group.finish();
}

criterion_group! {
    name = layer_benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
benches::bench_main!(layer_benches);
