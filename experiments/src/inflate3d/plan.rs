//! What `inflate3d` runs: the plan, its methods, and its cells of (method, rank).

use lora_conv::ConvVariant;
use serde::{Deserialize, Serialize};

use crate::cli::Overrides;
use crate::data::brain::{BrainLabel, PatchConfig, TestBrain};
use crate::error::{ExpError, Result};
use crate::harness::{self, Labels, Protocol};
use crate::model::CnnConfig;
use crate::pretrain::PretrainPlan;

/// Everything that decides the numbers of an `inflate3d` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// `quick` or `default`.
    pub profile: String,
    /// The 2D pretraining (the same as `compare`'s for the same flags; its checkpoint is
    /// shared through `--cache`).
    pub pretrain: PretrainPlan,
    /// How patches are cut.
    pub patches: PatchConfig,
    /// Depth kernel of the inflated convs.
    pub depth: usize,
    /// Adapter ranks asked for (capped per layer below break-even).
    pub ranks: Vec<usize>,
    /// The adapter types compared.
    pub variants: Vec<ConvVariant>,
    /// Seeds (paired across methods).
    pub seeds: Vec<u64>,
    /// Optimizer steps of every final run.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Evaluation periods per run.
    pub evals: usize,
    /// Learning-rate grid of the dense methods.
    pub lr_grid_dense: Vec<f64>,
    /// Learning-rate grid of the adapter methods.
    pub lr_grid_adapter: Vec<f64>,
    /// Sweep runs train for this fraction of `steps`.
    pub sweep_fraction: f64,
    /// How many times a cell's grid may grow by one rate past the edge its best rate sits at
    /// (0 in plans written before this field).
    #[serde(default)]
    pub grid_extensions: usize,
    /// The held-out validation slab: training-hemisphere patches whose centre's world y lies
    /// between these quantiles of the centres' y.
    pub val_slab: (f64, f64),
    /// Width of the guard band dropped from training on each side of the slab, in patch sides.
    /// 1 means no voxel is in both a training and a validation patch, but at this brain's scale
    /// the band takes whole lobes out of training (class counts [155, 3, 7, 71, 25, 1, 3] of
    /// [303, 178, 258, 105, 123, 32, 29] with the 40-60% slab). 0 (the default) keeps every
    /// training patch outside the slab: validation patches at the slab's edges then share voxels
    /// with their training neighbours, which only the learning-rate and checkpoint choices see;
    /// the test hemisphere shares no voxel with either.
    pub val_guard: f64,
}

impl Plan {
    /// The `--quick` or default plan, with the command line's overrides.
    pub fn new(quick: bool, o: &Overrides) -> Self {
        let pretrain = PretrainPlan::new(quick, o);
        let mut plan = if quick {
            Self {
                profile: "quick".into(),
                pretrain,
                patches: PatchConfig {
                    size: 16,
                    factor: 2,
                    stride: 8,
                    mirror_test: true,
                    label: BrainLabel::Lobe,
                    test_brain: TestBrain::Colin27Right,
                },
                depth: 3,
                ranks: vec![2],
                variants: ConvVariant::DECOMPOSITIONS.to_vec(),
                seeds: (0..2).collect(),
                steps: 16,
                batch_size: 8,
                evals: 2,
                lr_grid_dense: vec![3e-3],
                lr_grid_adapter: vec![1e-2],
                sweep_fraction: 0.5,
                grid_extensions: 0,
                val_slab: (0.45, 0.55),
                val_guard: 0.0,
            }
        } else {
            Self {
                profile: "default".into(),
                pretrain,
                patches: PatchConfig {
                    size: 16,
                    factor: 2,
                    stride: 4,
                    mirror_test: true,
                    label: BrainLabel::Lobe,
                    test_brain: TestBrain::Colin27Right,
                },
                depth: 3,
                ranks: vec![2, 8],
                variants: ConvVariant::DECOMPOSITIONS.to_vec(),
                seeds: (0..5).collect(),
                steps: 150,
                batch_size: 16,
                evals: 3,
                lr_grid_dense: vec![1e-3, 3e-3],
                lr_grid_adapter: vec![3e-3, 1e-2],
                sweep_fraction: 0.5,
                grid_extensions: 1,
                val_slab: (0.45, 0.55),
                val_guard: 0.0,
            }
        };
        if let Some(s) = o.steps {
            plan.steps = s;
        }
        if let Some(b) = o.batch {
            plan.batch_size = b;
        }
        if let Some(n) = o.seeds {
            plan.seeds = (0..n as u64).collect();
        }
        if let Some(r) = &o.ranks {
            plan.ranks.clone_from(r);
        }
        if let Some(v) = &o.variants {
            plan.variants.clone_from(v);
        }
        plan
    }

    /// Reject a plan that cannot run.
    ///
    /// # Errors
    /// [`ExpError::Input`] naming the flag.
    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(ExpError::Input(m.into()));
        if self.seeds.is_empty() {
            return bad(
                "--seeds 0: at least one seed is needed (5 or more for a usable confidence interval)",
            );
        }
        if self.steps == 0 {
            return bad("--steps 0: the budget must be at least one optimizer step");
        }
        if self.batch_size < 2 {
            return bad("--batch: batch norm needs at least 2 examples per batch");
        }
        if self.ranks.contains(&0) {
            return bad("--ranks: ranks start at 1");
        }
        match (self.patches.test_brain, self.patches.label) {
            (TestBrain::Colin27Right, BrainLabel::Segment) => {
                return bad(
                    "--label segment labels brain-extracted T1s for --test-brain icbm152; within \
                     Colin27 use --label lobe or --label tissue",
                );
            }
            (TestBrain::Icbm152, BrainLabel::Tissue) => {
                return bad(
                    "--label tissue takes its tercile thresholds from the training hemisphere, \
                     which says nothing about another brain's intensity scale; with \
                     --test-brain icbm152 use --label segment (the same procedure on each \
                     brain) or --label lobe",
                );
            }
            _ => {}
        }
        if !(self.val_guard.is_finite() && self.val_guard >= 0.0) {
            return bad("val_guard: the guard band is a non-negative number of patch sides");
        }
        let (lo, hi) = self.val_slab;
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return bad("val_slab: two quantiles with 0 <= lo <= hi <= 1");
        }
        self.pretrain.cnn.check().map_err(ExpError::Input)
    }

    /// The task name in results (`brain-lobes` or `brain-tissue`).
    pub fn task(&self) -> &'static str {
        self.patches.label.task()
    }

    /// The class names of the label.
    pub fn classes(&self) -> &'static [&'static str] {
        self.patches.label.classes()
    }

    /// The CNN with a head for the label's classes.
    pub fn cnn(&self) -> CnnConfig {
        CnnConfig {
            classes: self.classes().len(),
            ..self.pretrain.cnn.clone()
        }
    }

    /// Cells: (method, rank), in order.
    pub fn cells(&self) -> Vec<Cell> {
        let task = self.task();
        let cell = |method, rank| Cell { task, method, rank };
        let mut out = vec![
            cell(Method::Scratch3d, None),
            cell(Method::Slice2d, None),
            cell(Method::InflatedFull, None),
        ];
        for &v in &self.variants {
            out.extend(
                self.ranks
                    .iter()
                    .map(|&r| cell(Method::Inflated(v), Some(r))),
            );
        }
        out
    }

    /// The learning-rate grid of a method.
    pub fn grid(&self, method: Method) -> &[f64] {
        if matches!(method, Method::Inflated(_)) {
            &self.lr_grid_adapter
        } else {
            &self.lr_grid_dense
        }
    }

    /// Seeds, budget and sweep length, for the harness.
    pub fn protocol(&self) -> Protocol<'_> {
        Protocol {
            seeds: &self.seeds,
            steps: self.steps,
            sweep_fraction: self.sweep_fraction,
            grid_extensions: self.grid_extensions,
        }
    }

    /// Steps of a sweep run.
    pub fn sweep_steps(&self) -> usize {
        self.protocol().sweep_steps()
    }
}

/// The `inflate3d` methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A 3x3x3 CNN of the same shape, from scratch.
    Scratch3d,
    /// The pretrained 2D CNN fine-tuned on each patch's centre slice.
    Slice2d,
    /// The inflated pretrained CNN, everything trained.
    InflatedFull,
    /// Fresh conv LoRA on the inflated convs, head trained.
    Inflated(ConvVariant),
}

impl Method {
    /// Name in results.
    pub fn name(self) -> String {
        match self {
            Method::Scratch3d => "scratch3d".into(),
            Method::Slice2d => "slice2d".into(),
            Method::InflatedFull => "inflated-full".into(),
            Method::Inflated(v) => format!("inflated-{v}"),
        }
    }
}

/// A (method, rank) cell of the brain task: one sweep, then one run per seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// The task name (`brain-lobes` or `brain-tissue`).
    pub task: &'static str,
    /// Method.
    pub method: Method,
    /// Rank asked for (adapters).
    pub rank: Option<usize>,
}

impl harness::Cell for Cell {
    fn key(&self) -> String {
        format!(
            "{}/{}/r{}",
            self.task,
            self.method.name(),
            self.rank.map_or("-".into(), |r| r.to_string())
        )
    }

    fn labels(&self) -> Labels {
        Labels {
            task: self.task.into(),
            method: self.method.name(),
            rank: self.rank,
            forward: self.rank.map(|_| "weight".into()),
        }
    }
}

/// One run of the plan.
pub type Spec = harness::Spec<Cell>;
