//! The test helpers themselves: `check_close` is relative with an explicit absolute floor, no
//! more; it refuses different shapes and NaN; `copy_adapter_factors` copies factors only.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::tensor::{Device, Tensor};
use common::Mlp;
use lora_core::testing::{Tol, check_close, copy_adapter_factors, randomize_adapters};
use lora_core::{LinearAdapter, LinearFactory, LoraConfig, LoraParam, attach, merge};

fn t(values: &[f32]) -> Tensor<1> {
    Tensor::from_floats(values, &Device::flex())
}

#[test]
fn the_relative_part_is_relative_to_the_expected_magnitude() {
    let tol = Tol {
        rel: 1e-5,
        abs: 0.0,
    };
    // 1e-3 relative on values of size 1e-3: far outside 1e-5 relative. (The old helper,
    // `rtol · max(|b|, 1)`, accepted this: its bound was 1e-5 absolute.)
    assert!(check_close(t(&[1.001e-3, 2e-3]), t(&[1e-3, 2e-3]), tol, "small").is_err());
    // 1e-6 relative on the same values: inside.
    assert!(check_close(t(&[1.000_001e-3, 2e-3]), t(&[1e-3, 2e-3]), tol, "small").is_ok());
    // Large values: relative as well.
    assert!(check_close(t(&[1000.5]), t(&[1000.0]), tol, "large").is_err());
    assert!(check_close(t(&[1000.005]), t(&[1000.0]), tol, "large").is_ok());
}

#[test]
fn the_absolute_floor_applies_only_below_it() {
    let tol = Tol {
        rel: 1e-5,
        abs: 1e-6,
    };
    assert!(check_close(t(&[5e-7]), t(&[0.0]), tol, "near zero").is_ok());
    assert!(check_close(t(&[2e-6]), t(&[0.0]), tol, "near zero").is_err());
    assert_eq!(tol.bound(0.0), 1e-6);
    assert_eq!(tol.bound(10.0), 1e-4);
    // A bare number keeps the old meaning, x · max(|b|, 1), and says so.
    assert_eq!(
        Tol::from(1e-5),
        Tol {
            rel: 1e-5,
            abs: 1e-5
        }
    );
}

#[test]
fn different_shapes_and_nan_are_never_close() {
    let loose = Tol { rel: 1.0, abs: 1.0 };
    let device = Device::flex();
    let column = Tensor::<2>::zeros([2, 1], &device);
    let matrix = Tensor::<2>::zeros([2, 3], &device);
    let err = check_close(column, matrix, loose, "broadcast").unwrap_err();
    assert!(err.contains("shapes differ"), "{err}");
    assert!(check_close(t(&[f32::NAN]), t(&[0.0]), loose, "nan").is_err());
    assert!(check_close(t(&[0.0]), t(&[f32::NAN]), loose, "nan").is_err());
    assert!(check_close(t(&[f32::INFINITY]), t(&[f32::INFINITY]), loose, "inf").is_err());
    let exact = check_close(t(&[1.0, 2.0]), t(&[1.0, 2.0]), Tol::EXACT, "exact");
    assert!(exact.is_ok());
}

#[test]
fn copy_adapter_factors_copies_factors_only() {
    let device = Device::flex();
    device.seed(3);
    let model = Mlp::new(5, 4, 3, &device);
    let a = randomize_adapters(
        attach(&model, &LoraConfig::new(2, 2.0), &LinearFactory).unwrap(),
        0.5,
    );
    let b = randomize_adapters(a.clone(), 0.5);
    let merged_a = merge(&a).unwrap();
    let copied = copy_adapter_factors(merged_a.clone(), &b);
    let factor = |m: &Mlp| {
        m.fc1
            .weight
            .reparameterization::<LoraParam<LinearAdapter>>()
            .unwrap()
            .adapter
            .up
            .val()
    };
    // The factors are B's, the base and the merge flag stay merged A's.
    assert_eq!(factor(&copied).into_data(), factor(&b).into_data());
    assert_eq!(
        copied.fc1.weight.base().into_data(),
        merged_a.fc1.weight.base().into_data()
    );
    assert!(lora_core::adapted_params(&copied).iter().all(|p| p.merged));
}
