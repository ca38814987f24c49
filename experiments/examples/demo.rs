//! Linear-LoRA demo: a frozen random MLP learns a rank-r perturbation of itself.
//!
//! `cargo run -p experiments --example demo -- [--device cpu|wgpu|cuda] [--steps N]`

use std::process::ExitCode;
use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Distribution, Tensor};
use clap::Parser;
use experiments::cli::parse_device;
use lora_core::{DeviceSpec, LinearFactory, LoraConfig, attach, merge, param_counts};

#[derive(Parser, Debug)]
#[command(about = "Linear LoRA recovers a low-rank perturbation of a frozen MLP")]
struct Args {
    /// `cpu`, `wgpu[:N]` or `cuda[:N]`.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: DeviceSpec,
    /// Adam steps.
    #[arg(long, default_value_t = 300)]
    steps: usize,
    /// LoRA rank (the perturbation has the same rank).
    #[arg(long, default_value_t = 4)]
    rank: usize,
    /// Random seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        self.fc2.forward(relu(self.fc1.forward(x)))
    }
}

fn main() -> ExitCode {
    experiments::alloc::keep_freed_memory();
    let args = Args::parse();
    experiments::cli::quiet_headless_wgpu(&args.device);
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), lora_core::LoraError> {
    let device: Device = args.device.device()?.autodiff();
    device.seed(args.seed);
    let (d_in, hidden, d_out) = (64, 128, 16);
    let base = Mlp {
        fc1: LinearConfig::new(d_in, hidden).init(&device),
        fc2: LinearConfig::new(hidden, d_out).init(&device),
    };
    let perturb = |w: Tensor<2>| {
        let [a, b] = w.dims();
        let u = Tensor::<2>::random([a, args.rank], Distribution::Normal(0.0, 0.3), &device);
        let v = Tensor::<2>::random([args.rank, b], Distribution::Normal(0.0, 0.3), &device);
        w + u.matmul(v)
    };
    let target = Mlp {
        fc1: Linear {
            weight: base.fc1.weight.clone().map(&perturb),
            bias: base.fc1.bias.clone(),
        },
        fc2: Linear {
            weight: base.fc2.weight.clone().map(&perturb),
            bias: base.fc2.bias.clone(),
        },
    };
    let x = Tensor::<2>::random([512, d_in], Distribution::Normal(0.0, 1.0), &device);
    let y = target.forward(x.clone()).detach();

    let mut model = attach(
        &base,
        &LoraConfig::new(args.rank, args.rank as f64),
        &LinearFactory,
    )?;
    let counts = param_counts(&model);
    println!(
        "device {}: {} of {} parameters trainable ({:.2}%)",
        args.device,
        counts.trainable,
        counts.total,
        100.0 * counts.trainable_fraction()
    );
    let mut optim = AdamConfig::new().init();
    let loss_of = |m: &Mlp| (m.forward(x.clone()) - y.clone()).powi_scalar(2).mean();
    let start = Instant::now();
    let first = loss_of(&model).into_scalar::<f32>();
    for step in 1..=args.steps {
        let loss = loss_of(&model);
        if step % 50 == 0 || step == 1 {
            println!(
                "step {step:4}  mse {:.6}",
                loss.clone().into_scalar::<f32>()
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    let last = loss_of(&model).into_scalar::<f32>();
    let merged = merge(&model)?;
    let merged_loss = loss_of(&merged).into_scalar::<f32>();
    println!(
        "mse {first:.6} -> {last:.6} ({:.1}x lower) in {:.2}s; after merge {merged_loss:.6}",
        first / last.max(f32::MIN_POSITIVE),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
