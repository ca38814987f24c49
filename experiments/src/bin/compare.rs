//! Which conv LoRA decomposition, which rank? Fashion-MNIST -> MNIST on a small CNN.
//!
//! `cargo run -p experiments --bin compare -- [--device cpu|wgpu|cuda] [--quick]`

use std::process::ExitCode;

use clap::Parser;
use experiments::cli::{CommonArgs, run_experiment};
use experiments::compare::{Plan, default_out, run};

#[derive(Parser, Debug)]
#[command(
    about = "Compare HF, Tucker-2 and CP conv LoRA against full, head-only and from-scratch training"
)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let CommonArgs {
        device,
        quick,
        data,
        out,
        seeds,
    } = Args::parse().common;
    let plan = Plan::new(quick, seeds);
    let out = out.unwrap_or_else(default_out);
    run_experiment(&device, &out, |d| {
        run(&plan, &data, &out, &device.to_string(), d)
    })
}
