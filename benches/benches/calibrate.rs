//! Measures the rates of `lora_conv::CostModel` on this machine and prints them as JSON (also
//! written to `$BENCH_OUT/calibrate.json`): per conv kind (kxk, 1x1, depthwise) and pass
//! (forward, input gradient, weight gradient), matmul and element-wise throughput, and the
//! fixed cost of one operation. Paste the printed values into `CostModel::default` to
//! recalibrate `ForwardMode::Auto` for another machine.

#![allow(missing_docs, clippy::unwrap_used)]

use std::time::Instant;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::{ConvRates, CostModel};

fn median_secs(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[reps / 2]
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
    let plain = Device::flex();
    let ad = Device::flex().autodiff();
    let options = ConvOptions::new([1, 1], [kernel[0] / 2, kernel[1] / 2], [1, 1], groups);
    let flops = 2.0 * (batch * size * size * cout * (cin / groups) * kernel[0] * kernel[1]) as f64;
    let make = |device: &Device, x_grad: bool, w_grad: bool| {
        let x = Tensor::<4>::random([batch, cin, size, size], Distribution::Default, device);
        let w = Tensor::<4>::random(
            [cout, cin / groups, kernel[0], kernel[1]],
            Distribution::Default,
            device,
        );
        (
            if x_grad { x.require_grad() } else { x },
            if w_grad { w.require_grad() } else { w },
        )
    };
    let (x, w) = make(&plain, false, false);
    let forward = median_secs(
        || {
            let _ = conv2d(x.clone(), w.clone(), None, options.clone()).into_data();
        },
        7,
    );
    let backward = |x_grad: bool, w_grad: bool| {
        let (x, w) = make(&ad, x_grad, w_grad);
        median_secs(
            || {
                let y = conv2d(x.clone(), w.clone(), None, options.clone());
                let _ = y.sum().backward();
            },
            7,
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

fn main() {
    let device = Device::flex();
    device.seed(0);
    // Rates from mid-sized layers of the shapes the benches cover.
    let spatial = conv_rates(8, 64, 64, [3, 3], 1, 28);
    let pointwise = conv_rates(8, 64, 64, [1, 1], 1, 28);
    let depthwise = conv_rates(8, 64, 64, [3, 1], 64, 28);
    let (m, k, n) = (256, 64, 2304);
    let a = Tensor::<2>::random([m, k], Distribution::Default, &device);
    let b = Tensor::<2>::random([k, n], Distribution::Default, &device);
    let matmul = 2.0 * (m * k * n) as f64
        / median_secs(
            || {
                let _ = a.clone().matmul(b.clone()).into_data();
            },
            9,
        );
    let len = 8 << 20;
    let u = Tensor::<1>::random([len], Distribution::Default, &device);
    let v = Tensor::<1>::random([len], Distribution::Default, &device);
    let bandwidth = (3 * 4 * len) as f64
        / median_secs(
            || {
                let _ = (u.clone() + v.clone()).into_data();
            },
            9,
        );
    let tiny = Tensor::<1>::random([4], Distribution::Default, &device);
    let op_seconds = median_secs(
        || {
            let _ = (tiny.clone() + tiny.clone()).into_data();
        },
        101,
    );
    let model = CostModel {
        spatial,
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
