//! Run one spec of the `compare` plan and return its record.

use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use lora_conv::ForwardMode;

use super::data::Mnist;
use super::plan::{Method, Phase, Plan, Spec};
use crate::data::Images;
use crate::error::Result;
use crate::methods::{
    freeze, materialize, plan_ranks, share_of_adapted, with_adapters, with_bypass,
};
use crate::model::Cnn;
use crate::record::{LayerRank, RunRecord};
use crate::train::{
    Classifier, Metric, TrainConfig, peak_memory_bytes, predict, reset_peak_memory, train,
};

/// What every run of a `compare` process shares.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The pretrained CNN (10-class Fashion-MNIST head).
    pub base: &'a Cnn<Conv2d>,
    /// MNIST splits.
    pub mnist: &'a Mnist,
    /// The autodiff device.
    pub device: &'a Device,
}

/// Model-independent facts of a run, filled in by [`fit`].
struct Setup<'a> {
    spec: &'a Spec,
    layers: Vec<LayerRank>,
    train_set: Images,
}

/// Build the spec's model (seeded: head first, then adapters), train it on the setting's
/// training set, pick the best validation checkpoint, test it, and record the run.
///
/// # Errors
/// Adapter errors.
pub fn run_spec(cx: &Context<'_>, spec: &Spec) -> Result<RunRecord> {
    let plan = cx.plan;
    let device = cx.device;
    let cnn = &plan.pretrain.cnn;
    let cell = spec.cell;
    // Seed k: the same head (and, for adapters, the same initial factors) for every method.
    device.seed(1000 + spec.seed);
    let head = cnn.head(device);
    materialize(&head);
    let with_head = || Cnn {
        head: head.clone(),
        ..cx.base.clone()
    };
    let setup = |layers: Vec<LayerRank>| Setup {
        spec,
        layers,
        train_set: cx.mnist.train_set(cell.setting, spec.seed),
    };
    match cell.method {
        Method::Scratch => {
            let body = cnn.init(device);
            materialize(&body);
            fit(cx, setup(vec![]), Cnn { head, ..body })
        }
        Method::Full => fit(cx, setup(vec![]), with_head()),
        Method::Head => fit(
            cx,
            setup(vec![]),
            Cnn {
                head: head.clone(),
                ..freeze(cx.base.clone())
            },
        ),
        Method::Adapter {
            variant,
            train_norm,
        } => {
            let mut layers = plan_ranks(
                variant,
                cell.rank.unwrap_or(1),
                &cnn.geometries(),
                "blocks.",
            );
            let adapted = with_adapters(&with_head(), variant, &layers, train_norm)?;
            if spec.form == ForwardMode::WeightSpace {
                fit(cx, setup(layers), adapted)
            } else {
                let model = with_bypass(cx.base.clone(), &adapted, variant, spec.form, device)?;
                // The form each conv runs while training on a full batch (`auto` decides per
                // call from the input's batch and spatial size; the first conv's input, the
                // image, needs no gradient, every later one does).
                let train_len = cx.mnist.train_set(cell.setting, spec.seed).len();
                let batch = plan.batch_size.min(train_len).max(1);
                let sizes = cnn.conv_input_sizes([28, 28]);
                for (i, ((l, block), (cin, _))) in layers
                    .iter_mut()
                    .zip(&model.blocks)
                    .zip(cnn.channels())
                    .enumerate()
                {
                    let [h, w] = sizes[i];
                    l.forward = block
                        .conv
                        .form(&[batch, cin, h, w], true, i > 0)
                        .name()
                        .to_string();
                }
                fit(cx, setup(layers), model)
            }
        }
    }
}

fn fit<M: Classifier<4>>(cx: &Context<'_>, setup: Setup<'_>, model: M) -> Result<RunRecord> {
    let Setup {
        spec,
        layers,
        train_set,
    } = setup;
    let counts = lora_core::param_counts(&model);
    let base_params = cx.plan.pretrain.cnn.base_params();
    let config = TrainConfig {
        steps: spec.steps,
        batch_size: cx.plan.batch_size,
        lr: spec.lr,
        seed: spec.seed,
        evals: cx.plan.evals,
    };
    let label = format!(
        "{} {} r{} s{}",
        spec.task(),
        spec.cell.method.name(),
        spec.cell.rank.map_or("-".into(), |r| r.to_string()),
        spec.seed
    );
    reset_peak_memory();
    let val = &cx.mnist.val;
    let trained = train::<4, M>(
        model,
        &train_set,
        Some((val, Metric::Accuracy)),
        &config,
        cx.device,
        &label,
    )?;
    let peak = peak_memory_bytes();
    let test = &cx.mnist.test;
    let test_accuracy = if spec.phase == Phase::Final {
        Metric::Accuracy.score(
            &predict::<4, M>(&trained.model, test, cx.device),
            &test.labels,
        )
    } else {
        // Sweeps never look at the test split.
        f64::NAN
    };
    let adapter_params: usize = layers.iter().map(|l| l.adapter_params).sum();
    Ok(RunRecord {
        id: spec.id(),
        phase: match spec.phase {
            Phase::Sweep => "sweep".into(),
            Phase::Final => "final".into(),
        },
        task: spec.task(),
        method: spec.cell.method.name(),
        rank: spec.cell.rank,
        forward: spec.forward().map(str::to_string),
        seed: spec.seed,
        steps: spec.steps,
        batch_size: config.batch_size.min(train_set.len()),
        lr: spec.lr,
        lr_choice: spec.lr_choice.clone(),
        train_examples: train_set.len(),
        val_examples: val.len(),
        test_examples: if spec.phase == Phase::Final {
            test.len()
        } else {
            0
        },
        trainable_params: counts.trainable,
        base_params,
        trainable_share: counts.trainable as f64 / base_params.max(1) as f64,
        adapter_params,
        adapter_share_of_adapted: (!layers.is_empty()).then(|| share_of_adapted(&layers)),
        layers,
        test_accuracy,
        val_accuracy: trained.val_score,
        best_step: trained.best_step,
        train_seconds: trained.seconds,
        steps_per_second: trained.steps_done as f64 / trained.seconds.max(1e-9),
        peak_memory_bytes: peak,
        diverged: trained.diverged,
        loss_curve: trained.loss_curve,
        val_curve: trained.val_curve,
        eval_steps: trained.eval_steps,
        recall_per_class: None,
        confusion: None,
    })
}
