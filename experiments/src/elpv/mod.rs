//! `elpv`: does conv LoRA transfer on a real network? face-api's pretrained ResNet-29 (dlib's
//! face-descriptor net, 5.57M conv weights) fine-tuned on ELPV's solar-cell defect images, with
//! a linear probe, affine-only, full fine-tuning and every adapter type at matched budgets of
//! trainable parameters, on paired stratified k-fold splits with Nadeau–Bengio corrected
//! intervals.
//!
//! A study on the [`crate::harness`]: [`plan`] (profiles, cells, checks), [`split`] (the paired
//! folds), [`exec`] (one spec: split, model, fit), [`metrics`] (four-class, balanced and
//! binary accuracy from a confusion matrix; Holm), [`report`] (its prose and sections). The
//! data reader is [`crate::data::elpv`]; augmentation is [`crate::data::augment`].

pub mod exec;
pub mod metrics;
pub mod plan;
pub mod probe;
pub mod report;
pub mod split;

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use lora_backbones::ResNet29;
use lora_backbones::resnet29::conv_geometries;
use lora_conv::budget::{Allocation, LayerInfo, layer_singular_values};
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::harness::{self, ConfigOf, Env, Experiment, Protocol, RunRecord, Shard};
use crate::report::{ReportSpec, SummaryRow};

pub use exec::{CLASSES, Context, ElpvNet};
pub use plan::{Cell, Method, Plan, Profile};

/// What preparing the study learned, kept in `config.json` for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Images used.
    pub images: usize,
    /// Images per class, 0..=3.
    pub class_counts: Vec<usize>,
    /// Mono and poly cells.
    pub mono_poly: [usize; 2],
    /// Training, validation and test examples of split 0.
    pub split_sizes: [usize; 3],
    /// Parameters of the backbone the methods adapt (face-api's unused `fc` excluded).
    pub base_params: usize,
    /// Scalars in the 29 conv kernels (what budgets are shares of).
    pub conv_weights: usize,
    /// Seconds to decode and resize the images.
    pub load_seconds: f64,
}

/// The layers a budget is spread over, from the static geometry list (no weights needed).
pub fn static_layers() -> Vec<LayerInfo> {
    conv_geometries()
        .into_iter()
        .map(|(path, g)| LayerInfo::new(path, g))
        .collect()
}

impl Plan {
    /// Every cell: the baselines, then each adapter type at each budget, labelled with the lowest
    /// per-layer rank that budget's filled allocation gives (`None` where the budget cannot be
    /// met; `check` refuses such a plan).
    pub fn cells(&self) -> Vec<Cell> {
        let layers = static_layers();
        self.methods()
            .into_iter()
            .map(|method| {
                let rank = match method {
                    Method::Adapter {
                        variant, budget, ..
                    } => exec::rank_plan(&layers, variant, budget, Allocation::Filled)
                        .ok()
                        .and_then(|p| p.layers.iter().map(|l| l.rank).min()),
                    _ => None,
                };
                Cell {
                    task: self.task(),
                    method,
                    rank,
                }
            })
            .collect()
    }

    /// [`Plan::check`], plus every budget met with every conv adapted below break-even.
    ///
    /// # Errors
    /// [`ExpError::Input`] naming the setting.
    pub fn check_all(&self) -> Result<()> {
        self.check()?;
        let layers = static_layers();
        for method in self.methods() {
            if let Method::Adapter {
                variant, budget, ..
            } = method
            {
                exec::rank_plan(&layers, variant, budget, Allocation::Filled)?;
            }
        }
        Ok(())
    }
}

impl Experiment for Plan {
    const NAME: &'static str = "elpv";
    type Cell = Cell;
    type Facts = Facts;
    type Context = Context;

    fn check(&self) -> Result<()> {
        self.check_all()
    }

    fn protocol(&self) -> Protocol<'_> {
        Plan::protocol(self)
    }

    fn cells(&self) -> Vec<Cell> {
        Plan::cells(self)
    }

    fn lr_grid(&self, cell: &Cell) -> &[f64] {
        self.grid(&cell.method)
    }

    /// The images (every one decoded and checked before any training), the splits, and the
    /// pretrained backbone; with the energy allocation, its kernels' singular values.
    fn prepare(&self, env: &Env<'_>) -> Result<(Context, Facts)> {
        let clock = Instant::now();
        let elpv =
            crate::data::elpv::load_first(&env.data.join("elpv"), self.size, self.max_images)?;
        let load_seconds = clock.elapsed().as_secs_f64();
        let base = ResNet29::<Conv2d>::from_faceapi(&env.data.join("face-api"), env.device)?;
        let splits = split::stratified_folds(
            &elpv.images.labels,
            &elpv.kinds,
            self.folds,
            self.repeats,
            self.val_fraction,
            self.split_seed,
        );
        let mut layers = static_layers();
        if self.allocations.contains(&Allocation::Energy) {
            let mut values = Vec::new();
            base.clone().map_convs(|path, conv| {
                values.push(layer_singular_values(path, &conv)?);
                Ok::<_, lora_core::LoraError>(conv)
            })?;
            layers = layers
                .into_iter()
                .zip(values)
                .map(|(l, v)| l.with_singular_values(v))
                .collect();
        }
        let mut class_counts = vec![0usize; CLASSES];
        for &l in &elpv.images.labels {
            class_counts[l.min(CLASSES - 1)] += 1;
        }
        let mono = elpv
            .kinds
            .iter()
            .filter(|k| **k == crate::data::elpv::CellType::Mono)
            .count();
        let first = splits
            .first()
            .ok_or_else(|| ExpError::Input("the plan makes no splits".into()))?;
        let facts = Facts {
            images: elpv.images.len(),
            class_counts,
            mono_poly: [mono, elpv.kinds.len() - mono],
            split_sizes: [first.train.len(), first.val.len(), first.test.len()],
            base_params: exec::base_params(&base),
            conv_weights: layers
                .iter()
                .map(|l| lora_conv::bounds::full_count(&l.geometry))
                .sum(),
            load_seconds,
        };
        eprintln!(
            "ELPV: {} images at {} px in {:.1} s; split 0: {} train, {} validation, {} test",
            facts.images,
            self.size,
            load_seconds,
            facts.split_sizes[0],
            facts.split_sizes[1],
            facts.split_sizes[2]
        );
        let clock = Instant::now();
        let features = probe::features(&base, &elpv.images, env.device);
        eprintln!(
            "the pretrained backbone's features of {} images x {} views in {:.1} s",
            elpv.images.len(),
            probe::VIEWS,
            clock.elapsed().as_secs_f64()
        );
        let cx = Context {
            images: elpv.images,
            splits,
            base,
            layers,
            features,
            device: env.device.clone(),
        };
        Ok((cx, facts))
    }

    fn run(&self, cx: &Context, spec: &harness::Spec<Cell>) -> Result<RunRecord> {
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
        report::sections(self, config, summary, records)
    }
}

/// Where the outputs go by default.
pub fn default_out() -> PathBuf {
    PathBuf::from("results/elpv")
}

/// The study through the harness: this shard's cells, each swept and then run on every split,
/// each finished run appended to `out/runs.jsonl` (runs already there are skipped), and the
/// report regenerated from the whole log at the end.
///
/// # Errors
/// Bad input (before any training), an output dir in use, missing data (with the fetch
/// command), adapter or I/O errors.
pub fn run(
    plan: &Plan,
    data_dir: &Path,
    out: &Path,
    shard: Shard,
    device_name: &str,
    device: &Device,
) -> Result<()> {
    let env = Env {
        data: data_dir,
        cache: out,
        device,
        device_name,
    };
    let options = harness::RunOptions {
        shard,
        prepare_only: false,
    };
    harness::run(plan, &env, out, options)
}
