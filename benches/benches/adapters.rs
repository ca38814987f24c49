//! Recomposition and forward-mode benchmarks on the CPU backend.

#![allow(missing_docs, clippy::unwrap_used)]

use benches::SHAPES;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2dConfig;
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use lora_conv::{AnyAdapter, ConvFactory, ConvVariant, LoraConv, conv_config};
use lora_core::testing::randomize_adapters;
use lora_core::{Adapter, AdapterSpec, FactorInit, LoraParam, Scaling, attach};

fn spec(rank: usize) -> AdapterSpec {
    AdapterSpec {
        rank,
        alpha: rank as f64,
        scaling: Scaling::Standard,
        init: FactorInit::KaimingUniform,
    }
}

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    device.seed(0);
    for (ch, size, rank) in SHAPES {
        let conv = Conv2dConfig::new([ch, ch], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([8, ch, size, size], Distribution::Normal(0.0, 1.0), &device);
        for variant in ConvVariant::ALL {
            let tag = format!("{variant}/c{ch}/r{rank}");
            let cfg = conv_config(rank, rank as f64).with_targets(vec!["weight".into()]);
            let ws = randomize_adapters(
                attach(&conv, &cfg, &ConvFactory::new(variant)).unwrap(),
                0.1,
            );
            let adapter = ws
                .weight
                .reparameterization::<LoraParam<AnyAdapter>>()
                .unwrap()
                .adapter
                .clone();
            c.bench_function(&format!("recompose/{tag}"), |b| {
                b.iter(|| adapter.delta_weight::<4>().into_data())
            });
            c.bench_function(&format!("forward-weight/{tag}"), |b| {
                b.iter(|| ws.forward(x.clone()).into_data())
            });
            let bypass =
                LoraConv::wrap("conv", conv.clone(), variant, &spec(rank), 0.0, &device).unwrap();
            let bypass = LoraConv {
                adapter: adapter.clone(),
                ..bypass
            };
            c.bench_function(&format!("forward-bypass/{tag}"), |b| {
                b.iter(|| bypass.forward(x.clone()).into_data())
            });
        }
        c.bench_function(&format!("forward-base/c{ch}"), |b| {
            b.iter(|| conv.forward(x.clone()).into_data())
        });
    }
}

criterion_group! {
    name = adapters;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(adapters);
