//! `attach` refuses, naming the path and the values, two configurations that used to adapt
//! silently wrong (or nothing): an adapter whose update does not have its weight's exact shape
//! (`W + ΔW` broadcast it), and target patterns that match only tensors of a rank the config
//! does not adapt (conv kernels with the linear default `tensor_ranks = [2]`).

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::Device;
use common::Mlp;
use lora_core::{
    AdapterFactory, AdapterSpec, LinearAdapter, LinearFactory, LoraConfig, LoraError, Result,
    attach, has_adapters,
};

/// Builds a linear adapter one output column wider than the weight.
struct OneTooWide;

impl AdapterFactory for OneTooWide {
    type Adapter = LinearAdapter;

    fn build(
        &self,
        path: &str,
        shape: &[usize],
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<LinearAdapter> {
        LinearAdapter::new(path, shape[0], shape[1] + 1, spec, device)
    }
}

#[test]
fn an_update_of_another_shape_is_refused() {
    let device = Device::flex();
    let model = Mlp::new(6, 5, 4, &device);
    let err = attach(&model, &LoraConfig::new(2, 2.0), &OneTooWide).unwrap_err();
    match &err {
        LoraError::ShapeMismatch {
            path,
            expected,
            actual,
        } => {
            assert!(path.starts_with("fc1.weight"), "{err}");
            assert_eq!(expected, &vec![6, 5]);
            assert_eq!(actual, &vec![6, 6]);
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
    assert!(!has_adapters(&model));
    // The right shape still attaches.
    assert!(attach(&model, &LoraConfig::new(2, 2.0), &LinearFactory).is_ok());
}

#[derive(Module, Debug)]
struct TwoConvs {
    a: Conv2d,
    b: Conv2d,
}

#[test]
fn conv_kernels_under_the_linear_default_are_named_not_called_unmatched() {
    let device = Device::flex();
    let model = TwoConvs {
        a: Conv2dConfig::new([3, 4], [3, 3]).init(&device),
        b: Conv2dConfig::new([4, 2], [1, 1]).init(&device),
    };
    let err = attach(&model, &LoraConfig::new(2, 2.0), &LinearFactory).unwrap_err();
    match &err {
        LoraError::ExcludedByTensorRank {
            matched,
            ranks,
            allowed,
        } => {
            assert!(matched.contains("a.weight [4, 3, 3, 3]"), "{err}");
            assert!(matched.contains("b.weight [2, 4, 1, 1]"), "{err}");
            assert_eq!(ranks, &vec![4]);
            assert_eq!(allowed, &vec![2]);
        }
        other => panic!("expected ExcludedByTensorRank, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("tensor_ranks [2]"), "{message}");
    // A pattern that really matches nothing keeps its own error.
    let err = attach(
        &model,
        &LoraConfig::new(2, 2.0).with_targets(vec!["nothing".into()]),
        &LinearFactory,
    )
    .unwrap_err();
    assert!(matches!(err, LoraError::UnmatchedPattern { .. }), "{err}");
}

/// burn's own LoRA (`Module::apply_lora`) is a reparameterization too, but not one of ours:
/// merge must not take it for an adapter and fold its update into the base (the weight would
/// then be `W + 2·BA` while burn's adapter stays attached).
#[test]
fn burns_own_lora_is_not_ours_to_merge() {
    let device = Device::flex();
    device.seed(4);
    let model = Mlp::new(6, 5, 4, &device).apply_lora(burn::module::Lora::new(2, 4.0));
    assert!(!has_adapters(&model), "burn's LoRA counted as one of ours");
    assert!(matches!(
        lora_core::merge(&model).unwrap_err(),
        LoraError::NoAdapters
    ));
    assert!(matches!(
        lora_core::unmerge(&model).unwrap_err(),
        LoraError::NoAdapters
    ));
}

#[derive(Module, Debug)]
struct Rank7 {
    w: burn::module::Param<burn::tensor::Tensor<7>>,
}

/// Merge and unmerge are written for tensor ranks 1 to 6: a higher-rank target is refused at
/// attach, naming it (unmerge on it used to write `W + 2·ΔW`).
#[test]
fn a_weight_above_rank_six_is_refused_by_name() {
    let device = Device::flex();
    let model = Rank7 {
        w: burn::module::Param::from_tensor(burn::tensor::Tensor::zeros(
            [2, 2, 1, 1, 1, 1, 2],
            &device,
        )),
    };
    let config = LoraConfig::new(1, 1.0)
        .with_targets(vec!["w".into()])
        .with_tensor_ranks(vec![7]);
    let err = attach(&model, &config, &LinearFactory).unwrap_err();
    match &err {
        LoraError::UnsupportedGeometry { path, reason } => {
            assert_eq!(path, "w");
            assert!(reason.contains("rank 1 to 6"), "{err}");
        }
        other => panic!("expected UnsupportedGeometry, got {other}"),
    }
}
