//! (c) Inference of the experiment CNN at batch 64: the base, the unmerged weight-space form
//! (an attached reparameterization, recomposing `ΔW` each call), bypass, auto, and merged
//! (the same reparameterized model after `lora_core::merge`, which must cost what the base
//! costs).

#![allow(missing_docs, clippy::unwrap_used)]

use benches::cnn;
use burn::tensor::Device;
use criterion::{Criterion, criterion_group};
use lora_conv::{ConvFactory, ConvVariant, ForwardMode};
use lora_core::testing::randomize_adapters;

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    device.seed(0);
    let base = cnn::config().init(&device);
    let (x, _) = cnn::batch(&device);
    let mut group = c.benchmark_group("infer");
    group.bench_function("base", |b| b.iter(|| base.forward(x.clone()).into_data()));
    let rank = 4;
    for variant in ConvVariant::DECOMPOSITIONS {
        // The base again, just before this variant's rows: the report divides by this one.
        group.bench_function(format!("{variant}-r{rank}-base"), |b| {
            b.iter(|| base.forward(x.clone()).into_data())
        });
        // Every conv, with the same per-layer rank caps as the bypass and auto models.
        let config = cnn::attach_config(&base, variant, rank);
        let attached = randomize_adapters(
            lora_core::attach(&base, &config, &ConvFactory::new(variant)).unwrap(),
            0.05,
        );
        group.bench_function(format!("{variant}-r{rank}-unmerged"), |b| {
            b.iter(|| attached.forward(x.clone()).into_data())
        });
        let merged = lora_core::merge(&attached).unwrap();
        group.bench_function(format!("{variant}-r{rank}-merged"), |b| {
            b.iter(|| merged.forward(x.clone()).into_data())
        });
        for mode in [ForwardMode::Bypass, ForwardMode::Auto] {
            let model = cnn::adapted(&base, variant, rank, mode, &device).unwrap();
            group.bench_function(format!("{variant}-r{rank}-{mode}"), |b| {
                b.iter(|| model.forward(x.clone()).into_data())
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = infer_benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
benches::bench_main!(infer_benches);
