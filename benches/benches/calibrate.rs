//! Measures the rates of `lora_conv::CostModel` on this machine and prints them as JSON (also
//! written to `$BENCH_OUT/calibrate.json`): per conv kind (kxk wide and narrow, 1x1 channel
//! mixes, depthwise) and pass (forward, input gradient, weight gradient), matmul and
//! element-wise throughput, and the fixed cost of one operation. Paste the printed values into
//! `CostModel::default` to recalibrate `ForwardMode::Auto` for another machine.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::functional::conv::pointwise;
use lora_conv::{ConvRates, CostModel};

/// The fastest of `reps` timed runs (after one warm-up): a pass's time is found by
/// subtracting two timings, and the minimum is far steadier than the median under noise from
/// the other core.
fn min_secs(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.into_iter().fold(f64::INFINITY, f64::min)
}

/// The fastest time of `f` on the plain device, and of its forward plus backward with only the
/// input, then only the weight, needing a gradient. Returns rates for `flops` per pass.
fn pass_rates(
    flops: f64,
    x_shape: [usize; 4],
    w_shape: &[usize],
    f: impl Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
) -> ConvRates {
    let plain = Device::flex();
    let ad = Device::flex().autodiff();
    let make = |device: &Device, x_grad: bool, w_grad: bool| {
        let x = Tensor::<4>::random(x_shape, Distribution::Default, device);
        let mut shape = [1; 4];
        shape[..w_shape.len()].copy_from_slice(w_shape);
        let w = Tensor::<4>::random(shape, Distribution::Default, device);
        (
            if x_grad { x.require_grad() } else { x },
            if w_grad { w.require_grad() } else { w },
        )
    };
    let (x, w) = make(&plain, false, false);
    let forward = min_secs(
        || {
            let _ = f(x.clone(), w.clone()).into_data();
        },
        15,
    );
    let backward = |x_grad: bool, w_grad: bool| {
        let (x, w) = make(&ad, x_grad, w_grad);
        min_secs(
            || {
                let _ = f(x.clone(), w.clone()).sum().backward();
            },
            15,
        )
    };
    // Forward plus one backward pass each; the forward time is taken off.
    let dx = (backward(true, false) - forward).max(forward * 0.1);
    let dw = (backward(false, true) - forward).max(forward * 0.1);
    ConvRates {
        forward: flops / forward,
        input_grad: flops / dx,
        weight_grad: flops / dw,
    }
}

/// One conv kind: `[B, cin, H, W]` with a `[cout, cin/groups, kh, kw]` kernel, padded to keep
/// the size. Returns its rates.
fn conv_rates(
    batch: usize,
    cin: usize,
    cout: usize,
    kernel: [usize; 2],
    groups: usize,
    size: usize,
) -> ConvRates {
    let options = ConvOptions::new([1, 1], [kernel[0] / 2, kernel[1] / 2], [1, 1], groups);
    let flops = 2.0 * (batch * size * size * cout * (cin / groups) * kernel[0] * kernel[1]) as f64;
    pass_rates(
        flops,
        [batch, cin, size, size],
        &[cout, cin / groups, kernel[0], kernel[1]],
        |x, w| conv2d(x, w, None, options.clone()),
    )
}

/// A branch's channel mix as the library runs it ([`pointwise`], a batched matmul), `cin` ->
/// `cout` on `[B, cin, size, size]`.
fn pointwise_rates(batch: usize, cin: usize, cout: usize, size: usize) -> ConvRates {
    let flops = 2.0 * (batch * size * size * cout * cin) as f64;
    pass_rates(flops, [batch, cin, size, size], &[cout, cin], |x, w| {
        pointwise(x, w.reshape([cout, cin]))
    })
}

/// The harmonic mean of two measurements' rates, pass by pass: the rate of doing equal FLOPs
/// of each (a down and an up projection; a narrow down conv and a rank-sized core).
fn mean_rates(a: ConvRates, b: ConvRates) -> ConvRates {
    let mean = |x: f64, y: f64| 2.0 / (1.0 / x + 1.0 / y);
    ConvRates {
        forward: mean(a.forward, b.forward),
        input_grad: mean(a.input_grad, b.input_grad),
        weight_grad: mean(a.weight_grad, b.weight_grad),
    }
}

fn main() {
    experiments::alloc::keep_freed_memory();
    let device = Device::flex();
    device.seed(0);
    // Rates from mid-sized layers of the shapes the benches cover.
    let spatial = conv_rates(8, 64, 64, [3, 3], 1, 28);
    // An adapter's kxk down conv (64 -> rank 4) and Tucker-2's core (4 -> 4).
    let narrow = mean_rates(
        conv_rates(8, 64, 4, [3, 3], 1, 28),
        conv_rates(8, 4, 4, [3, 3], 1, 28),
    );
    // A branch's down and up projections at rank 4.
    let pointwise = mean_rates(pointwise_rates(8, 64, 4, 28), pointwise_rates(8, 4, 64, 28));
    let depthwise = conv_rates(8, 64, 64, [3, 1], 64, 28);
    let (m, k, n) = (256, 64, 2304);
    let a = Tensor::<2>::random([m, k], Distribution::Default, &device);
    let b = Tensor::<2>::random([k, n], Distribution::Default, &device);
    let matmul = 2.0 * (m * k * n) as f64
        / min_secs(
            || {
                let _ = a.clone().matmul(b.clone()).into_data();
            },
            9,
        );
    let len = 8 << 20;
    let u = Tensor::<1>::random([len], Distribution::Default, &device);
    let v = Tensor::<1>::random([len], Distribution::Default, &device);
    let bandwidth = (3 * 4 * len) as f64
        / min_secs(
            || {
                let _ = (u.clone() + v.clone()).into_data();
            },
            9,
        );
    let tiny = Tensor::<1>::random([4], Distribution::Default, &device);
    let op_seconds = min_secs(
        || {
            let _ = (tiny.clone() + tiny.clone()).into_data();
        },
        101,
    );
    let model = CostModel {
        spatial,
        narrow,
        pointwise,
        depthwise,
        matmul,
        bandwidth,
        op_seconds,
    };
    let json = serde_json::to_string_pretty(&model).unwrap();
    println!("{json}");
    let dir = std::env::var("BENCH_OUT").unwrap_or_else(|_| "target/bench-extra".into());
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(format!("{dir}/calibrate.json"), &json);
    }
}
