//! Which conv LoRA decomposition, which rank? Fashion-MNIST -> MNIST on a CNN.
//!
//! `cargo run -p experiments --bin compare -- [--device cpu|wgpu|cuda] [--quick] [--shard I/N]`
//! `cargo run -p experiments --bin compare -- report --out OUT SHARD_DIRS...`

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use experiments::cli::{CommonArgs, report_command, run_experiment};
use experiments::compare::estimate::{describe, probe};
use experiments::compare::{Plan, RunOptions, default_out, run};

#[derive(Parser, Debug)]
#[command(
    about = "Compare conv LoRA types (LoCon, Tucker-2, CP by default) against full, head-only and from-scratch training",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    /// Measure steps/s of the plan's CNN with a short probe on random data, print the plan's
    /// estimated wall time, and exit (nothing is written).
    #[arg(long, conflicts_with = "pretrain_only")]
    estimate: bool,
    /// Pretrain (or find the cached checkpoint) and stop: run this once before launching
    /// shards that share one --cache.
    #[arg(long)]
    pretrain_only: bool,
    /// Steps per probe of --estimate.
    #[arg(long, default_value_t = 20)]
    probe_steps: usize,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Merge the runs.jsonl of shard output dirs (of one plan, of any study: `compare`,
    /// `inflate3d`) into OUT and write the report; with OUT among the dirs, regenerate its
    /// report from its runs.jsonl.
    Report {
        /// Where the merged runs.jsonl, results.json, report.md and plots go.
        #[arg(long)]
        out: PathBuf,
        /// The shards' output dirs.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    experiments::alloc::keep_freed_memory();
    let args = Args::parse();
    if let Some(Command::Report { out, dirs }) = args.command {
        return report_command(&out, &dirs);
    }
    let common = args.common;
    let overrides = match common.overrides() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plan = Plan::new(common.quick, &overrides);
    let out = common.out.clone().unwrap_or_else(default_out);
    let cache = common.cache.clone().unwrap_or_else(|| out.clone());
    let device = common.device;
    if args.estimate {
        let cached = experiments::pretrain::cache_key(&plan.pretrain, &common.data)
            .is_ok_and(|h| cache.join(format!("pretrained-{h:016x}.bin")).is_file());
        return match common
            .device
            .device()
            .map_err(|e| e.to_string())
            .and_then(|d| {
                let d = d.autodiff();
                experiments::train::track_memory(false);
                probe(&plan, args.probe_steps, &d).map_err(|e| e.to_string())
            }) {
            Ok(t) => {
                print!("{}", describe(&plan, &t, cached));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    run_experiment(&common.device, &out, |d| {
        let options = RunOptions {
            shard: common.shard,
            pretrain_only: args.pretrain_only,
        };
        run(
            &plan,
            &common.data,
            &out,
            &cache,
            options,
            &device.to_string(),
            d,
        )
    })
}
