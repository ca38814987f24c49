//! Does 2D -> 3D inflation plus conv LoRA pay off on volumes? Brain MRI lobes, left -> right.
//!
//! `cargo run -p experiments --bin inflate3d -- [--device cpu|wgpu|cuda] [--quick]`

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
    /// Where the pretrained 2D checkpoint is cached (shared with `compare`).
    #[arg(long, default_value = "results/compare")]
    cache: PathBuf,
}

fn main() -> ExitCode {
    let Args { common, cache } = Args::parse();
    let CommonArgs {
        device,
        quick,
        data,
        out,
        seeds,
    } = common;
    let plan = Plan::new(quick, seeds);
    let out = out.unwrap_or_else(|| PathBuf::from("results/inflate3d"));
    run_experiment(&device, &out, |d| {
        run(&plan, &data, &cache, &out, &device.to_string(), d)
    })
}
