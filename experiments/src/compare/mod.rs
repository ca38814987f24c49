//! `compare`: which decomposition, which rank? Pretrain a CNN on Fashion-MNIST, then fine-tune
//! it on MNIST with every method, and record accuracy against trainable parameters.
//!
//! A study on the [`crate::harness`]: [`plan`] (the typed plan, its cells of (setting, method,
//! rank) and their forms), [`split`] (MNIST's pool, validation and test splits),
//! [`baselines`] (`scratch`, `full`, `head`), [`exec`] (run one spec), [`report`] (its prose),
//! and [`estimate`] (`--estimate`: the plan's wall time on this machine). Pretraining is
//! [`crate::pretrain`]'s.

pub mod baselines;
pub mod estimate;
pub mod exec;
pub mod plan;
pub mod report;
pub mod split;

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::error::Result;
use crate::harness::{self, ConfigOf, Env, Experiment, Protocol, RunRecord, Shard};
use crate::pretrain::{load_fashion, pretrained, require_fashion_train};
use crate::report::ReportSpec;

pub use plan::{Cell, Method, PRETRAIN_SEED, Plan, PretrainPlan, SWEEP_SEED, Spec};

impl Experiment for Plan {
    const NAME: &'static str = "compare";
    type Cell = Cell;
    type Facts = report::Facts;
    type Context = exec::Context;

    fn check(&self) -> Result<()> {
        Plan::check(self)
    }

    fn protocol(&self) -> Protocol<'_> {
        Plan::protocol(self)
    }

    fn cells(&self) -> Vec<Cell> {
        Plan::cells(self)
    }

    fn lr_grid(&self, cell: &Cell) -> &[f64] {
        self.grid(cell.method)
    }

    fn finals(&self, cell: &Cell) -> Vec<Cell> {
        self.forms(cell)
    }

    /// Every data file and label before any training: MNIST's splits, the Fashion-MNIST test
    /// and training files, both of the shape the CNN takes; then the pretrained CNN (from the
    /// cache when there).
    fn prepare(&self, env: &Env<'_>) -> Result<(exec::Context, report::Facts)> {
        let input = self.pretrain.input();
        let mnist = split::load_mnist(env.data, self)?;
        mnist.shape.expect(&input, "MNIST")?;
        let fashion_test = load_fashion(env.data, "t10k")?;
        harness::dataset::DataShape::of(&fashion_test, input.classes)
            .expect(&input, "Fashion-MNIST")?;
        require_fashion_train(env.data)?;
        let pre = pretrained(
            &self.pretrain,
            env.data,
            env.cache,
            &fashion_test,
            env.device,
        )?;
        eprintln!(
            "pretrained CNN: Fashion-MNIST test accuracy {:.4}{}; checkpoint {}",
            pre.test_accuracy,
            if pre.cached {
                " (cached checkpoint)"
            } else {
                ""
            },
            pre.path.display()
        );
        let facts = report::Facts {
            pretrain_test_accuracy: pre.test_accuracy,
            pretrain_loss_curve: pre.loss_curve,
            pretrain_checkpoint: pre.path.display().to_string(),
        };
        let cx = exec::Context {
            base: pre.model,
            mnist,
            device: env.device.clone(),
        };
        Ok((cx, facts))
    }

    fn run(&self, cx: &exec::Context, spec: &Spec) -> Result<RunRecord> {
        exec::run_spec(self, cx, spec)
    }

    fn report(&self, config: &ConfigOf<Plan>) -> ReportSpec {
        report::spec(self, config)
    }
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

/// The `compare` experiment through the harness: this shard's cells, each swept and then run
/// for every seed, each finished run appended to `out/runs.jsonl` (runs already there are
/// skipped), and the report regenerated from the whole log at the end.
///
/// # Errors
/// Bad input (before any training), an output dir in use, missing data (with the fetch
/// command), adapter or I/O errors.
pub fn run(
    plan: &Plan,
    data_dir: &Path,
    out: &Path,
    cache: &Path,
    options: RunOptions,
    device_name: &str,
    device: &Device,
) -> Result<()> {
    let env = Env {
        data: data_dir,
        cache,
        device,
        device_name,
    };
    let options = harness::RunOptions {
        shard: options.shard,
        prepare_only: options.pretrain_only,
    };
    harness::run(plan, &env, out, options)
}
