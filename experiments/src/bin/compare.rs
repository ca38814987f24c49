//! Which conv LoRA decomposition, which rank? Fashion-MNIST -> MNIST on a small CNN.
//!
//! `cargo run -p experiments --bin compare -- [--device cpu|wgpu|cuda] [--quick]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use experiments::cli::{parse_device, run_experiment};
use experiments::compare::{Plan, default_out, run};
use lora_core::DeviceSpec;

#[derive(Parser, Debug)]
#[command(
    about = "Compare HF, Tucker-2 and CP conv LoRA against full, head-only and from-scratch training"
)]
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
    /// Output dir (results.json, report.md, plots, the pretrained checkpoint).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seeds per configuration.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let plan = Plan::new(args.quick, args.seeds);
    let out = args.out.clone().unwrap_or_else(default_out);
    run_experiment(&args.device, &out, |device| {
        run(&plan, &args.data, &out, &args.device.to_string(), device)
    })
}
