//! The harness every study runs on. A study is a typed plan implementing [`Experiment`]: its
//! cells, how to prepare its data, how to run one [`Spec`], and its report sections. The
//! harness owns the rest:
//!
//! - [`protocol`]: paired seeds, one step budget, a learning-rate sweep per cell scored on
//!   validation data only, then one final run per seed at the chosen rate;
//! - [`stats`]: means, Student-t intervals, paired differences, and the Nadeau–Bengio
//!   correction for repeated overlapping splits;
//! - [`driver`]: check and lock the output dir, run the sweeps, choose, run the finals, skip
//!   what `runs.jsonl` already holds (resume), slice by `--shard`, merge shards and regenerate
//!   reports from `runs.jsonl`;
//! - [`record`] and [`runlog`]: the one run-record builder (each record stamped by
//!   [`machine`]: commit, CPU model, ISA extensions, threads) and the one `runs.jsonl` writer;
//! - [`outdir`]: one writer per output dir (a lock file), and the typed `config.json`.
//!
//! `docs/experiments.md` ("Adding a study") walks through a new study.

pub mod dataset;
pub mod driver;
pub mod fit;
pub mod machine;
pub mod outdir;
pub mod protocol;
pub mod record;
pub mod runlog;
pub mod stats;

use std::fmt::Debug;
use std::path::Path;

use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::report::{ReportSpec, SummaryRow};

pub use driver::{RunOptions, merge, regenerate, run, write_report};
pub use outdir::{Config, ConfigOf, OutDir};
pub use protocol::{Cell, Labels, Phase, Protocol, SWEEP_SEED, Spec};
pub use record::{RecordBuilder, RunHead, RunRecord};
pub use runlog::{RunLog, Shard};

/// What a study's preparation may use: where the data and the checkpoint cache are, and the
/// device to train on.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// Data dir, as `scripts/fetch-data.sh` fills it.
    pub data: &'a Path,
    /// Where cached checkpoints (pretraining) live.
    pub cache: &'a Path,
    /// The training (autodiff) device.
    pub device: &'a Device,
    /// The device's name, for `config.json`.
    pub device_name: &'a str,
}

/// A study: its typed plan (this type, stored in `config.json` and compared on resume and
/// merge), its cells, how to run one spec, and its report.
pub trait Experiment: Serialize + DeserializeOwned + PartialEq + Clone + Debug {
    /// The study's name: `config.json`'s `experiment`, and what `report` dispatches on.
    const NAME: &'static str;
    /// One learning-rate sweep, then one final run per seed.
    type Cell: Cell;
    /// What [`Experiment::prepare`] learns (pretraining accuracy, class counts, ...), stored in
    /// `config.json` beside the plan and read back for the report.
    type Facts: Serialize + DeserializeOwned + Clone + Debug;
    /// What every run shares once prepared: data splits, pretrained models.
    type Context;

    /// Refuse a plan that cannot run, before anything is written or trained.
    ///
    /// # Errors
    /// [`crate::error::ExpError::Input`] naming the flag.
    fn check(&self) -> Result<()>;

    /// Seeds, step budget and sweep length.
    fn protocol(&self) -> Protocol<'_>;

    /// Every cell, in a fixed order (`--shard` slices this list).
    fn cells(&self) -> Vec<Self::Cell>;

    /// The learning-rate grid the cell's sweep searches.
    fn lr_grid(&self, cell: &Self::Cell) -> &[f64];

    /// The cells whose final runs use `cell`'s chosen rate: the cell itself, and any twins
    /// (e.g. the same adapters in another forward form).
    fn finals(&self, cell: &Self::Cell) -> Vec<Self::Cell> {
        vec![cell.clone()]
    }

    /// Load and check the data (every file before any training), pretrain or load what the
    /// runs share.
    ///
    /// # Errors
    /// Missing data (with the fetch command), bad data, pretraining errors.
    fn prepare(&self, env: &Env<'_>) -> Result<(Self::Context, Self::Facts)>;

    /// Records of baselines that train nothing (run by shard 0 only, before the cells).
    ///
    /// # Errors
    /// As the study's runs.
    fn baselines(&self, _cx: &Self::Context) -> Result<Vec<RunRecord>> {
        Ok(Vec::new())
    }

    /// Run one spec and return its record, made with [`RecordBuilder::new`]`(spec.head())`.
    /// Sweep runs are scored on validation data only; only final runs see the test split.
    ///
    /// # Errors
    /// Adapter, training or data errors.
    fn run(&self, cx: &Self::Context, spec: &Spec<Self::Cell>) -> Result<RunRecord>;

    /// The report's title, opening prose, reference method, adapter methods and plots.
    fn report(&self, config: &ConfigOf<Self>) -> ReportSpec;

    /// Study-specific report sections, appended after the shared ones.
    fn sections(
        &self,
        _config: &ConfigOf<Self>,
        _summary: &[SummaryRow],
        _records: &[RunRecord],
    ) -> String {
        String::new()
    }
}

/// The sweep runs of a cell.
pub fn sweep_specs<E: Experiment>(plan: &E, cell: &E::Cell) -> Vec<Spec<E::Cell>> {
    protocol::sweep_specs(&plan.protocol(), cell, plan.lr_grid(cell))
}

/// The final runs of a cell (and its twins) at the chosen rate.
pub fn final_specs<E: Experiment>(
    plan: &E,
    cell: &E::Cell,
    choice: &(f64, record::LrChoice),
) -> Vec<Spec<E::Cell>> {
    protocol::final_specs(&plan.protocol(), &plan.finals(cell), choice)
}

/// Runs of a cell, sweep included.
pub fn run_count<E: Experiment>(plan: &E, cell: &E::Cell) -> usize {
    plan.lr_grid(cell).len() + plan.protocol().seeds.len() * plan.finals(cell).len()
}
