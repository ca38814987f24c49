//! The op profile of the bench CNN's training step: for each of its five conv blocks, the conv's
//! forward, input gradient and weight gradient (burn's and this project's), one matmul of the
//! conv's FLOPs, and the batch
//! norm, max pool and ReLU forward + backward, each timed alone as the median of `--runs`
//! after one warm-up. Prints one JSON line per op. `scripts/op-profile.sh` runs it alternately
//! with `scripts/peer_ops.py`, PyTorch's side of the same ops.
//!
//! ```text
//! ops [--batch 64] [--runs 7]
//! ```

use std::time::Instant;

use burn::backend::Flex;
use burn::backend::ops::ModuleOps;
use burn::nn::BatchNormConfig;
use burn::nn::pool::MaxPool2dConfig;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor, activation};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Time the bench CNN's ops one by one; prints one JSON line per op")]
struct Args {
    /// Batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Timed runs per op (the median is printed).
    #[arg(long, default_value_t = 7)]
    runs: usize,
}

/// The bench CNN's conv blocks: input channels, output channels, image size; a 2x2 max pool
/// follows the second and fourth.
const BLOCKS: [(usize, usize, usize, bool); 5] = [
    (1, 32, 28, false),
    (32, 32, 28, true),
    (32, 64, 14, false),
    (64, 64, 14, true),
    (64, 128, 7, false),
];

fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn flex<const D: usize>(t: Tensor<D>) -> Result<burn::backend::tensor::FloatTensor<Flex>, String> {
    t.try_into_primitive::<Flex>()
        .map_err(|_| "a plain flex tensor was expected".to_string())
}

fn main() {
    experiments::alloc::keep_freed_memory();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("ops: {e}");
        std::process::exit(2);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let plain = Device::flex();
    let ad = plain.clone().autodiff();
    let n = Distribution::Normal(0.0, 1.0);
    let b = args.batch;
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let print = |block: usize, op: &str, which: &str, ms: f64| {
        println!(
            "{}",
            serde_json::json!({"impl": "burn", "batch": b, "block": block, "op": op, "which": which, "ms": ms})
        );
    };
    for (i, &(cin, cout, s, pool)) in BLOCKS.iter().enumerate() {
        let x = Tensor::<4>::random([b, cin, s, s], n, &plain);
        let w = Tensor::<4>::random([cout, cin, 3, 3], n, &plain);
        let dy = Tensor::<4>::random([b, cout, s, s], n, &plain);
        let ms = median_ms(args.runs, || {
            let _ = conv2d(x.clone(), w.clone(), None, options.clone()).into_data();
        });
        print(i, "conv forward", "burn", ms);
        let (xp, wp, dyp) = (flex(x.clone())?, flex(w.clone())?, flex(dy.clone())?);
        let ms = median_ms(args.runs, || {
            let dx = Flex::conv2d_x_backward(xp.clone(), wp.clone(), dyp.clone(), options.clone());
            let _ = Tensor::<4>::from_primitive::<Flex>(dx).into_data();
        });
        print(i, "conv input gradient", "burn", ms);
        let ms = median_ms(args.runs, || {
            let dw =
                Flex::conv2d_weight_backward(xp.clone(), wp.clone(), dyp.clone(), options.clone());
            let _ = Tensor::<4>::from_primitive::<Flex>(dw).into_data();
        });
        print(i, "conv weight gradient", "burn", ms);
        let ms = median_ms(args.runs, || {
            let dw = lora_conv::kernels::conv2d::weight_backward(
                x.clone(),
                w.clone(),
                dy.clone(),
                &options,
            );
            let _ = dw.map(|t| t.into_data());
        });
        print(i, "conv weight gradient", "ours", ms);
        // One matmul of the conv's FLOPs, in the im2col orientation `[b·s·s, cin·9] x [cin·9,
        // cout]`: what an im2col + gemm conv could reach at best.
        let a = Tensor::<2>::random([b * s * s, cin * 9], n, &plain);
        let m = Tensor::<2>::random([cin * 9, cout], n, &plain);
        let ms = median_ms(args.runs, || {
            let _ = a.clone().matmul(m.clone()).into_data();
        });
        print(i, "matmul of the conv's FLOPs", "burn", ms);

        // Forward + backward of the layers after the conv, on an autodiff device, with a
        // random cotangent, as PyTorch's side does.
        let y = Tensor::<4>::random([b, cout, s, s], n, &ad);
        let cot = Tensor::<4>::random([b, cout, s, s], n, &ad);
        let norm = BatchNormConfig::new(cout).init(&ad);
        let ms = median_ms(args.runs, || {
            let yi = y.clone().require_grad();
            let g = (experiments::norm::batch_norm(&norm, yi.clone()) * cot.clone())
                .sum()
                .backward();
            let _ = yi.grad(&g).map(|t| t.into_data());
        });
        print(i, "batch norm", "ours", ms);
        let ms = median_ms(args.runs, || {
            let yi = y.clone().require_grad();
            let g = (activation::relu(yi.clone()) * cot.clone())
                .sum()
                .backward();
            let _ = yi.grad(&g).map(|t| t.into_data());
        });
        print(i, "relu", "burn", ms);
        if pool {
            let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
            let pcot = Tensor::<4>::random([b, cout, s / 2, s / 2], n, &ad);
            let ms = median_ms(args.runs, || {
                let yi = y.clone().require_grad();
                let g = (pool.forward(yi.clone()) * pcot.clone()).sum().backward();
                let _ = yi.grad(&g).map(|t| t.into_data());
            });
            print(i, "max pool", "burn", ms);
        }
    }
    Ok(())
}
