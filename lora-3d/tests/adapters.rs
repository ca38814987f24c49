//! Inflating trained 2D adapters: the inflated adapted net equals the 2D adapted net on every
//! slice, for each variant; merge after inflation equals inflation after merge; the adapter
//! policies and fresh 3D adapters do what they say.
//!
//! Tolerance: 1e-5 relative to max(|y|, 1) for outputs, 1e-6 for weights.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use burn::tensor::Device;
use common::{Net2d, grid, per_slice_error, volume};
use lora_3d::{AdapterPolicy, InflateMode, InflateOptions, inflate};
use lora_conv::functional::param_count;
use lora_conv::{ConvFactory, ConvGeometry, ConvLayer, ConvVariant, conv_config};
use lora_core::testing::{assert_close, randomize_adapters};
use lora_core::{adapted_params, attach, merge, param_counts, unmerge};

const RTOL: f32 = 1e-5;
const VARIANTS: [ConvVariant; 3] = [ConvVariant::Hf, ConvVariant::Tucker2, ConvVariant::Cp];

/// A Net2d with trained-looking (random, non-zero) adapters on every conv and on the head.
fn adapted(mid: usize, variant: ConvVariant, device: &Device) -> (Net2d, Net2d) {
    let base = Net2d::new(&grid()[mid], device);
    // Depthwise convs see one input channel per group: Tucker-2's rank is at most 1 there.
    let config =
        conv_config(2, 4.0).with_rank_pattern(vec![("c2\\.weight".to_string(), rank_c2(mid))]);
    let net = attach(&base, &config, &ConvFactory::new(variant)).unwrap();
    (base, randomize_adapters(net, 0.3))
}

fn rank_c2(mid: usize) -> usize {
    if grid()[mid].groups == 8 { 1 } else { 2 }
}

#[test]
fn inflated_adapters_are_exact_per_slice() {
    let device = Device::flex();
    for variant in VARIANTS {
        for mid in 0..grid().len() {
            for depth in [3, 5] {
                let (base, net2d) = adapted(mid, variant, &device);
                let net3d = inflate(net2d.clone(), &InflateOptions::new(depth)).unwrap();
                let x = volume(4, &device);
                let err = per_slice_error(&net2d, &net3d, &x);
                let what = format!("{variant:?}, grid {mid}, kd {depth}");
                assert!(err <= RTOL, "{what}: relative error {err}");
                // The adapters did change the net (so the check above is not vacuous).
                let plain = per_slice_error(&base, &net3d, &x);
                assert!(
                    plain > 100.0 * RTOL,
                    "{what}: adapters had no effect ({plain})"
                );

                // Every adapter followed its weight; the base stays frozen, and the trainable
                // count is the analytic count for the 3D kernels (HF's down and Tucker-2's mid
                // kernels grow by kd, CP gains a depth factor) plus the head's linear adapter.
                let paths: Vec<String> =
                    adapted_params(&net3d).into_iter().map(|a| a.path).collect();
                let want: Vec<String> =
                    adapted_params(&net2d).into_iter().map(|a| a.path).collect();
                assert_eq!(paths, want, "{what}");
                let convs = [(&net3d.c1, 2), (&net3d.c2, rank_c2(mid)), (&net3d.c3, 2)];
                let want = convs
                    .iter()
                    .map(|(c, rank)| param_count(variant, &c.geometry(), *rank))
                    .sum::<usize>()
                    + 2 * (6 + 5);
                assert_eq!(param_counts(&net3d).trainable, want, "{what}");
            }
        }
    }
}

#[test]
fn merge_commutes_with_inflation() {
    let device = Device::flex();
    for variant in VARIANTS {
        for mode in [InflateMode::Centre, InflateMode::Mean] {
            let (_, net2d) = adapted(2, variant, &device);
            let options = InflateOptions::new(3).with_mode(mode);
            let merged_then_inflated = inflate(merge(&net2d).unwrap(), &options).unwrap();
            let inflated_then_merged = merge(&inflate(net2d.clone(), &options).unwrap()).unwrap();
            let what = format!("{variant:?} {mode:?}");
            for (a, b, layer) in [
                (&merged_then_inflated.c1, &inflated_then_merged.c1, "c1"),
                (&merged_then_inflated.c2, &inflated_then_merged.c2, "c2"),
                (&merged_then_inflated.c3, &inflated_then_merged.c3, "c3"),
            ] {
                assert_close(
                    a.weight.base(),
                    b.weight.base(),
                    1e-6,
                    &format!("{what} {layer}"),
                );
            }
            let x = volume(3, &device);
            assert_close(
                merged_then_inflated.forward(x.clone()),
                inflated_then_merged.forward(x.clone()),
                RTOL,
                &what,
            );
            // The merge state travels: unmerging the inflated merged net gives the inflated
            // unmerged one.
            let unmerged = unmerge(&merged_then_inflated).unwrap();
            let direct = inflate(net2d, &options).unwrap();
            assert_close(
                unmerged.c2.weight.base(),
                direct.c2.weight.base(),
                1e-6,
                &format!("{what}: unmerge"),
            );
            assert_close(unmerged.forward(x.clone()), direct.forward(x), RTOL, &what);
        }
    }
}

#[test]
fn merge_and_discard_policies() {
    let device = Device::flex();
    for variant in VARIANTS {
        let (base, net2d) = adapted(0, variant, &device);
        let x = volume(4, &device);
        let what = format!("{variant:?}");

        let folded = inflate(
            net2d.clone(),
            &InflateOptions::new(3).with_adapters(AdapterPolicy::Merge),
        )
        .unwrap();
        assert!(
            adapted_params(&folded).is_empty(),
            "{what}: merge leaves no adapters"
        );
        assert!(
            per_slice_error(&net2d, &folded, &x) <= RTOL,
            "{what}: merge"
        );

        let dropped = inflate(
            net2d.clone(),
            &InflateOptions::new(3).with_adapters(AdapterPolicy::Discard),
        )
        .unwrap();
        assert!(
            adapted_params(&dropped).is_empty(),
            "{what}: discard leaves no adapters"
        );
        assert!(
            per_slice_error(&base, &dropped, &x) <= RTOL,
            "{what}: discard"
        );
        // Discard also works on a merged net: the pretrained base comes back.
        let dropped = inflate(
            merge(&net2d).unwrap(),
            &InflateOptions::new(3).with_adapters(AdapterPolicy::Discard),
        )
        .unwrap();
        assert!(
            per_slice_error(&base, &dropped, &x) <= RTOL,
            "{what}: discard merged"
        );
    }
}

#[test]
fn fresh_3d_adapters_on_an_inflated_base() {
    let device = Device::flex();
    let base = Net2d::new(&grid()[1], &device);
    let net3d = inflate(base.clone(), &InflateOptions::new(3)).unwrap();
    for variant in VARIANTS {
        let config = conv_config(2, 8.0).with_targets(vec![r"c\d\.weight".to_string()]);
        let adapted = attach(&net3d, &config, &ConvFactory::new(variant)).unwrap();
        // Zero up factor: the adapted net equals the base at init.
        let x = volume(3, &device);
        assert_close(
            adapted.forward(x.clone()),
            net3d.forward(x),
            0.0,
            &format!("{variant:?}"),
        );
        // Trainable parameters: the analytic 3D counts, nothing else.
        let want: usize = [&net3d.c1, &net3d.c2, &net3d.c3]
            .iter()
            .map(|c| {
                let g: ConvGeometry = c.geometry();
                param_count(variant, &g, 2)
            })
            .sum();
        assert_eq!(param_counts(&adapted).trainable, want, "{variant:?}");
    }
}

/// Inflation on an autodiff device gives leaf parameters: a training step runs, and the
/// gradients reach the inflated adapters (including CP's new depth factor) and nothing frozen.
#[test]
fn inflated_models_train_on_autodiff() {
    use burn::optim::{AdamConfig, GradientsParams};
    let device = Device::flex().autodiff();
    for variant in VARIANTS {
        let (_, net2d) = adapted(0, variant, &device);
        let net3d = inflate(net2d, &InflateOptions::new(3)).unwrap();
        let before = net3d.c2.weight.val();
        let base_before = net3d.c2.weight.base();
        let x = volume(2, &device);
        let loss = net3d.forward(x.clone()).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &net3d);
        let mut optim = AdamConfig::new().init();
        let stepped = optim.step(1e-2, net3d, grads);
        let changed = (stepped.c2.weight.val() - before)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(
            changed > 0.0,
            "{variant:?}: the adapted weight did not move"
        );
        // The frozen base did not move.
        assert_close(stepped.c2.weight.base(), base_before, 0.0, "frozen base");
    }
}
