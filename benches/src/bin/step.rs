//! One training step (forward, cross-entropy, backward, Adam) of a model and method, timed over a
//! few steps on one fixed random batch, printed as one JSON line. `scripts/peer-bench.sh` runs it
//! alternately with `scripts/peer_bench.py`, PyTorch's side of the same step.
//!
//! ```text
//! step --model cnn|resnet29 --method full|head|<adapter type> [--form weight|bypass|auto]
//!      [--rank 4] [--batch B] [--size S] [--steps 10] [--warmup 3] [--device cpu|wgpu|cuda]
//! ```
//!
//! `cnn` is the bench CNN (`benches::cnn`, batch 64 at 28 px by default); `resnet29` is the
//! transfer study's backbone with fresh weights (timing does not depend on them) and a 4-class
//! head, batch 32 at 150 px by default. Adapter methods adapt every conv at `--rank` (capped per
//! layer at the type's limit), freeze the convs and the norm or affine layers, and train the
//! head; `head` trains the head alone.

use std::time::Instant;

use benches::cnn;
use benches::resnet::{self, Stepper};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor};
use clap::Parser;
use lora_conv::{ConvVariant, ForwardMode};

#[derive(Parser, Debug)]
#[command(about = "Time one training step of a model and method; prints one JSON line")]
struct Args {
    /// `cnn` or `resnet29`.
    #[arg(long, default_value = "cnn")]
    model: String,
    /// `full`, `head`, or an adapter type (`locon`, `tucker2`, `cp`, ...).
    #[arg(long, default_value = "full")]
    method: String,
    /// Forward form of an adapter: `weight`, `bypass` or `auto`.
    #[arg(long, default_value = "auto")]
    form: String,
    /// Adapter rank (capped per layer at the type's limit).
    #[arg(long, default_value_t = 4)]
    rank: usize,
    /// Batch size (default: 64 for cnn, 32 for resnet29).
    #[arg(long)]
    batch: Option<usize>,
    /// Image size (default: 28 for cnn, 150 for resnet29).
    #[arg(long)]
    size: Option<usize>,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// `cpu`, `wgpu[:N]` or `cuda[:N]` (the latter two need their cargo feature).
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() {
    experiments::alloc::keep_freed_memory();
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("step: {e}");
        std::process::exit(2);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let spec = experiments::cli::parse_device(&args.device)?;
    experiments::cli::quiet_headless_wgpu(&spec);
    let device = spec.device().map_err(|e| e.to_string())?.autodiff();
    device.seed(0);
    let mode = match args.form.as_str() {
        "weight" => ForwardMode::WeightSpace,
        "bypass" => ForwardMode::Bypass,
        "auto" => ForwardMode::Auto,
        other => return Err(format!("--form {other}: use weight, bypass or auto")),
    };
    let adapter = match args.method.as_str() {
        "full" | "head" => None,
        name => Some(
            name.parse::<ConvVariant>()
                .map_err(|e| format!("--method {name}: {e}"))?,
        ),
    };
    let (batch, size) = match args.model.as_str() {
        "resnet29" => (args.batch.unwrap_or(32), args.size.unwrap_or(150)),
        _ => (args.batch.unwrap_or(64), args.size.unwrap_or(28)),
    };
    let (times, trainable) = match args.model.as_str() {
        "cnn" => {
            let base = cnn::config().init(&device);
            let x = Tensor::random(
                [batch, 1, size, size],
                Distribution::Normal(0., 1.),
                &device,
            );
            let y = labels(batch, 10, &device);
            match adapter {
                None if args.method == "full" => time(base, |m, x| m.forward(x), x, y, args),
                None => {
                    // A fresh head: the frozen copy shares its parameters with `base`.
                    let mut frozen = base.no_grad();
                    frozen.head = cnn::config().head(&device);
                    time(frozen, |m, x| m.forward(x), x, y, args)
                }
                Some(v) => {
                    let model = cnn::adapted(&base, v, args.rank, mode, &device)
                        .map_err(|e| e.to_string())?;
                    time(model, |m, x| m.forward(x), x, y, args)
                }
            }
        }
        "resnet29" => {
            let (x, y) = resnet::batch(batch, size, &device);
            match adapter {
                None if args.method == "full" => {
                    time(resnet::full(&device), |m, x| m.forward(x), x, y, args)
                }
                None => time(resnet::head_only(&device), |m, x| m.forward(x), x, y, args),
                Some(v) => {
                    let model =
                        resnet::adapted(v, args.rank, mode, &device).map_err(|e| e.to_string())?;
                    time(model, |m, x| m.forward(x), x, y, args)
                }
            }
        }
        other => return Err(format!("--model {other}: use cnn or resnet29")),
    };
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    let min = sorted.first().copied().unwrap_or(f64::NAN);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_default();
    let line = serde_json::json!({
        "impl": "burn",
        "device": spec.to_string(),
        "model": args.model,
        "method": args.method,
        "form": args.form,
        "rank": args.rank,
        "batch": batch,
        "size": size,
        "rayon_threads": threads,
        "step_ms_min": min,
        "step_ms_median": median,
        "step_ms_all": times,
        "trainable_params": trainable,
    });
    println!("{line}");
    Ok(())
}

fn labels(batch: usize, classes: usize, device: &Device) -> Tensor<1, Int> {
    let v: Vec<i64> = (0..batch).map(|i| (i % classes) as i64).collect();
    Tensor::from_data(v.as_slice(), device)
}

/// Time `args.steps` steps after `args.warmup`; the step times in ms and the trainable count.
fn time<M: Module>(
    model: M,
    forward: impl Fn(&M, Tensor<4>) -> Tensor<2>,
    x: Tensor<4>,
    y: Tensor<1, Int>,
    args: &Args,
) -> (Vec<f64>, usize) {
    let trainable = lora_core::param_counts(&model).trainable;
    let device = x.device();
    let mut stepper = Stepper::new(model, forward, x, y);
    let mut times = Vec::new();
    for i in 0..args.warmup + args.steps {
        let start = Instant::now();
        stepper.step();
        // A GPU queues the backward pass and the update: wait for them before reading the clock.
        let _ = device.sync();
        if i >= args.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    (times, trainable)
}
