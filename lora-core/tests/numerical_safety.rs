//! Merge and unmerge refuse to write non-finite values into a base weight (PEFT's
//! `safe_merge`), name the weights, and change nothing.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Distribution, Tensor};
use common::Mlp;
use lora_core::testing::{Tol, assert_close, randomize_adapters};
use lora_core::{LinearFactory, LoraConfig, LoraError, adapted_params, attach, merge, unmerge};

/// Fill every adapter factor under `prefix` (a parameter path such as `fc2.weight`) with
/// `value`.
fn fill_factors<M: Module>(model: M, prefix: &str, value: f32) -> M {
    struct Fill<'a> {
        prefix: &'a str,
        value: f32,
        at: lora_core::Position,
    }
    impl ModuleMapper for Fill<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.at.outside() || !self.at.path().starts_with(self.prefix) {
                return param;
            }
            let value = self.value;
            param.map(|t| t.full_like(value))
        }
    }
    model.map(&mut Fill {
        prefix,
        value,
        at: lora_core::Position::default(),
    })
}

fn setup() -> (Mlp, Mlp, Tensor<2>) {
    let device = Device::flex();
    device.seed(41);
    let model = Mlp::new(6, 8, 3, &device);
    let adapted = randomize_adapters(
        attach(&model, &LoraConfig::new(2, 4.0), &LinearFactory).unwrap(),
        0.5,
    );
    let x = Tensor::random([4, 6], Distribution::Normal(0.0, 1.0), &device);
    (model, adapted, x)
}

#[test]
fn merge_refuses_a_nan_update_and_names_the_weight() {
    let (_, adapted, _) = setup();
    let poisoned = fill_factors(adapted, "fc2.weight", f32::NAN);
    let err = merge(&poisoned).unwrap_err();
    assert_eq!(
        err,
        LoraError::NonFiniteUpdate {
            paths: vec!["fc2.weight".into()]
        }
    );
    assert!(err.to_string().contains("fc2.weight"), "{err}");
    // Nothing was merged: the model still reports every adapter unmerged.
    assert!(adapted_params(&poisoned).iter().all(|a| !a.merged));
}

#[test]
fn merge_refuses_finite_factors_whose_update_overflows() {
    // 1e20 · 1e20 overflows f32: the factors are finite, the update is not.
    let (_, adapted, _) = setup();
    let huge = fill_factors(adapted, "fc1.weight", 1e20);
    let err = merge(&huge).unwrap_err();
    assert_eq!(
        err,
        LoraError::NonFiniteUpdate {
            paths: vec!["fc1.weight".into()]
        }
    );
    let both = fill_factors(huge, "fc2.weight", f32::INFINITY);
    match merge(&both).unwrap_err() {
        LoraError::NonFiniteUpdate { paths } => assert_eq!(paths, ["fc1.weight", "fc2.weight"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unmerge_refuses_factors_that_became_non_finite_after_merging() {
    let (model, adapted, x) = setup();
    let merged = merge(&adapted).unwrap();
    let poisoned = fill_factors(merged.clone(), "fc1.weight", f32::NAN);
    let err = unmerge(&poisoned).unwrap_err();
    assert_eq!(
        err,
        LoraError::NonFiniteUpdate {
            paths: vec!["fc1.weight".into()]
        }
    );
    // The merged model still works, and unmerging the healthy one still restores the base.
    let restored = unmerge(&merged).unwrap();
    // A few ulps of the magnitudes involved, max(|W|, |W + scale·ΔW|).
    let magnitude = merged
        .fc1
        .weight
        .base()
        .abs()
        .max()
        .into_scalar::<f32>()
        .max(model.fc1.weight.val().abs().max().into_scalar::<f32>());
    assert_close(
        restored.fc1.weight.base(),
        model.fc1.weight.val(),
        Tol {
            rel: 0.0,
            abs: 8.0 * f32::EPSILON * magnitude,
        },
        "fc1 base",
    );
    assert_close(
        merged.forward(x.clone()),
        adapted.forward(x),
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        "merged output",
    );
}

#[test]
fn finite_updates_still_merge() {
    let (_, adapted, x) = setup();
    let merged = merge(&adapted).unwrap();
    assert!(adapted_params(&merged).iter().all(|a| a.merged));
    assert_close(
        merged.forward(x.clone()),
        adapted.forward(x),
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        "merged output",
    );
}
