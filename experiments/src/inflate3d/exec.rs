//! Run one spec of the `inflate3d` plan and return its record.

use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use lora_3d::{InflateOptions, inflate};
use lora_conv::ConvGeometry;

use super::plan::{Method, Plan, Spec};
use super::split::BrainData;
use crate::data::Images;
use crate::error::Result;
use crate::harness;
use crate::harness::fit::{FitData, FitSettings};
use crate::harness::record::{LayerRank, RunRecord};
use crate::methods::{materialize, plan_ranks, with_adapters};
use crate::model::{Cnn, CnnConfig};
use crate::train::{Augment, Classifier, Metric, Schedule};

/// What every run of an `inflate3d` process shares.
#[derive(Debug)]
pub struct Context {
    /// The pretrained 2D CNN.
    pub base2d: Cnn<Conv2d>,
    /// The patches.
    pub data: BrainData,
    /// Centre slices of the training, validation and test patches (for `slice2d`).
    pub slices: (Images, Images, Images),
    /// The autodiff device.
    pub device: Device,
}

/// Parameters of the 3D network itself (depth-`depth` kernels; no adapters, no buffers).
pub fn base_params_3d(cnn: &CnnConfig, depth: usize) -> usize {
    let convs: usize = cnn
        .channels()
        .iter()
        .map(|(i, o)| i * o * 9 * depth + 3 * o)
        .sum();
    let features = cnn.widths.last().copied().unwrap_or(cnn.in_channels);
    convs + features * cnn.classes + cnn.classes
}

/// Build the spec's model (seeded: head first), train it on the training patches (or their
/// centre slices), pick the best validation checkpoint by balanced accuracy, test it on the
/// mirrored test hemisphere (final runs only), and record the run.
///
/// # Errors
/// Inflation and adapter errors.
pub fn run_spec(plan: &Plan, cx: &Context, spec: &Spec) -> Result<RunRecord> {
    let device = &cx.device;
    let cnn = plan.cnn();
    device.seed(2000 + spec.seed);
    let head = cnn.head(device);
    materialize(&head);
    let with_head = || Cnn {
        head: head.clone(),
        ..cx.base2d.clone()
    };
    let options = InflateOptions::new(plan.depth);
    let base3d = base_params_3d(&cnn, plan.depth);
    match spec.cell.method {
        Method::Scratch3d => {
            let body = cnn.init_3d(device);
            materialize(&body);
            let model = crate::model::Cnn3d { head, ..body };
            fit::<5, _>(
                plan,
                cx,
                spec,
                model,
                vec![],
                base3d,
                (&cx.data.train, &cx.data.val, &cx.data.test),
            )
        }
        Method::Slice2d => fit::<4, _>(
            plan,
            cx,
            spec,
            with_head(),
            vec![],
            cnn.base_params(),
            (&cx.slices.0, &cx.slices.1, &cx.slices.2),
        ),
        Method::InflatedFull => {
            let model = inflate(with_head(), &options)?;
            fit::<5, _>(
                plan,
                cx,
                spec,
                model,
                vec![],
                base3d,
                (&cx.data.train, &cx.data.val, &cx.data.test),
            )
        }
        Method::Inflated(variant) => {
            let inflated = inflate(with_head(), &options)?;
            let geometries: Vec<ConvGeometry> = inflated
                .blocks
                .iter()
                .map(|b| lora_conv::ConvLayer::geometry(&b.conv))
                .collect();
            let layers = plan_ranks(variant, spec.cell.rank.unwrap_or(1), &geometries, "blocks.");
            let model = with_adapters(&inflated, variant, &layers, false)?;
            fit::<5, _>(
                plan,
                cx,
                spec,
                model,
                layers,
                base3d,
                (&cx.data.train, &cx.data.val, &cx.data.test),
            )
        }
    }
}

fn fit<const N: usize, M: Classifier<N>>(
    plan: &Plan,
    cx: &Context,
    spec: &Spec,
    model: M,
    layers: Vec<LayerRank>,
    base_params: usize,
    (train, val, test): (&Images, &Images, &Images),
) -> Result<RunRecord> {
    let data = FitData {
        train,
        val,
        test,
        metric: Metric::Balanced,
        per_class: Some(plan.classes().len()),
    };
    let settings = FitSettings {
        batch_size: plan.batch_size,
        evals: plan.evals,
        schedule: Schedule::Constant,
        augment: Augment::None,
    };
    harness::fit::fit::<N, M, _>(spec, model, layers, base_params, data, settings, &cx.device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_params_3d_counts_the_inflated_net() {
        let cnn = CnnConfig::vgg([4, 4, 8, 8, 8], 7);
        let device = Device::flex();
        let net = inflate(cnn.init(&device), &InflateOptions::new(3)).unwrap();
        let counts = lora_core::param_counts(&net);
        assert_eq!(
            base_params_3d(&cnn, 3),
            counts.total - 2 * (4 + 4 + 8 + 8 + 8)
        );
    }
}
