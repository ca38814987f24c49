//! Does conv LoRA transfer on a real network? face-api's pretrained ResNet-29 fine-tuned on ELPV
//! solar-cell defects: probe, affine-only, full, and adapters at matched budgets.
//!
//! `cargo run -p experiments --bin elpv -- [--profile quick|default|full] [--device cpu|wgpu|cuda] [--shard I/N]`
//! `cargo run -p experiments --bin elpv -- report --out OUT SHARD_DIRS...`
//!
//! Exit codes: 0 done; 1 bad input, missing data (with the fetch command), an output dir in use
//! or a failed run; 2 a command line clap cannot parse.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use experiments::cli::{parse_device, report_command, run_experiment};
use experiments::elpv::{Plan, Profile, default_out, run};
use experiments::harness::Shard;
use lora_conv::ConvVariant;
use lora_core::DeviceSpec;

#[derive(Parser, Debug)]
#[command(
    about = "Fine-tune face-api's pretrained ResNet-29 on ELPV solar-cell defects: probe, affine-only, full and conv adapters at matched parameter budgets",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// `quick` (a smoke run: 48 images, 2 steps), `default` (the reduced protocol: about 90
    /// minutes on 2 CPU cores), `full` (150 px, 2x5-fold, every type at 1/3/8%).
    #[arg(long, value_enum, default_value = "default")]
    profile: Profile,
    /// `cpu`, `wgpu[:N]` or `cuda[:N]`.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    device: DeviceSpec,
    /// Data dir, as filled by scripts/fetch-data.sh (needs `elpv/` and `face-api/`).
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Output dir (runs.jsonl, results.json, report.md, plots) [default: results/elpv]. A rerun
    /// with the same dir skips the runs already in its runs.jsonl.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Run slice I (0-based) of N of the plan's cells, e.g. `--shard 2/8`; merge the shards'
    /// output dirs with the `report` subcommand.
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// Input side in px (103..=300; the profile's: 112, or 150 for `full`).
    #[arg(long)]
    size: Option<usize>,
    /// Folds per repeat.
    #[arg(long)]
    folds: Option<usize>,
    /// Repeats of the k-fold split.
    #[arg(long)]
    repeats: Option<usize>,
    /// Run the first N splits only (paired across methods) [default: all folds x repeats].
    #[arg(long)]
    splits: Option<usize>,
    /// Optimizer steps of every final run.
    #[arg(long)]
    steps: Option<usize>,
    /// Examples per step.
    #[arg(long)]
    batch: Option<usize>,
    /// Budgets in percent of the conv weights, e.g. `1,3,8`.
    #[arg(long, value_delimiter = ',')]
    budgets: Option<Vec<f64>>,
    /// Adapter types by registered name, e.g. `locon,tucker2,cp`.
    #[arg(long, value_delimiter = ',')]
    types: Option<Vec<ConvVariant>>,
    /// Use only N rows of labels.csv, evenly spaced.
    #[arg(long)]
    max_images: Option<usize>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Merge the runs.jsonl of shard output dirs (of one plan) into OUT and write the report;
    /// with OUT among the dirs, regenerate its report from its runs.jsonl.
    Report {
        /// Where the merged runs.jsonl, results.json, report.md and plots go.
        #[arg(long)]
        out: PathBuf,
        /// The shards' output dirs.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
    },
}

impl Args {
    fn plan(&self) -> Plan {
        let mut plan = Plan::new(self.profile);
        if let Some(v) = self.size {
            plan.size = v;
        }
        if let Some(v) = self.folds {
            plan.folds = v;
        }
        if let Some(v) = self.repeats {
            plan.repeats = v;
        }
        let splits = self.splits.unwrap_or(plan.folds * plan.repeats);
        plan.seeds = (0..splits as u64).collect();
        if let Some(v) = self.steps {
            plan.steps = v;
        }
        if let Some(v) = self.batch {
            plan.batch_size = v;
        }
        if let Some(v) = &self.budgets {
            plan.budgets = v.iter().map(|p| p / 100.0).collect();
        }
        if let Some(v) = &self.types {
            plan.types.clone_from(v);
        }
        if self.max_images.is_some() {
            plan.max_images = self.max_images;
        }
        plan
    }
}

fn main() -> ExitCode {
    experiments::alloc::keep_freed_memory();
    let args = Args::parse();
    if let Some(Command::Report { out, dirs }) = &args.command {
        return report_command(out, dirs);
    }
    let plan = args.plan();
    let out = args.out.clone().unwrap_or_else(default_out);
    run_experiment(&args.device, &out, |d| {
        run(
            &plan,
            &args.data,
            &out,
            args.shard,
            &args.device.to_string(),
            d,
        )
    })
}
