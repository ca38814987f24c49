//! (b) One training step (forward, backward, Adam) of the experiment CNN at batch 64 on 28x28
//! inputs: full fine-tuning, and every variant in weight-space, bypass and auto form at ranks
//! 1, 4 and 16.

#![allow(missing_docs, clippy::unwrap_used)]

use benches::RANKS;
use benches::cnn::{self, Trainer};
use burn::tensor::Device;
use criterion::{Criterion, SamplingMode, criterion_group};
use lora_conv::{ConvVariant, ForwardMode};

fn bench(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    device.seed(0);
    let base = cnn::config().init(&device);
    let mut group = c.benchmark_group("train");
    group.sampling_mode(SamplingMode::Flat);
    let mut full = Trainer::new(base.clone(), &device);
    group.bench_function("full", |b| b.iter(|| full.step()));
    for variant in ConvVariant::DECOMPOSITIONS {
        for rank in RANKS {
            for mode in ForwardMode::ALL {
                let model = cnn::adapted(&base, variant, rank, mode, &device).unwrap();
                let mut trainer = Trainer::new(model, &device);
                group.bench_function(format!("{variant}-r{rank}-{mode}"), |b| {
                    b.iter(|| trainer.step())
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = train_benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(4));
    targets = bench
}
benches::bench_main!(train_benches);
