//! Does 2D -> 3D inflation plus conv LoRA pay off on volumes? Brain MRI lobes, left -> mirrored
//! right hemisphere of one brain.
//!
//! `cargo run -p experiments --bin inflate3d -- [--device cpu|wgpu|cuda] [--quick] [--shard I/N]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use experiments::cli::{CommonArgs, run_experiment};
use experiments::inflate3d::{Plan, run};

#[derive(Parser, Debug)]
#[command(about = "Inflate a pretrained 2D CNN to 3D and fine-tune it on brain MRI patches")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let common = Args::parse().common;
    let overrides = match common.overrides() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = Plan::new(common.quick, &overrides);
    let out = common
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results/inflate3d"));
    let cache = common
        .cache
        .clone()
        .unwrap_or_else(|| PathBuf::from("results/compare"));
    let device = common.device;
    run_experiment(&common.device, &out, |d| {
        run(
            &plan,
            &common.data,
            &cache,
            &out,
            common.shard,
            &device.to_string(),
            d,
        )
    })
}
