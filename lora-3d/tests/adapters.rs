//! Inflating trained 2D adapters: the inflated adapted net equals the 2D adapted net on every
//! slice, for each variant; merge after inflation equals inflation after merge; the adapter
//! policies and fresh 3D adapters do what they say.
//!
//! Tolerances: `OUT` for outputs, `WEIGHT` for kernels (both relative to the largest magnitude
//! of the expected tensor, with an absolute floor).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use burn::tensor::{Device, Tensor};
use common::{Net2d, grid, per_slice_check, per_slice_max_diff, volume};
use lora_3d::{AdapterPolicy, InflateMode, InflateOptions, inflate};
use lora_conv::bounds::param_count;
use lora_conv::{
    AnyAdapter, ConvFactory, ConvGeometry, ConvLayer, ConvVariant, CpAdapter, conv_config,
};
use lora_core::testing::{Tol, assert_close, randomize_adapters};
use lora_core::{LoraParam, adapted_params, attach, merge, param_counts, unmerge};

/// Outputs: 1e-5 of the largest magnitude, absolute floor 1e-6.
const OUT: Tol = Tol {
    rel: 1e-5,
    abs: 1e-6,
};
/// Kernels: 1e-6 of the largest magnitude, absolute floor 1e-7.
const WEIGHT: Tol = Tol {
    rel: 1e-6,
    abs: 1e-7,
};
const VARIANTS: [ConvVariant; 7] = ConvVariant::BUILTIN;

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
                let what = format!("{variant:?}, grid {mid}, kd {depth}");
                if let Err(e) = per_slice_check(&net2d, &net3d, &x, OUT) {
                    panic!("{what}: {e}");
                }
                // The adapters did change the net (so the check above is not vacuous).
                let plain = per_slice_max_diff(&base, &net3d, &x);
                assert!(plain > 1e-3, "{what}: adapters had no effect ({plain})");

                // Every adapter followed its weight; the base stays frozen, and the trainable
                // count is the analytic count for the 3D kernels (LoCon's down and Tucker-2's mid
                // kernels grow by kd, CP gains a depth factor) plus the head's linear adapter
                // (the type itself when it adapts linear weights, LoRA otherwise).
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
                    + if variant.adapts_linear() {
                        variant
                    } else {
                        ConvVariant::LoCon
                    }
                    .param_count(&[5, 6], 2);
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
                    WEIGHT,
                    &format!("{what} {layer}"),
                );
            }
            let x = volume(3, &device);
            assert_close(
                merged_then_inflated.forward(x.clone()),
                inflated_then_merged.forward(x.clone()),
                OUT,
                &what,
            );
            // The merge state travels: unmerging the inflated merged net gives the inflated
            // unmerged one.
            // Unmerge computes (W + Δ) − ((W + 2Δ) − (W + Δ)): a few ulps of the magnitudes
            // involved, max(|W|, |W + Δ|), with no relative part.
            let unmerged = unmerge(&merged_then_inflated).unwrap();
            let direct = inflate(net2d, &options).unwrap();
            let magnitude = merged_then_inflated
                .c2
                .weight
                .base()
                .abs()
                .max()
                .into_scalar::<f32>()
                .max(direct.c2.weight.base().abs().max().into_scalar::<f32>());
            assert_close(
                unmerged.c2.weight.base(),
                direct.c2.weight.base(),
                Tol {
                    rel: 0.0,
                    abs: 8.0 * f32::EPSILON * magnitude,
                },
                &format!("{what}: unmerge"),
            );
            assert_close(unmerged.forward(x.clone()), direct.forward(x), OUT, &what);
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
        if let Err(e) = per_slice_check(&net2d, &folded, &x, OUT) {
            panic!("{what}: merge: {e}");
        }

        let dropped = inflate(
            net2d.clone(),
            &InflateOptions::new(3).with_adapters(AdapterPolicy::Discard),
        )
        .unwrap();
        assert!(
            adapted_params(&dropped).is_empty(),
            "{what}: discard leaves no adapters"
        );
        if let Err(e) = per_slice_check(&base, &dropped, &x, OUT) {
            panic!("{what}: discard: {e}");
        }
        // Discard also works on a merged net: the pretrained base comes back.
        let dropped = inflate(
            merge(&net2d).unwrap(),
            &InflateOptions::new(3).with_adapters(AdapterPolicy::Discard),
        )
        .unwrap();
        if let Err(e) = per_slice_check(&base, &dropped, &x, OUT) {
            panic!("{what}: discard merged: {e}");
        }
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
            Tol::EXACT,
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

/// Inflation on an autodiff device gives leaf parameters: a training step runs, every factor of
/// every inflated adapter gets a non-zero gradient (including CP's new depth factor), every
/// factor moves, and nothing frozen moves.
#[test]
fn inflated_models_train_on_autodiff() {
    use burn::optim::{AdamConfig, GradientsParams};
    let device = Device::flex().autodiff();
    device.seed(23);
    for variant in VARIANTS {
        let (_, net2d) = adapted(0, variant, &device);
        let net3d = inflate(net2d, &InflateOptions::new(3)).unwrap();
        let adapter_before = c2_adapter(&net3d);
        let base_before = net3d.c2.weight.base();
        let x = volume(2, &device);
        let loss = net3d.forward(x.clone()).powi_scalar(2).mean();
        let grads = loss.backward();

        // Every factor of the inflated adapter gets a gradient that is not all zeros.
        let factors = factor_list(&adapter_before);
        for (name, grad) in factor_grads(&adapter_before, &grads) {
            let grad = grad.unwrap_or_else(|| panic!("{variant:?}: factor {name} got no gradient"));
            let size = grad.abs().max().into_scalar::<f32>();
            assert!(size > 0.0, "{variant:?}: factor {name} has a zero gradient");
        }
        if variant == ConvVariant::Cp {
            let cp = adapter_before
                .downcast_ref::<CpAdapter>()
                .expect("CP adapter expected");
            // The depth factor is first, [kd, r], one-hot at the centre row.
            let depth = cp.spatial[0].val();
            assert_eq!(depth.dims(), [3, 2], "CP depth factor shape");
            let rows: Vec<f32> = depth.clone().into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(rows, vec![0.0, 0.0, 1.0, 1.0, 0.0, 0.0], "CP depth factor");
            // Its gradient, checked against an independent reference: the conv `c2` alone,
            // with the loss L = Σ c2(x)·C for a fixed random input x and cotangent C, is linear
            // in the depth factor F (ΔK is linear in each CP factor). So the central difference
            // (L(F + h·v) − L(F − h·v)) / 2h equals g·v exactly in exact arithmetic, for any
            // step, along any direction v: the gradient itself, the off-centre rows only (which
            // do not touch the output yet but must learn), and a fixed mixed direction.
            // Step h = 1/|v|; tolerance 1e-3 of |g|·|v| (f32 sums of a few thousand terms).
            let c2 = net3d.c2.clone();
            let [_, c_in, _, _, _] = c2.weight.base().dims();
            let x2 = Tensor::<5>::random(
                [2, c_in * c2.groups, 4, 8, 8],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let y2 = c2.forward(x2.clone());
            let cotangent = Tensor::<5>::random(
                y2.shape(),
                burn::tensor::Distribution::Normal(0.0, 1.0),
                &device,
            );
            let grads2 = (y2 * cotangent.clone()).sum().backward();
            let g: Vec<f32> = depth
                .grad(&grads2)
                .expect("CP: the depth factor got no gradient through c2")
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let id = cp.spatial[0].id;
            let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
            let loss_at = |bump: Vec<f32>| {
                (perturb(c2.clone(), id, bump).forward(x2.clone()) * cotangent.clone())
                    .sum()
                    .into_scalar::<f32>()
            };
            let off_centre = [g[0], g[1], 0.0, 0.0, g[4], g[5]];
            assert!(
                norm(&off_centre) > 0.0,
                "CP: the off-centre depth rows got no gradient: {g:?}"
            );
            for (what, v) in [
                ("the gradient", g.clone()),
                ("the off-centre rows", off_centre.to_vec()),
                ("a mixed direction", vec![1.0, -0.5, 0.25, 2.0, -1.0, 0.5]),
            ] {
                let step = 1.0 / norm(&v);
                let plus = loss_at(v.iter().map(|a| a * step).collect());
                let minus = loss_at(v.iter().map(|a| -a * step).collect());
                let numeric = (plus - minus) / (2.0 * step);
                let analytic: f32 = g.iter().zip(&v).map(|(a, b)| a * b).sum();
                let bound = 1e-3 * norm(&g) * norm(&v);
                assert!(
                    (numeric - analytic).abs() <= bound,
                    "CP depth factor along {what}: autodiff g·v = {analytic:e}, finite \
                     difference {numeric:e}, bound {bound:e} (g = {g:?})"
                );
            }
        }

        let grads = GradientsParams::from_grads(grads, &net3d);
        let mut optim = AdamConfig::new().init();
        let stepped = optim.step(1e-2, net3d, grads);
        let adapter_after = c2_adapter(&stepped);
        for ((name, before), (_, after)) in factors.iter().zip(factor_list(&adapter_after)) {
            let moved = (after - before.clone()).abs().max().into_scalar::<f32>();
            assert!(moved > 0.0, "{variant:?}: factor {name} did not move");
        }
        // The frozen base did not move at all.
        assert_close(
            stepped.c2.weight.base(),
            base_before,
            Tol { rel: 0.0, abs: 0.0 },
            "frozen base",
        );
    }
}

/// The adapter on `c2` of an inflated net.
fn c2_adapter(net: &common::Net3d) -> AnyAdapter {
    net.c2
        .weight
        .reparameterization::<LoraParam<AnyAdapter>>()
        .expect("c2 carries an adapter")
        .adapter
        .clone()
}

/// Every factor of an adapter with its field path, as rank-2 tensors (all factors are 2-D).
fn factor_list(adapter: &AnyAdapter) -> Vec<(String, Tensor<2>)> {
    use burn::module::{Module, ModuleVisitor, Param};
    #[derive(Default)]
    struct V {
        path: Vec<String>,
        out: Vec<(String, Tensor<2>)>,
    }
    impl ModuleVisitor for V {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            // Factors are 2-D, DoRA's magnitude 1-D (kept as a [1, t] row here).
            let t = p.val();
            let dims = t.dims();
            assert!(D <= 2, "adapter factors are 1- or 2-D, got {dims:?}");
            let rows = if D == 2 { dims[0] } else { 1 };
            let cols = dims.iter().product::<usize>() / rows.max(1);
            self.out
                .push((self.path.join("."), t.reshape([rows, cols])));
        }
    }
    let mut v = V::default();
    adapter.visit(&mut v);
    v.out
}

/// Each factor's gradient (flattened to 2-D), by field path; `None` when it has none. Read on
/// the parameter's own tensor: a reshaped copy would be a new node without a gradient.
fn factor_grads(
    adapter: &AnyAdapter,
    grads: &burn::tensor::Gradients,
) -> Vec<(String, Option<Tensor<2>>)> {
    use burn::module::{Module, ModuleVisitor, Param};
    struct V<'a> {
        grads: &'a burn::tensor::Gradients,
        path: Vec<String>,
        out: Vec<(String, Option<Tensor<2>>)>,
    }
    impl ModuleVisitor for V<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let grad = p.val().grad(self.grads).map(|g| {
                let shape = g.shape();
                g.reshape(shape)
            });
            self.out.push((self.path.join("."), grad));
        }
    }
    let mut v = V {
        grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    adapter.visit(&mut v);
    v.out
}

/// `net` with `bump` (row-major) added to the parameter `id`.
fn perturb<M: burn::module::Module>(net: M, id: burn::module::ParamId, bump: Vec<f32>) -> M {
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::TensorData;
    struct P {
        id: burn::module::ParamId,
        bump: Vec<f32>,
    }
    impl ModuleMapper for P {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if param.id != self.id {
                return param;
            }
            let bump = std::mem::take(&mut self.bump);
            param.map(|t| {
                let shape = t.shape();
                let bump = Tensor::<D>::from_data(TensorData::new(bump, shape), &t.device());
                let require_grad = t.is_require_grad();
                (t.detach() + bump).detach().set_require_grad(require_grad)
            })
        }
    }
    net.map(&mut P { id, bump })
}

/// An adapter whose recorded scale differs from the one it was built with (a record loaded
/// into a model attached with another alpha) keeps the recorded scale through inflation: the
/// 3D net still equals the 2D net per slice.
#[test]
fn the_recorded_scale_survives_inflation() {
    struct Rescale;
    impl burn::module::ModuleMapper for Rescale {
        fn map_int<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<D, burn::tensor::Int>>,
        ) -> burn::module::Param<Tensor<D, burn::tensor::Int>> {
            // Only the adapters' `scale` parameters are `[1]` integers other than `merged`,
            // which holds 0 here; the recorded scale becomes 0.37.
            param.map(|t| {
                let is_flag = t.clone().into_data().iter::<i64>().next() == Some(0);
                if is_flag {
                    t
                } else {
                    t.zeros_like().add_scalar(lora_core::scale_bits(0.37))
                }
            })
        }
    }
    let device = Device::flex();
    let (_, net2d) = adapted(0, ConvVariant::LoCon, &device);
    let net2d = burn::module::Module::map(net2d, &mut Rescale);
    let scales: Vec<f64> = adapted_params(&net2d).iter().map(|a| a.scale).collect();
    assert!(
        scales.iter().all(|s| (s - 0.37).abs() < 1e-6),
        "the recorded scales were set: {scales:?}"
    );
    let net3d = inflate(net2d.clone(), &InflateOptions::new(3)).unwrap();
    let inflated: Vec<f64> = adapted_params(&net3d).iter().map(|a| a.scale).collect();
    assert_eq!(inflated, scales, "recorded scales after inflation");
    if let Err(e) = per_slice_check(&net2d, &net3d, &volume(4, &device), OUT) {
        panic!("{e}");
    }
}

/// Mean (I3D) inflation of trained adapters is exact on a depth-constant volume, for every
/// type: each inflated update sums over depth to the 2D one (CP's depth factor is `1/kd`,
/// LoHa repeats its second factor, DoRA's magnitude is scaled by the profile's L2 norm).
#[test]
fn mean_inflated_adapters_are_exact_on_depth_constant_volumes() {
    use burn::tensor::Distribution;
    let device = Device::flex();
    for variant in VARIANTS {
        let (_, net2d) = adapted(0, variant, &device);
        let options = InflateOptions::new(3)
            .with_mode(InflateMode::Mean)
            .with_depth_padding(0);
        let net3d = inflate(net2d.clone(), &options).unwrap();
        let image = Tensor::<4>::random([2, 2, 16, 16], Distribution::Normal(0.0, 1.0), &device);
        // Three depth-3 convs without depth padding leave 3 of 9 slices.
        let y3 = net3d.forward(image.clone().unsqueeze_dim::<5>(2).repeat_dim(2, 9));
        let want = net2d.forward(image);
        let [b, k, d, _, _] = y3.dims();
        for s in 0..d {
            let got = y3
                .clone()
                .slice([0..b, 0..k, s..s + 1, 0..1, 0..1])
                .reshape([b, k, 1, 1]);
            assert_close(
                got,
                want.clone(),
                OUT,
                &format!("{variant:?} mean, slice {s}"),
            );
        }
    }
}
