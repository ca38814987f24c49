//! `compare`: which decomposition, which rank? Pretrain a CNN on Fashion-MNIST, then fine-tune
//! it on MNIST with every method, and record accuracy against trainable parameters.
//!
//! The code runs in four stages, each in a module of its own: [`plan`] (what runs: cells of
//! (setting, method, rank), their learning-rate sweeps and seeds, sliced by `--shard`),
//! [`exec`] (run one spec), [`crate::record`] (append its record to `runs.jsonl`) and
//! [`crate::report`] (summary, report and plots, regenerated from `runs.jsonl`).

pub mod data;
pub mod estimate;
pub mod exec;
pub mod plan;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use lora_conv::functional::full_count;

use crate::error::{ExpError, Result};
use crate::record::{RunLog, Shard, write_atomic};
use crate::report::{self, ReportContext};

pub use plan::{Cell, Method, PRETRAIN_SEED, Plan, PretrainPlan, SWEEP_SEED, Spec};

/// Check the plan and the output dir before anything trains: a bad flag, an unwritable
/// `--out` or an output dir holding runs of another plan is an error here.
///
/// # Errors
/// [`ExpError::Input`] naming the problem.
pub fn check_out(out: &Path, plan_json: &serde_json::Value) -> Result<()> {
    let config = out.join("config.json");
    if let Ok(text) = std::fs::read_to_string(&config) {
        let old: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            ExpError::Input(format!("{}: not a config file ({e})", config.display()))
        })?;
        if old.get("plan") != Some(plan_json) {
            return Err(ExpError::Input(format!(
                "{} holds runs of a different plan (see its config.json); use another --out, \
                 or move it away to start afresh",
                out.display()
            )));
        }
    }
    std::fs::create_dir_all(out)
        .and_then(|()| {
            let probe = out.join(format!(".write-test-{}", std::process::id()));
            std::fs::write(&probe, b"")?;
            std::fs::remove_file(probe)
        })
        .map_err(|e| ExpError::Input(format!("--out {}: cannot write there ({e})", out.display())))
}

/// Where the outputs go by default.
pub fn default_out() -> PathBuf {
    PathBuf::from("results/compare")
}

/// What a `compare` process runs of the plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// The slice of the plan's cells.
    pub shard: Shard,
    /// Stop after pretraining (fills the checkpoint cache for shards to share).
    pub pretrain_only: bool,
}

/// The `compare` experiment: this shard's cells, each swept and then run for every seed, each
/// finished run appended to `out/runs.jsonl` (runs already there are skipped), and the report
/// regenerated from the whole log at the end.
///
/// # Errors
/// Bad input (before any training), missing data (with the fetch command), adapter or I/O
/// errors.
pub fn run(
    plan: &Plan,
    data_dir: &Path,
    out: &Path,
    cache: &Path,
    options: RunOptions,
    device_name: &str,
    device: &Device,
) -> Result<()> {
    plan.check()?;
    let plan_json = serde_json::to_value(plan)
        .map_err(|e| ExpError::Input(format!("serialising the plan: {e}")))?;
    check_out(out, &plan_json)?;
    // Every data file, and the labels, before any training.
    let mnist = data::load_mnist(data_dir, plan)?;
    let fashion_test = data::load_fashion(data_dir, "t10k")?;
    data::require_fashion_train(data_dir)?;
    let mut log = RunLog::open(out)?;

    let pre = data::pretrained(&plan.pretrain, data_dir, cache, &fashion_test, device)?;
    eprintln!(
        "pretrained CNN: Fashion-MNIST test accuracy {:.4}{}",
        pre.test_accuracy,
        if pre.cached {
            " (cached checkpoint)"
        } else {
            ""
        }
    );
    let config = serde_json::json!({
        "plan": plan_json,
        "experiment": "compare",
        "device": device_name,
        "pretrain_test_accuracy": pre.test_accuracy,
        "pretrain_loss_curve": pre.loss_curve,
        "pretrain_checkpoint": pre.path.display().to_string(),
        "data_dir": data_dir.display().to_string(),
        "crate_version": env!("CARGO_PKG_VERSION"),
    });
    write_json(&out.join("config.json"), &config)?;
    if options.pretrain_only {
        eprintln!("pretrained checkpoint: {}", pre.path.display());
        return Ok(());
    }

    let cells = options.shard.select(plan.cells());
    let cx = exec::Context {
        plan,
        base: &pre.model,
        mnist: &mnist,
        device,
    };
    let total: usize = cells.iter().map(|c| plan.run_count(c)).sum();
    let mut done = 0usize;
    for cell in &cells {
        let sweep = plan.sweep_specs(cell);
        for spec in &sweep {
            done += 1;
            if !log.has(&spec.id()) {
                let record = exec::run_spec(&cx, spec)?;
                eprintln!("[{done}/{total}] {}", report::line(&record));
                log.append(record)?;
            }
        }
        let choice = plan::choose_lr(cell, &sweep, &log, plan);
        for spec in plan.final_specs(cell, &choice) {
            done += 1;
            if !log.has(&spec.id()) {
                let record = exec::run_spec(&cx, &spec)?;
                eprintln!("[{done}/{total}] {}", report::line(&record));
                log.append(record)?;
            }
        }
    }
    write_report(out, &config, log.records())
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ExpError::Input(format!("serialising {}: {e}", path.display())))?;
    write_atomic(path, text.as_bytes())
}

/// Regenerate `results.json`, `report.md` and the plots of `out` from its records.
///
/// # Errors
/// I/O errors.
pub fn write_report(
    out: &Path,
    config: &serde_json::Value,
    records: &[crate::record::RunRecord],
) -> Result<()> {
    let plan: Plan = serde_json::from_value(config["plan"].clone())
        .map_err(|e| ExpError::Input(format!("config.json: bad plan ({e})")))?;
    let cnn = &plan.pretrain.cnn;
    let convs: usize = cnn.geometries().iter().map(full_count).sum();
    let head = cnn.widths.last().copied().unwrap_or(1) * cnn.classes + cnn.classes;
    let cx = ReportContext {
        experiment: "compare".into(),
        title: "compare: conv LoRA decompositions, Fashion-MNIST -> MNIST".into(),
        intro: plan.describe(config),
        reference: "full".into(),
        variants: plan.variants.iter().map(|v| v.to_string()).collect(),
        break_even_share: (convs + head) as f64 / cnn.base_params().max(1) as f64,
        tasks: plan.tasks(),
        config: config.clone(),
    };
    report::write(out, &cx, records)
}

/// `compare report --out OUT SHARD_DIRS...`: merge the runs of shard output dirs (which must
/// hold the same plan, of `compare` or of `inflate3d`) into `OUT`, and write the report there.
///
/// # Errors
/// Dirs of different plans, unreadable records, I/O errors.
pub fn merge(out: &Path, dirs: &[PathBuf]) -> Result<usize> {
    let mut config: Option<serde_json::Value> = None;
    let mut records = Vec::new();
    for dir in dirs {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ExpError::Input(format!(
                "{}: {e} (not a compare output dir?)",
                path.display()
            ))
        })?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ExpError::Input(format!("{}: {e}", path.display())))?;
        if let Some(first) = &config {
            if first.get("plan") != value.get("plan") {
                return Err(ExpError::Input(format!(
                    "{} ran a different plan from {}; only shards of one plan merge",
                    dir.display(),
                    dirs[0].display()
                )));
            }
        } else {
            config = Some(value);
        }
        records.extend(crate::record::read_runs(&dir.join("runs.jsonl"))?);
    }
    let config = config.ok_or_else(|| ExpError::Input("report: no shard dirs given".into()))?;
    let plan_json = config["plan"].clone();
    check_out(out, &plan_json)?;
    let mut log = RunLog::open(out)?;
    log.merge(records)?;
    write_json(&out.join("config.json"), &config)?;
    match config["experiment"].as_str() {
        Some("inflate3d") => crate::inflate3d::write_report(out, &config, log.records())?,
        _ => write_report(out, &config, log.records())?,
    }
    Ok(log.records().len())
}
