//! Linear LoRA through `attach`: init identity, forward-mode equality, merge/unmerge,
//! gradients, parameter counts, records and every configuration error.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::{Device, Distribution, Tensor};
use common::Mlp;
use lora_core::testing::{Tol, assert_close, copy_adapter_factors, randomize_adapters};
use lora_core::{
    Adapter, LinearAdapter, LinearFactory, LoraConfig, LoraError, LoraLinear, LoraLinearConfig,
    LoraParam, adapted_params, attach, merge, param_counts, unmerge,
};

const D_IN: usize = 12;
const HIDDEN: usize = 20;
const D_OUT: usize = 6;

fn setup(seed: u64) -> (Device, Mlp, Tensor<2>) {
    let device = Device::flex();
    device.seed(seed);
    let model = Mlp::new(D_IN, HIDDEN, D_OUT, &device);
    let x = Tensor::random([5, D_IN], Distribution::Normal(0.0, 1.0), &device);
    (device, model, x)
}

fn config(rank: usize) -> LoraConfig {
    LoraConfig::new(rank, 2.0 * rank as f64)
}

#[test]
fn adapted_model_equals_base_at_init() {
    let (_, model, x) = setup(1);
    let adapted = attach(&model, &config(3), &LinearFactory).unwrap();
    let (a, b) = (adapted.forward(x.clone()), model.forward(x));
    assert_eq!(
        a.into_data(),
        b.into_data(),
        "zero `up` must leave outputs bit-identical"
    );
}

#[test]
fn adapters_change_the_output_once_up_is_non_zero() {
    let (_, model, x) = setup(2);
    let adapted = randomize_adapters(attach(&model, &config(3), &LinearFactory).unwrap(), 0.3);
    let diff = (adapted.forward(x.clone()) - model.forward(x)).abs().max();
    assert!(diff.into_scalar::<f32>() > 1e-2);
}

#[test]
fn weight_space_equals_bypass_with_the_same_factors() {
    // Tolerance: 1e-5 relative to the output magnitude (f32, a few hundred flops per output),
    // with an absolute floor of 1e-6 for outputs near zero.
    let device = Device::flex();
    for (rank, seed) in [(1, 3), (4, 4), (6, 5)] {
        device.seed(seed);
        let base = LinearConfig::new(D_IN, D_OUT).init(&device);
        let ws = attach(&base, &LoraConfig::new(rank, 3.0), &LinearFactory).unwrap();
        let ws = randomize_adapters(ws, 0.5);
        let adapter = ws
            .weight
            .reparameterization::<LoraParam<LinearAdapter>>()
            .unwrap()
            .adapter
            .clone();
        // Bypass: the same base and the same factors, dropout off.
        let bypass = LoraLinearConfig::new(D_IN, D_OUT, rank, 3.0)
            .wrap(base, &device)
            .unwrap();
        let bypass = LoraLinear { adapter, ..bypass };
        let x = Tensor::<2>::random([7, D_IN], Distribution::Normal(0.0, 1.0), &device);
        let out = bypass.forward(x.clone());
        assert_close(
            ws.forward(x.clone()),
            out.clone(),
            Tol {
                rel: 1e-5,
                abs: 1e-6,
            },
            "weight-space vs bypass",
        );
        // The bypass module's own merge gives a plain Linear with the same output.
        assert_close(
            bypass.merge().forward(x),
            out,
            Tol {
                rel: 1e-5,
                abs: 1e-6,
            },
            "bypass merge",
        );
    }
}

#[test]
fn merge_is_exact_and_unmerge_restores_the_base() {
    let (_, model, x) = setup(6);
    let adapted = randomize_adapters(attach(&model, &config(4), &LinearFactory).unwrap(), 0.5);
    let before = adapted.forward(x.clone());

    let merged = merge(&adapted).unwrap();
    assert!(adapted_params(&merged).iter().all(|a| a.merged));
    // Merged output = unmerged output (1e-5 relative, 1e-6 absolute floor).
    let out_tol = Tol {
        rel: 1e-5,
        abs: 1e-6,
    };
    assert_close(
        merged.forward(x.clone()),
        before.clone(),
        out_tol,
        "merged vs unmerged",
    );
    // The base really holds W + scale·ΔW now, ΔW read from the adapter itself.
    for (layer, merged_layer, adapted_layer) in [
        ("fc1", &merged.fc1, &adapted.fc1),
        ("fc2", &merged.fc2, &adapted.fc2),
    ] {
        let delta = adapted_layer
            .weight
            .reparameterization::<LoraParam<LinearAdapter>>()
            .unwrap()
            .adapter
            .delta_weight::<2>();
        let w = adapted_layer.weight.base();
        assert!(delta.clone().abs().max().into_scalar::<f32>() > 1e-3);
        assert_close(
            merged_layer.weight.base(),
            w + delta,
            Tol {
                rel: 1e-6,
                abs: 1e-7,
            },
            &format!("{layer}: merged base = W + scale·ΔW"),
        );
    }

    let restored = unmerge(&merged).unwrap();
    assert!(adapted_params(&restored).iter().all(|a| !a.merged));
    // Merge then unmerge restores the base weight to a few ulps of the magnitudes involved,
    // max(|W|, |W + scale·ΔW|): the tolerance is 8 ulps of that, with no relative part.
    for (layer, restored_w, merged_w, original) in [
        (
            "fc1",
            restored.fc1.weight.base(),
            merged.fc1.weight.base(),
            model.fc1.weight.val(),
        ),
        (
            "fc2",
            restored.fc2.weight.base(),
            merged.fc2.weight.base(),
            model.fc2.weight.val(),
        ),
    ] {
        let magnitude = merged_w
            .abs()
            .max()
            .into_scalar::<f32>()
            .max(original.clone().abs().max().into_scalar::<f32>());
        assert_close(
            restored_w,
            original,
            Tol {
                rel: 0.0,
                abs: 8.0 * f32::EPSILON * magnitude,
            },
            &format!("{layer} base after merge and unmerge"),
        );
    }
    assert_close(restored.forward(x), before, out_tol, "after unmerge");
}

#[test]
fn merging_twice_and_unmerging_the_unmerged_are_errors() {
    let (_, model, _) = setup(7);
    let adapted = attach(&model, &config(2), &LinearFactory).unwrap();
    let err = unmerge(&adapted).unwrap_err();
    assert_eq!(
        err,
        LoraError::NotMerged {
            paths: vec!["fc1.weight".into(), "fc2.weight".into()]
        }
    );
    let merged = merge(&adapted).unwrap();
    assert!(matches!(merge(&merged), Err(LoraError::AlreadyMerged { paths }) if paths.len() == 2));
    assert_eq!(merge(&model).unwrap_err(), LoraError::NoAdapters);
}

#[test]
fn swapping_adapters_on_a_resident_base() {
    // Adapter A merged; unmerge it, load adapter B's factors (only the factors: the base and
    // the merge flags stay the resident model's), merge: equals B applied alone. A record
    // would carry B's base and flags too, and hide a broken unmerge.
    let (device, model, x) = setup(8);
    let with_a = randomize_adapters(attach(&model, &config(2), &LinearFactory).unwrap(), 0.5);
    device.seed(99);
    let with_b = randomize_adapters(with_a.clone(), 0.5);
    let expected_b = with_b.forward(x.clone());
    // A and B differ enough that a leftover A would show.
    let a_minus_b = (with_a.forward(x.clone()) - expected_b.clone()).abs().max();
    assert!(a_minus_b.into_scalar::<f32>() > 1e-2);

    let resident = merge(&with_a).unwrap();
    let resident = unmerge(&resident).unwrap();
    let resident = copy_adapter_factors(resident, &with_b);
    let resident = merge(&resident).unwrap();
    assert_close(
        resident.forward(x),
        expected_b,
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        "swapped",
    );
    // The resident base now holds W + ΔB exactly as merging B alone would.
    let merged_b = merge(&with_b).unwrap();
    let tol = Tol {
        rel: 1e-6,
        abs: 1e-6,
    };
    assert_close(
        resident.fc1.weight.base(),
        merged_b.fc1.weight.base(),
        tol,
        "fc1 base after swap",
    );
    assert_close(
        resident.fc2.weight.base(),
        merged_b.fc2.weight.base(),
        tol,
        "fc2 base after swap",
    );
}

#[test]
fn only_adapter_factors_and_unfrozen_params_get_gradients() {
    let device = Device::flex().autodiff();
    device.seed(9);
    let model = Mlp::new(D_IN, HIDDEN, D_OUT, &device);
    let cfg = config(2)
        .with_targets(vec!["fc1\\.weight".into()])
        .with_trainable(vec!["fc2\\..*".into()]);
    let adapted = randomize_adapters(attach(&model, &cfg, &LinearFactory).unwrap(), 0.1);
    let x = Tensor::random([4, D_IN], Distribution::Normal(0.0, 1.0), &device);
    let grads = adapted.forward(x).sum().backward();

    let weight = &adapted.fc1.weight;
    let lora = weight
        .reparameterization::<LoraParam<LinearAdapter>>()
        .unwrap();
    assert!(lora.adapter.down.val().grad(&grads).is_some());
    assert!(lora.adapter.up.val().grad(&grads).is_some());
    assert!(
        weight.base().grad(&grads).is_none(),
        "frozen base got a gradient"
    );
    let fc1_bias = adapted.fc1.bias.as_ref().unwrap();
    assert!(
        fc1_bias.val().grad(&grads).is_none(),
        "frozen bias got a gradient"
    );
    assert!(
        adapted.fc2.weight.val().grad(&grads).is_some(),
        "unfrozen fc2 lost its gradient"
    );
}

#[test]
fn trainable_count_is_r_times_din_plus_dout_per_layer_plus_unfrozen() {
    let (_, model, _) = setup(10);
    for rank in [1, 2, 5] {
        let adapted = attach(&model, &config(rank), &LinearFactory).unwrap();
        let counts = param_counts(&adapted);
        let lora = rank * (D_IN + HIDDEN) + rank * (HIDDEN + D_OUT);
        assert_eq!(counts.trainable, lora, "rank {rank}");
        assert_eq!(counts.adapter, lora);
        assert_eq!(counts.total, model.num_params() + lora);
    }
    // Per-path overrides and an unfrozen head bias.
    let cfg = config(2)
        .with_rank_pattern(vec![("fc2\\.weight".into(), 5)])
        .with_alpha_pattern(vec![("fc1.*".into(), 1.0)])
        .with_trainable(vec!["fc2\\.bias".into()]);
    let adapted = attach(&model, &cfg, &LinearFactory).unwrap();
    let expected = 2 * (D_IN + HIDDEN) + 5 * (HIDDEN + D_OUT) + D_OUT;
    assert_eq!(param_counts(&adapted).trainable, expected);
    let lora = adapted
        .fc1
        .weight
        .reparameterization::<LoraParam<LinearAdapter>>()
        .unwrap();
    assert_eq!(lora.adapter.scale, 0.5, "alpha override 1.0 / rank 2");
}

#[test]
fn rslora_scales_by_root_rank() {
    let (_, model, _) = setup(11);
    let cfg = config(4).with_scaling(lora_core::Scaling::RsLora);
    let adapted = attach(&model, &cfg, &LinearFactory).unwrap();
    let lora = adapted
        .fc1
        .weight
        .reparameterization::<LoraParam<LinearAdapter>>()
        .unwrap();
    assert_eq!(lora.adapter.scale, 8.0 / 2.0);
}

#[test]
fn record_round_trip_keeps_base_adapters_and_merge_state() {
    let (device, model, x) = setup(12);
    let adapted = randomize_adapters(attach(&model, &config(3), &LinearFactory).unwrap(), 0.4);
    let merged = merge(&adapted).unwrap();
    let expected = adapted.forward(x.clone());

    // A freshly built, differently seeded model with fresh adapters.
    device.seed(1234);
    let fresh = attach(
        &Mlp::new(D_IN, HIDDEN, D_OUT, &device),
        &config(3),
        &LinearFactory,
    )
    .unwrap();
    let round_trip = |m: Mlp| {
        let bytes = m.into_record().into_bytes().unwrap();
        burn::store::ModuleRecord::from_bytes(bytes).unwrap()
    };
    let loaded = fresh.clone().load_record(round_trip(adapted.clone()));
    // Same parameters, same computation: bit-equal.
    assert_close(
        loaded.forward(x.clone()),
        expected.clone(),
        Tol { rel: 0.0, abs: 0.0 },
        "unmerged record",
    );

    // A merged record loads back merged: no double add.
    let loaded = fresh.load_record(round_trip(merged));
    assert!(adapted_params(&loaded).iter().all(|a| a.merged));
    let tol = Tol {
        rel: 1e-5,
        abs: 1e-6,
    };
    assert_close(
        loaded.forward(x.clone()),
        expected.clone(),
        tol,
        "merged record",
    );
    assert_close(
        unmerge(&loaded).unwrap().forward(x),
        expected,
        tol,
        "unmerged after load",
    );
}

/// `attach` borrows the model, so no call, failed or not, can change it: that is a property of
/// its signature, pinned here at compile time. (A runtime "the model is untouched" check after
/// a failed attach could never fail, so there is none.)
const _ATTACH_BORROWS_THE_MODEL: fn(&Mlp, &LoraConfig, &LinearFactory) -> lora_core::Result<Mlp> =
    attach::<Mlp, LinearFactory>;

#[test]
fn every_invalid_config_gives_its_error() {
    let (_, model, _) = setup(13);
    let err = |cfg: LoraConfig| attach(&model, &cfg, &LinearFactory).unwrap_err();

    match err(config(0)) {
        LoraError::InvalidRank { path, rank: 0, .. } => assert_eq!(path, "fc1.weight"),
        other => panic!("{other:?}"),
    }
    // fc2 is [20, 6]: rank 7 exceeds min(d_in, d_out) = 6 there, not on fc1 ([12, 20]).
    let e = err(config(2).with_rank_pattern(vec![("fc2\\.weight".into(), 7)]));
    assert!(
        matches!(&e, LoraError::InvalidRank { path, rank: 7, shape, .. }
        if path == "fc2.weight" && shape == &vec![HIDDEN, D_OUT]),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("fc2.weight") && e.to_string().contains("1..=6"),
        "{e}"
    );
    let e = err(LoraConfig::new(2, f64::NAN));
    assert!(matches!(e, LoraError::InvalidAlpha { .. }), "{e:?}");
    let e = err(config(2).with_targets(vec!["fc[".into()]));
    assert!(matches!(e, LoraError::InvalidPattern { .. }), "{e:?}");
    let e = err(config(2).with_targets(vec!["conv.*".into()]));
    assert!(
        matches!(&e, LoraError::UnmatchedPattern { field, .. } if field == "targets"),
        "{e:?}"
    );
    let e = err(config(2).with_rank_pattern(vec![("fc9.*".into(), 1)]));
    assert!(matches!(&e, LoraError::UnmatchedPattern { field, .. } if field == "rank_pattern"));
    let e = err(config(2).with_trainable(vec!["head.*".into()]));
    assert!(matches!(&e, LoraError::UnmatchedPattern { field, .. } if field == "trainable"));
    // Biases are 1-D: targeting them with linear LoRA's tensor rank 1 is a geometry error.
    let e = err(config(1)
        .with_targets(vec![".*bias".into()])
        .with_tensor_ranks(vec![1]));
    assert!(matches!(&e, LoraError::UnsupportedGeometry { path, .. } if path == "fc1.bias"));
    // Nested reparameterization is refused.
    let adapted = attach(&model, &config(2), &LinearFactory).unwrap();
    let e = attach(&adapted, &config(2), &LinearFactory).unwrap_err();
    assert_eq!(
        e,
        LoraError::AlreadyAdapted {
            path: "fc1.weight".into()
        }
    );
}

#[test]
fn bypass_config_errors_name_values() {
    let device = Device::flex();
    let e = LoraLinearConfig::new(4, 3, 4, 1.0)
        .init(&device)
        .unwrap_err();
    assert!(matches!(e, LoraError::InvalidRank { rank: 4, .. }), "{e:?}");
    let base = LinearConfig::new(8, 8).init(&device);
    assert!(
        LoraLinearConfig::new(8, 8, 0, 1.0)
            .wrap(base, &device)
            .is_err()
    );
}

/// Defect (a): the scale travels with the factors. A record saved at alpha 6 (scale 2) and
/// loaded into a model attached with alpha 1 computes what it computed before, at scale 2, and
/// merge then unmerge returns the base (before the fix the loaded model ran at scale 1/3 and
/// its merged base was off by the difference).
#[test]
fn a_loaded_record_brings_its_scale() {
    let (device, model, x) = setup(21);
    let adapted = randomize_adapters(attach(&model, &config(3), &LinearFactory).unwrap(), 0.4);
    let expected = adapted.forward(x.clone());
    let bytes = adapted.clone().into_record().into_bytes().unwrap();
    device.seed(77);
    let other = attach(&model, &LoraConfig::new(3, 1.0), &LinearFactory).unwrap();
    let loaded = other.load_record(burn::store::ModuleRecord::from_bytes(bytes).unwrap());
    let lora = loaded
        .fc1
        .weight
        .reparameterization::<LoraParam<LinearAdapter>>()
        .unwrap();
    assert_eq!(lora.scale(), 2.0);
    assert!(adapted_params(&loaded).iter().all(|a| a.scale == 2.0));
    let tol = Tol {
        rel: 1e-6,
        abs: 1e-6,
    };
    assert_close(
        loaded.forward(x.clone()),
        expected.clone(),
        tol,
        "loaded at its own scale",
    );
    let merged = merge(&loaded).unwrap();
    assert_close(
        merged.forward(x.clone()),
        expected,
        tol,
        "merged at its own scale",
    );
    let restored = unmerge(&merged).unwrap();
    assert_close(
        restored.fc1.weight.base(),
        model.fc1.weight.val(),
        Tol {
            rel: 1e-6,
            abs: 1e-6,
        },
        "base after merge and unmerge",
    );
}
