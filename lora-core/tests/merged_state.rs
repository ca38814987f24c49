//! A merged adapter costs what the base costs and is frozen by construction: its update is not
//! computed, so its factors get no gradient and an optimizer step (weight decay included)
//! leaves them exactly as they were; unmerging after such a step gives back the base.

#![allow(clippy::unwrap_used, missing_docs)]

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::LinearConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use lora_core::testing::randomize_adapters;
use lora_core::{LinearFactory, LoraConfig, attach, merge, unmerge};

/// Every float parameter's values, in visiting order (factors and base alike).
fn all_values<M: Module>(model: &M) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .push(param.base().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[test]
fn a_merged_adapter_does_not_train_and_unmerges_exactly() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let base = LinearConfig::new(12, 7).init(&device);
    let adapted = randomize_adapters(
        attach(&base, &LoraConfig::new(3, 6.0), &LinearFactory).unwrap(),
        0.5,
    );
    let merged = merge(&adapted).unwrap();
    let before = all_values(&merged);

    // One AdamW step with weight decay on the merged model.
    let x = Tensor::<2>::random([16, 12], Distribution::Normal(0.0, 1.0), &device);
    // The input is tracked so the step has a graph even when no parameter needs a gradient.
    let loss = merged
        .forward(x.clone().require_grad())
        .powi_scalar(2)
        .mean();
    let grads = GradientsParams::from_grads(loss.backward(), &merged);
    let mut optim = AdamWConfig::new().with_weight_decay(0.5).init();
    let stepped = optim.step(0.1, merged.clone(), grads);
    assert_eq!(
        all_values(&stepped),
        before,
        "a merged adapter's factors moved"
    );

    // So unmerging gives back the pretrained weight (to float rounding of W + ΔW − ΔW).
    let restored = unmerge(&stepped).unwrap();
    let drift = (restored.weight.base() - base.weight.val())
        .abs()
        .max()
        .into_scalar::<f32>();
    let scale = base.weight.val().abs().max().into_scalar::<f32>();
    assert!(drift <= 1e-6 * scale + 1e-7, "unmerge drift {drift}");

    // While unmerged, the same step does move the factors: the test can tell.
    let loss = adapted.forward(x).powi_scalar(2).mean();
    let grads = GradientsParams::from_grads(loss.backward(), &adapted);
    let moved = optim.step(0.1, adapted.clone(), grads);
    assert_ne!(all_values(&moved), all_values(&adapted));
}

#[test]
fn merged_forward_is_the_base_forward_with_the_merged_weight() {
    let device = Device::flex();
    device.seed(5);
    let base = LinearConfig::new(9, 4).init(&device);
    let adapted = randomize_adapters(
        attach(&base, &LoraConfig::new(2, 2.0), &LinearFactory).unwrap(),
        0.5,
    );
    let merged = merge(&adapted).unwrap();
    // A plain Linear holding the merged base: what "costs what the base costs" computes.
    let plain = burn::nn::Linear {
        weight: Param::from_tensor(merged.weight.base()),
        bias: merged.bias.clone(),
    };
    let x = Tensor::<2>::random([3, 9], Distribution::Normal(0.0, 1.0), &device);
    let (a, b) = (merged.forward(x.clone()), plain.forward(x.clone()));
    assert_eq!(
        a.into_data().try_to_vec::<f32>().unwrap(),
        b.into_data().try_to_vec::<f32>().unwrap(),
        "a merged weight must be used as is, bit for bit"
    );
    // And it differs from the unmerged base: the merge did something.
    let diff = (adapted.forward(x.clone()) - base.forward(x)).abs().max();
    assert!(diff.into_scalar::<f32>() > 1e-3);
}
