//! Does 2D -> 3D inflation plus conv LoRA pay off on volumes? Brain MRI patches: left -> mirrored
//! right hemisphere of one brain, or Colin27 -> ICBM152 (`--test-brain icbm152`).
//!
//! `cargo run -p experiments --bin inflate3d -- [--device cpu|wgpu|cuda] [--quick] [--shard I/N]
//! [--test-brain colin27-right|icbm152] [--label lobe|tissue|segment]`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use experiments::cli::{CommonArgs, run_experiment};
use experiments::data::brain::{BrainLabel, TestBrain};
use experiments::inflate3d::{Plan, run};

#[derive(Parser, Debug)]
#[command(about = "Inflate a pretrained 2D CNN to 3D and fine-tune it on brain MRI patches")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The patch label: `lobe` (the AAL lobe at the centre, largely a function of position),
    /// `tissue` (terciles of the local T1 intensity, within Colin27 only) or `segment` (CSF,
    /// grey or white matter by a per-brain intensity procedure, with `--test-brain icbm152`).
    /// Default: `lobe` within Colin27, `segment` with ICBM152.
    #[arg(long)]
    label: Option<BrainLabel>,
    /// Where the test patches come from: `colin27-right` (within-subject: train on Colin27's
    /// left hemisphere, test on its mirrored right) or `icbm152` (cross-template: train on
    /// brain-extracted Colin27, test on the ICBM152 2009a template).
    #[arg(long, default_value = "colin27-right")]
    test_brain: TestBrain,
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
    plan.patches.test_brain = args.test_brain;
    plan.patches.label = args.label.unwrap_or(match args.test_brain {
        TestBrain::Colin27Right => BrainLabel::Lobe,
        TestBrain::Icbm152 => BrainLabel::Segment,
    });
    let out = common.out.clone().unwrap_or_else(|| match args.test_brain {
        TestBrain::Colin27Right => PathBuf::from("results/inflate3d"),
        TestBrain::Icbm152 => PathBuf::from("results/inflate3d-icbm152"),
    });
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
