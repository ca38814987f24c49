//! Does 2D -> 3D inflation plus conv LoRA pay off on volumes? Brain MRI lobes, left -> right.
//!
//! `cargo run -p experiments --bin inflate3d -- [--device cpu|wgpu|cuda] [--quick]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use experiments::cli::{parse_device, run_experiment};
use experiments::inflate3d::{Plan, run};
use lora_core::DeviceSpec;

#[derive(Parser, Debug)]
#[command(about = "Inflate a pretrained 2D CNN to 3D and fine-tune it on brain MRI patches")]
struct Args {
    /// `cpu`, `wgpu[:N]` or `cuda[:N]`.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: DeviceSpec,
    /// A small smoke configuration (minutes on 2 CPU cores).
    #[arg(long)]
    quick: bool,
    /// Data dir, as filled by scripts/fetch-data.sh.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Output dir (results.json, report.md, plots).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the pretrained 2D checkpoint is cached (shared with `compare`).
    #[arg(long, default_value = "results/compare")]
    cache: PathBuf,
    /// Seeds per configuration.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = Plan::new(args.quick, args.seeds);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results/inflate3d"));
    run_experiment(&args.device, &out, |device| {
        run(
            &plan,
            &args.data,
            &args.cache,
            &out,
            &args.device.to_string(),
            device,
        )
    })
}
