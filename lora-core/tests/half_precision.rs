//! Merge and unmerge on a base stored in f16 or bf16 with f32 factors: the arithmetic is f32,
//! the result is rounded once back to the base's dtype, and the error is what that rounding
//! allows (the bounds are stated at each check). An update that overflows the base's dtype is
//! refused like any other non-finite update.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor};
use common::Mlp;
use lora_core::testing::{Tol, assert_close, randomize_adapters};
use lora_core::{
    Adapter, LinearAdapter, LinearFactory, LoraConfig, LoraError, LoraParam, adapted_params,
    attach, merge, unmerge,
};

/// Every float parameter of `model` cast to `dtype`.
fn cast_all<M: Module>(model: M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| t.cast(dtype))
        }
    }
    model.map(&mut Cast(dtype))
}

/// `scale·ΔW` of the adapter on `fc1.weight`, in f32.
fn fc1_delta(model: &Mlp) -> Tensor<2> {
    model
        .fc1
        .weight
        .reparameterization::<LoraParam<LinearAdapter>>()
        .unwrap()
        .adapter
        .delta_weight::<2>()
}

fn max_abs(t: Tensor<2>) -> f32 {
    t.abs().max().into_scalar::<f32>()
}

/// `(half-precision model with random f32 adapters, its fc1 base in f32, fc1's update)`.
fn setup(dtype: FloatDType, std: f64) -> (Mlp, Tensor<2>, Tensor<2>) {
    let device = Device::flex();
    device.seed(77);
    let half = cast_all(Mlp::new(12, 10, 4, &device), dtype);
    let adapted = randomize_adapters(
        attach(&half, &LoraConfig::new(3, 6.0), &LinearFactory).unwrap(),
        std,
    );
    let w = adapted.fc1.weight.base().cast(FloatDType::F32);
    let delta = fc1_delta(&adapted);
    assert_eq!(delta.dtype(), DType::F32, "the factors are f32");
    (adapted, w, delta)
}

#[test]
fn half_precision_bases_merge_in_f32_and_round_once() {
    // u: the unit roundoff of each dtype (half an ulp at 1).
    for (dtype, want, u) in [
        (FloatDType::F16, DType::F16, 2f32.powi(-11)),
        (FloatDType::BF16, DType::BF16, 2f32.powi(-8)),
    ] {
        let (adapted, w, delta) = setup(dtype, 0.5);
        assert!(
            max_abs(delta.clone()) > 1e-2,
            "{want:?}: the update is not visible"
        );
        let exact = w.clone() + delta.clone();

        let merged = merge(&adapted).unwrap();
        assert!(adapted_params(&merged).iter().all(|a| a.merged));
        let base = merged.fc1.weight.base();
        assert_eq!(base.dtype(), want, "the merged base keeps its dtype");
        // Rounded once: bit-equal to the f32 sum cast to the base's dtype.
        assert_eq!(
            base.clone().cast(FloatDType::F32).into_data(),
            exact.clone().cast(dtype).cast(FloatDType::F32).into_data(),
            "{want:?}: merged base = round(W + scale·ΔW)"
        );
        // The stated error: half an ulp of the dtype, u·|W + scale·ΔW|_max (norm-wise), with an
        // absolute floor of half the smallest subnormal step for values near zero.
        assert_close(
            base.cast(FloatDType::F32),
            exact.clone(),
            Tol {
                rel: u,
                abs: 2f32.powi(-25),
            },
            &format!("{want:?}: merged base vs W + scale·ΔW in f32"),
        );

        // Unmerge: W to one ulp (2u) of max(|W|, |W + scale·ΔW|), in the base's dtype.
        let restored = unmerge(&merged).unwrap();
        let back = restored.fc1.weight.base();
        assert_eq!(back.dtype(), want, "the unmerged base keeps its dtype");
        let magnitude = max_abs(w.clone()).max(max_abs(exact));
        assert_close(
            back.cast(FloatDType::F32),
            w,
            Tol {
                rel: 0.0,
                abs: 2.0 * u * magnitude * (1.0 + 1e-3),
            },
            &format!("{want:?}: base after merge and unmerge"),
        );
    }
}

#[test]
fn an_update_that_overflows_f16_is_refused() {
    // Factors of size ~200 give updates far above f16's largest finite value, 65504: finite in
    // f32, infinite once rounded to f16. Merge must refuse and change nothing.
    let (adapted, _, delta) = setup(FloatDType::F16, 200.0);
    assert!(max_abs(delta) > 65504.0, "the update does not overflow f16");
    match merge(&adapted).unwrap_err() {
        LoraError::NonFiniteUpdate { paths } => {
            assert!(paths.contains(&"fc1.weight".to_string()), "{paths:?}");
        }
        other => panic!("{other:?}"),
    }
    // The same factors on an f32 base merge fine: it is the dtype that overflows.
    let wide = cast_all(adapted, FloatDType::F32);
    assert!(merge(&wide).is_ok());
}
