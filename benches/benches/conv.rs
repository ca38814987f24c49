//! (g) One conv's forward and backward at the ResNet-29's and the bench CNN's shapes: burn's
//! `conv2d` against `lora_conv::kernels::conv2d` (burn's forward and input gradient, this
//! project's weight gradient from 64 output channels up), with the input and the weight both
//! needing gradients, as inside a network under full fine-tuning, and with the weight alone
//! (the first conv).

#![allow(missing_docs, clippy::unwrap_used)]

use burn::tensor::module::conv2d as burn_conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, SamplingMode, criterion_group};
use lora_conv::kernels::conv2d;

type Conv = fn(Tensor<4>, Tensor<4>, Option<Tensor<1>>, ConvOptions<2>) -> Tensor<4>;

/// name, batch, in, out, size, kernel, stride, padding
type Shape = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);

const SHAPES: [Shape; 7] = [
    ("r29-32x35", 32, 32, 32, 35, 3, 1, 1),
    ("r29-32to64s2", 32, 32, 64, 35, 3, 2, 0),
    ("r29-64x17", 32, 64, 64, 17, 3, 1, 1),
    ("r29-128x8", 32, 128, 128, 8, 3, 1, 1),
    ("r29-256x4", 32, 256, 256, 4, 3, 1, 1),
    ("cnn-32x28", 64, 32, 32, 28, 3, 1, 1),
    ("cnn-64x14", 64, 64, 64, 14, 3, 1, 1),
];

fn bench(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    let n = Distribution::Normal(0.0, 1.0);
    let mut group = c.benchmark_group("conv");
    group.sampling_mode(SamplingMode::Flat);
    for (name, b, cin, cout, size, k, stride, pad) in SHAPES {
        let x = Tensor::<4>::random([b, cin, size, size], n, &device);
        let w = Tensor::<4>::random([cout, cin, k, k], n, &device);
        let options = ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1);
        for (which, f) in [("burn", burn_conv2d as Conv), ("kernels", conv2d as Conv)] {
            for input_grad in [true, false] {
                let id = format!("{name}/{which}/{}", if input_grad { "dx+dw" } else { "dw" });
                group.bench_function(id, |bench| {
                    bench.iter(|| {
                        let xi = if input_grad {
                            x.clone().require_grad()
                        } else {
                            x.clone()
                        };
                        let wi = w.clone().require_grad();
                        let grads = f(xi, wi.clone(), None, options.clone()).sum().backward();
                        wi.grad(&grads).unwrap().into_data()
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group! {
    name = conv_benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
benches::bench_main!(conv_benches);
