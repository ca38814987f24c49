//! `inflate3d`: does 2D -> 3D inflation plus conv LoRA pay off on volumes? Brain MRI patches
//! of the Colin27 T1, labelled by lobe or tissue, trained on the left hemisphere and tested on
//! the mirrored right hemisphere of the same brain (within-subject transfer), or trained on
//! Colin27 and tested on the ICBM152 template (cross-template transfer, `--test-brain icbm152`).
//!
//! A study on the [`crate::harness`]: [`plan`] (the typed plan and its cells of (method,
//! rank)), [`split`] (the validation slab, the test hemisphere, centre slices), [`baselines`]
//! (`majority`, `position-1nn`), [`exec`] (run one spec), [`report`] (its prose and sections).
//! The 2D network is pretrained by [`crate::pretrain`], with the same cache as `compare`'s.

pub mod baselines;
pub mod exec;
pub mod plan;
pub mod report;
pub mod split;

use std::path::Path;

use burn::tensor::Device;

use crate::data::brain::{TestBrain, load};
use crate::error::{ExpError, Result};
use crate::harness::{self, ConfigOf, Env, Experiment, Protocol, RunRecord, Shard};
use crate::pretrain::{load_fashion, pretrained, require_fashion_train};
use crate::report::{ReportSpec, SummaryRow};

pub use baselines::{majority, nearest_centre};
pub use exec::base_params_3d;
pub use plan::{Cell, Method, Plan, Spec};
pub use split::{BrainData, centre_slices, split_slab};

impl Experiment for Plan {
    const NAME: &'static str = "inflate3d";
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

    /// The patches and their splits (every split must hold some), the Fashion-MNIST files,
    /// then the pretrained 2D CNN (from the cache when there).
    fn prepare(&self, env: &Env<'_>) -> Result<(exec::Context, report::Facts)> {
        let split = load(env.data, &self.patches)?;
        let data = split_slab(split, self);
        if data.train.is_empty() || data.val.is_empty() || data.test.is_empty() {
            return Err(ExpError::Input(format!(
                "brain patches: {} train, {} validation, {} test; every split needs some",
                data.train.len(),
                data.val.len(),
                data.test.len()
            )));
        }
        eprintln!(
            "patches: {} train, {} validation slab (y {:.0}..{:.0} mm), {} test ({}); {} dropped at the midline, {} around the slab",
            data.train.len(),
            data.val.len(),
            data.slab_y.0,
            data.slab_y.1,
            data.test.len(),
            match self.patches.test_brain {
                TestBrain::Colin27Right => "right hemisphere, mirrored",
                TestBrain::Icbm152 => "ICBM152",
            },
            data.dropped_midline,
            data.dropped_guard
        );
        for a in &data.labelling {
            eprintln!(
                "labelling on {} patches: {:.1}% agreement, kappa {:.3} ({})",
                a.patches,
                100.0 * a.accuracy,
                a.kappa,
                a.what
            );
        }
        let fashion_test = load_fashion(env.data, "t10k")?;
        require_fashion_train(env.data)?;
        let pre = pretrained(
            &self.pretrain,
            env.data,
            env.cache,
            &fashion_test,
            env.device,
        )?;
        let classes = self.classes();
        let counts = |set| split::class_counts(set, classes.len());
        let facts = report::Facts {
            task: self.task().into(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            train_class_counts: counts(&data.train),
            val_class_counts: counts(&data.val),
            test_class_counts: counts(&data.test),
            dropped_midline: data.dropped_midline,
            dropped_guard: data.dropped_guard,
            slab_y_mm: [data.slab_y.0, data.slab_y.1],
            pretrain_test_accuracy: pre.test_accuracy,
            pretrain_checkpoint: pre.path.display().to_string(),
            test_brain: self.patches.test_brain,
            labelling: data.labelling.clone(),
        };
        let slices = (
            centre_slices(&data.train),
            centre_slices(&data.val),
            centre_slices(&data.test),
        );
        let cx = exec::Context {
            base2d: pre.model,
            data,
            slices,
            device: env.device.clone(),
        };
        Ok((cx, facts))
    }

    fn baselines(&self, cx: &exec::Context) -> Result<Vec<RunRecord>> {
        Ok(baselines::records(self, &cx.data))
    }

    fn run(&self, cx: &exec::Context, spec: &Spec) -> Result<RunRecord> {
        exec::run_spec(self, cx, spec)
    }

    fn report(&self, config: &ConfigOf<Plan>) -> ReportSpec {
        report::spec(self, config)
    }

    fn sections(
        &self,
        config: &ConfigOf<Plan>,
        summary: &[SummaryRow],
        records: &[RunRecord],
    ) -> String {
        report::sections(self, &config.facts, summary, records)
    }
}

/// The `inflate3d` experiment through the harness.
///
/// # Errors
/// Bad input (before any training), an output dir in use, missing data (with the fetch
/// command), inflation, adapter or I/O errors.
pub fn run(
    plan: &Plan,
    data_dir: &Path,
    cache: &Path,
    out: &Path,
    shard: Shard,
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
        shard,
        prepare_only: false,
    };
    harness::run(plan, &env, out, options)
}
