//! Does 2D -> 3D inflation plus conv LoRA pay off on volumes? Brain MRI lobes, left -> mirrored
//! right hemisphere of one brain.
//!
//! `cargo run -p experiments --bin inflate3d -- [--device cpu|wgpu|cuda] [--quick] [--shard I/N]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use experiments::cli::{CommonArgs, run_experiment};
use experiments::data::brain::BrainLabel;
use experiments::inflate3d::{Plan, run};

#[derive(Parser, Debug)]
#[command(about = "Inflate a pretrained 2D CNN to 3D and fine-tune it on brain MRI patches")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The patch label: `lobe` (the AAL lobe at the centre, largely a function of position) or
    /// `tissue` (terciles of the local T1 intensity: local appearance).
    #[arg(long, default_value = "lobe")]
    label: BrainLabel,
}

fn main() -> ExitCode {
    experiments::alloc::keep_freed_memory();
    let args = Args::parse();
    let common = args.common;
    let overrides = match common.overrides() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if common.train_bn {
        eprintln!(
            "error: --train-bn is a compare option; inflate3d's adapters train the head only"
        );
        return ExitCode::FAILURE;
    }
    let mut plan = Plan::new(common.quick, &overrides);
    plan.patches.label = args.label;
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
