//! Run one spec of the `compare` plan and return its record.

use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use lora_conv::ForwardMode;

use super::baselines;
use super::plan::{Method, Plan, Spec};
use super::split::Mnist;
use crate::data::Images;
use crate::error::Result;
use crate::harness;
use crate::harness::fit::{FitData, FitSettings};
use crate::harness::record::{LayerRank, RunRecord};
use crate::methods::{materialize, plan_ranks, with_adapters, with_bypass};
use crate::model::{Cnn, CnnConfig};
use crate::train::{Augment, Classifier, Metric, Schedule};

/// What every run of a `compare` process shares.
#[derive(Debug)]
pub struct Context {
    /// The pretrained CNN (Fashion-MNIST head).
    pub base: Cnn<Conv2d>,
    /// MNIST splits.
    pub mnist: Mnist,
    /// The autodiff device.
    pub device: Device,
}

impl Context {
    /// The fine-tuned CNN's shape: the pretrained one with a head for MNIST's classes.
    pub fn cnn(&self, plan: &Plan) -> CnnConfig {
        CnnConfig {
            classes: self.mnist.shape.classes,
            ..plan.pretrain.cnn.clone()
        }
    }
}

/// Build the spec's model (seeded: head first, then the body or the adapters), train it on
/// the setting's training set, pick the best validation checkpoint, test it (final runs only),
/// and record the run.
///
/// # Errors
/// Adapter errors.
pub fn run_spec(plan: &Plan, cx: &Context, spec: &Spec) -> Result<RunRecord> {
    let device = &cx.device;
    let cnn = cx.cnn(plan);
    let cell = spec.cell;
    // Seed k: the same head (and, for adapters, the same initial factors) for every method.
    device.seed(1000 + spec.seed);
    let head = cnn.head(device);
    materialize(&head);
    let train_set = cx.mnist.train_set(cell.setting, spec.seed);
    match cell.method {
        Method::Scratch => {
            let model = baselines::scratch(&cnn, head, device);
            fit(plan, cx, spec, train_set, vec![], model)
        }
        Method::Full => fit(
            plan,
            cx,
            spec,
            train_set,
            vec![],
            baselines::full(&cx.base, head),
        ),
        Method::Head => fit(
            plan,
            cx,
            spec,
            train_set,
            vec![],
            baselines::head_only(&cx.base, head),
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
            let adapted = with_adapters(
                &baselines::full(&cx.base, head),
                variant,
                &layers,
                train_norm,
            )?;
            if cell.form == ForwardMode::WeightSpace {
                fit(plan, cx, spec, train_set, layers, adapted)
            } else {
                let model = with_bypass(cx.base.clone(), &adapted, variant, cell.form, device)?;
                // The form each conv runs while training on a full batch (`auto` decides per
                // call from the input's batch and spatial size; the first conv's input, the
                // image, needs no gradient, every later one does).
                let batch = plan.batch_size.min(train_set.len()).max(1);
                let sizes = cnn.conv_input_sizes(cx.mnist.shape.image()?);
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
                fit(plan, cx, spec, train_set, layers, model)
            }
        }
    }
}

fn fit<M: Classifier<4>>(
    plan: &Plan,
    cx: &Context,
    spec: &Spec,
    train_set: Images,
    layers: Vec<LayerRank>,
    model: M,
) -> Result<RunRecord> {
    let data = FitData {
        train: &train_set,
        val: &cx.mnist.val,
        test: &cx.mnist.test,
        metric: Metric::Accuracy,
        per_class: None,
    };
    let settings = FitSettings {
        batch_size: plan.batch_size,
        evals: plan.evals,
        schedule: Schedule::Constant,
        augment: Augment::None,
    };
    let base = cx.cnn(plan).base_params();
    harness::fit::fit::<4, M, _>(spec, model, layers, base, data, settings, &cx.device)
}
