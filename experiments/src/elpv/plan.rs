//! The ELPV study's typed plan: the three profiles (`quick`, `default`, `full`), its cells of
//! (method, budget, allocation), and the checks that refuse a plan before anything runs.

use lora_conv::ConvVariant;
use lora_conv::budget::Allocation;
use serde::{Deserialize, Serialize};

use super::probe::ProbeInit;
use crate::error::{ExpError, Result};
use crate::harness::{self, Labels, Protocol};
use crate::train::{Augment, Schedule};

/// Which profile a plan was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// A smoke run: a few dozen images, a handful of steps, one rate per method.
    Quick,
    /// The reduced protocol of the main command: about 90 minutes on 2 CPU cores.
    Default,
    /// The full protocol: 150 px, repeated 5-fold, every registered type at three budgets.
    Full,
}

/// What trains.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// A linear probe: the backbone frozen, a new 4-class head (trained on cached features).
    Probe,
    /// The per-channel affine maps after every conv (face-api's `scale`) and the head.
    Affine,
    /// Everything but face-api's unused descriptor layer.
    Full,
    /// Adapters of `variant` on every conv, ranks allocated by `allocation` to spend at most
    /// `budget` of the conv weights' parameters, plus the head.
    Adapter {
        /// The adapter type.
        variant: ConvVariant,
        /// The budget, as a share of the backbone's conv weights (0.01 = 1%).
        budget: f64,
        /// How the budget becomes per-layer ranks.
        allocation: Allocation,
    },
}

impl Method {
    /// The name in records and reports: `probe`, `affine`, `full`, the type's name (the filled
    /// allocation, the study's default), or the type's name with `-uniform` or `-energy`.
    pub fn name(&self) -> String {
        match self {
            Method::Probe => "probe".into(),
            Method::Affine => "affine".into(),
            Method::Full => "full".into(),
            Method::Adapter {
                variant,
                allocation,
                ..
            } => match allocation {
                Allocation::Filled => variant.name().to_string(),
                Allocation::Uniform => format!("{}-uniform", variant.name()),
                Allocation::Energy => format!("{}-energy", variant.name()),
            },
        }
    }
}

/// One cell: a method at one budget, with the lowest per-layer rank of that budget's filled
/// allocation (the `rank` of its records; per-layer ranks are in each record's `layers`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The task name, `elpv-<size>`.
    pub task: String,
    /// What trains.
    pub method: Method,
    /// The lowest per-layer rank of the budget's filled allocation (adapters only).
    pub rank: Option<usize>,
}

impl harness::Cell for Cell {
    fn key(&self) -> String {
        match self.method {
            Method::Adapter { budget, .. } => {
                format!("{}/{}/b{}", self.task, self.method.name(), percent(budget))
            }
            _ => format!("{}/{}", self.task, self.method.name()),
        }
    }

    fn labels(&self) -> Labels {
        Labels {
            task: self.task.clone(),
            method: self.method.name(),
            rank: self.rank,
            forward: matches!(self.method, Method::Adapter { .. }).then(|| "auto".to_string()),
        }
    }
}

/// A budget share as a short percentage, e.g. `1%`, `0.5%`.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}%", p.round())
    } else {
        format!("{p:.2}%").replace(".00%", "%")
    }
}

/// Learning-rate grids per kind of method (ascending; a sweep extends one at its edge).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grids {
    /// The linear probe.
    pub probe: Vec<f64>,
    /// Affine-only.
    pub affine: Vec<f64>,
    /// Full fine-tuning.
    pub full: Vec<f64>,
    /// Every adapter type and budget.
    pub adapter: Vec<f64>,
}

/// The plan of an ELPV study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The profile it was made from (flags may have changed it since).
    pub profile: Profile,
    /// Side of the input images (area-resized from 300; the backbone needs at least 103).
    pub size: usize,
    /// Use only this many rows of `labels.csv`, evenly spaced (smoke runs); `None` for all 2,624.
    pub max_images: Option<usize>,
    /// Folds per repeat (the test fold of each split is one of them).
    pub folds: usize,
    /// Repeats of the k-fold split, each with its own shuffle.
    pub repeats: usize,
    /// Share of each training part held out for validation (stratified).
    pub val_fraction: f64,
    /// Seed of the splits.
    pub split_seed: u64,
    /// The final runs' seeds: seed `k` is split `k` (repeat `k / folds`, fold `k % folds`), and
    /// also the data order, augmentation and head init of every method on it.
    pub seeds: Vec<u64>,
    /// Optimizer steps of every final run.
    pub steps: usize,
    /// Sweep runs train for this share of `steps`, on split 0's training and validation parts.
    pub sweep_fraction: f64,
    /// How often a sweep may extend its grid past the edge its pick sits at.
    pub grid_extensions: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Validation checks per run (the best checkpoint is kept).
    pub evals: usize,
    /// The rate over the steps.
    pub schedule: Schedule,
    /// Training-time augmentation.
    pub augment: Augment,
    /// The methods without adapters, in order.
    pub baselines: Vec<Method>,
    /// Adapter types.
    pub types: Vec<ConvVariant>,
    /// Budgets, as shares of the conv weights.
    pub budgets: Vec<f64>,
    /// The allocations each type is run with (`filled` gives the `<type>` rows; `uniform` and
    /// `energy` add `<type>-uniform` and `<type>-energy` rows, for the types in `energy_types`).
    pub allocations: Vec<Allocation>,
    /// Types that also run with the other allocations (when `allocations` has them).
    pub energy_types: Vec<ConvVariant>,
    /// Learning-rate grids.
    pub grids: Grids,
    /// Start every method but the probe from a head trained as a probe on the split's cached
    /// features (LP-FT); `None` starts from the fresh seeded head.
    pub probe_init: Option<super::probe::ProbeInit>,
}

impl Plan {
    /// The plan of `profile`.
    pub fn new(profile: Profile) -> Self {
        let grids = Grids {
            probe: vec![3e-3, 1e-2, 3e-2],
            affine: vec![3e-4, 1e-3, 3e-3],
            full: vec![1e-5, 3e-5, 1e-4],
            adapter: vec![1e-4, 3e-4, 1e-3],
        };
        let baselines = vec![Method::Probe, Method::Affine, Method::Full];
        match profile {
            Profile::Quick => Self {
                profile,
                size: 112,
                max_images: Some(48),
                folds: 2,
                repeats: 1,
                val_fraction: 0.25,
                split_seed: 0,
                seeds: vec![0, 1],
                steps: 2,
                sweep_fraction: 0.5,
                grid_extensions: 0,
                batch_size: 8,
                evals: 1,
                schedule: Schedule::Cosine,
                augment: Augment::Dihedral,
                baselines,
                types: ConvVariant::DECOMPOSITIONS.to_vec(),
                budgets: vec![0.01],
                allocations: vec![Allocation::Filled],
                energy_types: Vec::new(),
                grids: Grids {
                    probe: vec![1e-2],
                    affine: vec![1e-3],
                    full: vec![1e-4],
                    adapter: vec![1e-3],
                },
                probe_init: Some(ProbeInit { lr: 1e-2, steps: 2 }),
            },
            Profile::Default => Self {
                profile,
                size: 112,
                max_images: None,
                folds: 5,
                repeats: 1,
                val_fraction: 0.15,
                split_seed: 0,
                seeds: (0..5).collect(),
                steps: 120,
                sweep_fraction: 0.25,
                grid_extensions: 1,
                batch_size: 32,
                evals: 2,
                schedule: Schedule::Cosine,
                augment: Augment::Dihedral,
                baselines,
                types: ConvVariant::DECOMPOSITIONS.to_vec(),
                budgets: vec![0.01, 0.03],
                allocations: vec![Allocation::Filled],
                energy_types: Vec::new(),
                grids,
                probe_init: Some(ProbeInit {
                    lr: 1e-2,
                    steps: 120,
                }),
            },
            Profile::Full => Self {
                profile,
                size: 150,
                max_images: None,
                folds: 5,
                repeats: 2,
                val_fraction: 0.15,
                split_seed: 0,
                seeds: (0..10).collect(),
                steps: 400,
                sweep_fraction: 0.25,
                grid_extensions: 2,
                batch_size: 32,
                evals: 4,
                schedule: Schedule::Cosine,
                augment: Augment::Dihedral,
                baselines,
                types: ConvVariant::BUILTIN.to_vec(),
                budgets: vec![0.01, 0.03, 0.08],
                allocations: vec![Allocation::Filled, Allocation::Energy],
                energy_types: vec![ConvVariant::LoCon],
                grids,
                probe_init: Some(ProbeInit {
                    lr: 1e-2,
                    steps: 400,
                }),
            },
        }
    }

    /// The task name of every record, `elpv-<size>`.
    pub fn task(&self) -> String {
        format!("elpv-{}", self.size)
    }

    /// The methods, in cell order: the baselines, then each type at each budget (uniform),
    /// then the energy rows.
    pub fn methods(&self) -> Vec<Method> {
        let mut out = self.baselines.clone();
        for allocation in &self.allocations {
            for &variant in &self.types {
                if *allocation != Allocation::Filled && !self.energy_types.contains(&variant) {
                    continue;
                }
                for &budget in &self.budgets {
                    out.push(Method::Adapter {
                        variant,
                        budget,
                        allocation: *allocation,
                    });
                }
            }
        }
        out
    }

    /// Refuse a plan that cannot run, naming the setting.
    ///
    /// # Errors
    /// [`ExpError::Input`].
    pub fn check(&self) -> Result<()> {
        let bad = |what: String| Err(ExpError::Input(what));
        let min = lora_backbones::resnet29::MIN_INPUT;
        if self.size < min || self.size > crate::data::elpv::SIZE {
            return bad(format!(
                "--size {}: the ResNet-29 needs at least {min} px, and the images are {} px",
                self.size,
                crate::data::elpv::SIZE
            ));
        }
        if self.folds < 2 || self.repeats == 0 {
            return bad(format!(
                "--folds {} --repeats {}: need at least 2 folds and 1 repeat",
                self.folds, self.repeats
            ));
        }
        let splits = (self.folds * self.repeats) as u64;
        if let Some(s) = self.seeds.iter().find(|&&s| s >= splits) {
            return bad(format!(
                "seed {s} names split {s}, but {} folds x {} repeats make {splits} splits",
                self.folds, self.repeats
            ));
        }
        if self.seeds.is_empty() || self.steps == 0 || self.batch_size == 0 || self.evals == 0 {
            return bad(format!(
                "seeds {:?}, steps {}, batch {}, evals {}: all must be at least 1",
                self.seeds, self.steps, self.batch_size, self.evals
            ));
        }
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return bad(format!(
                "validation fraction {} must lie strictly between 0 and 1",
                self.val_fraction
            ));
        }
        if let Some(b) = self.budgets.iter().find(|b| !(**b > 0.0 && **b < 1.0)) {
            return bad(format!(
                "--budgets {b}: a budget is a share of the conv weights, strictly between 0 and 1"
            ));
        }
        if let Some(n) = self.max_images
            && n < 4 * self.folds
        {
            return bad(format!(
                "--max-images {n}: {} folds need at least {} images",
                self.folds,
                4 * self.folds
            ));
        }
        let grids = [
            &self.grids.probe,
            &self.grids.affine,
            &self.grids.full,
            &self.grids.adapter,
        ];
        for g in grids {
            if g.is_empty() || g.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return bad(format!(
                    "learning-rate grid {g:?}: needs at least one finite positive rate"
                ));
            }
        }
        Ok(())
    }

    /// Seeds, steps and sweep length, for the harness.
    pub fn protocol(&self) -> Protocol<'_> {
        Protocol {
            seeds: &self.seeds,
            steps: self.steps,
            sweep_fraction: self.sweep_fraction,
            grid_extensions: self.grid_extensions,
        }
    }

    /// The grid a method's sweep starts from.
    pub fn grid(&self, method: &Method) -> &[f64] {
        match method {
            Method::Probe => &self.grids.probe,
            Method::Affine => &self.grids.affine,
            Method::Full => &self.grids.full,
            Method::Adapter { .. } => &self.grids.adapter,
        }
    }
}
