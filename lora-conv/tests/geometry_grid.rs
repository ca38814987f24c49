//! Every variant on every geometry, for Conv1d, Conv2d and Conv3d, with random non-zero
//! factors:
//! - merged conv output = base conv output + bypass branch output;
//! - weight-space output = bypass output;
//! - analytic parameter count = counted trainable parameters.
//!
//! - merge writes `W + scale·ΔK` into the base and sets the flag; unmerge restores `W` to a few
//!   ulps and clears it;
//! - the bypass branch is the convolution of the input with `ΔK` (an independent reference),
//!   and the bypass module's merge has the kernel `W + scale·ΔK`.
//!
//! Grouped convs (groups 2, depthwise) have no exact bypass form: there the bypass must refuse,
//! and merge must equal the weight-space output. Tolerances: see `OUT` and `WEIGHT`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::module::Module;
use burn::nn::conv::{Conv1dConfig, Conv2dConfig, Conv3dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d, PaddingConfig3d};
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::bounds::param_count;
use lora_conv::functional::conv::conv_nd;
use lora_conv::{AnyAdapter, ConvFactory, ConvLayer, ConvVariant, LoraConv, conv_config};
use lora_core::testing::{Tol, assert_close, randomize_adapters};
use lora_core::{
    Adapter, AdapterSpec, FactorInit, LoraError, LoraParam, Scaling, adapted_params, merge,
    param_counts, unmerge,
};

/// Outputs: 1e-4 of the largest output magnitude, with an absolute floor of 1e-5.
const OUT: Tol = Tol {
    rel: 1e-4,
    abs: 1e-5,
};
/// Kernels computed two ways (merge's materialize vs `W + delta_weight()`): 1e-6 of the
/// largest magnitude, with an absolute floor of 1e-7.
const WEIGHT: Tol = Tol {
    rel: 1e-6,
    abs: 1e-7,
};

#[derive(Debug, Clone)]
enum Pad {
    Sym(usize),
    Same,
    /// Per-axis (begin, end); only Conv1d and Conv2d take it.
    Asym(Vec<(usize, usize)>),
}

#[derive(Debug, Clone)]
struct Geo {
    name: &'static str,
    s: usize,
    t: usize,
    kernel: Vec<usize>,
    stride: usize,
    pad: Pad,
    dilation: usize,
    groups: usize,
}

fn geometries(d: usize) -> Vec<Geo> {
    let k = |v: usize| vec![v; d];
    let base = Geo {
        name: "plain 3, pad 1",
        s: 4,
        t: 6,
        kernel: k(3),
        stride: 1,
        pad: Pad::Sym(1),
        dilation: 1,
        groups: 1,
    };
    let rect = match d {
        1 => vec![4],
        2 => vec![3, 1],
        _ => vec![1, 1, 3],
    };
    let mut list = vec![
        base.clone(),
        Geo {
            name: "stride 2, pad 0",
            stride: 2,
            pad: Pad::Sym(0),
            ..base.clone()
        },
        Geo {
            name: "same",
            pad: Pad::Same,
            ..base.clone()
        },
        Geo {
            name: "dilation 2",
            dilation: 2,
            pad: Pad::Sym(2),
            ..base.clone()
        },
        Geo {
            name: "groups 2",
            groups: 2,
            ..base.clone()
        },
        Geo {
            name: "depthwise",
            s: 4,
            t: 4,
            groups: 4,
            ..base.clone()
        },
        Geo {
            name: "rectangular",
            kernel: rect,
            pad: Pad::Sym(0),
            stride: 2,
            ..base.clone()
        },
        Geo {
            name: "1x1",
            kernel: k(1),
            pad: Pad::Sym(0),
            ..base.clone()
        },
    ];
    if d < 3 {
        let pairs = if d == 1 {
            vec![(2, 0)]
        } else {
            vec![(1, 0), (0, 2)]
        };
        list.push(Geo {
            name: "asymmetric pad",
            pad: Pad::Asym(pairs),
            ..base
        });
    }
    list
}

fn rank_for(geo: &Geo) -> usize {
    if geo.groups == geo.s { 1 } else { 2 }
}

fn check<C: ConvLayer + WeightAdapter, const N: usize>(
    conv: C,
    x: Tensor<N>,
    geo: &Geo,
    variant: ConvVariant,
    device: &Device,
) {
    let what = format!("{}d {} {variant}", N - 2, geo.name);
    let rank = rank_for(geo);
    let config = conv_config(rank, 2.0 * rank as f64).with_targets(vec!["weight".into()]);
    // Every factor is drawn from N(0, 1). A rank-1 update of a depthwise kernel is a product of
    // a handful of scalars (six for LoHa-Tucker), which can land near zero and make every check
    // below vacuous. Redraw until the update is clearly non-zero (the flex seed is shared across
    // test threads, so the draw differs from run to run).
    let ws = (0..16)
        .map(|_| attach_random(&conv, &config, variant))
        .find(|ws| {
            ws.clone()
                .weight_param_adapter()
                .is_some_and(|a| max_abs(a.delta_weight::<N>()) > 2e-2)
        })
        .expect("16 draws gave an update far from zero");
    let y_ws = ws.forward_nd(x.clone());
    let y_base = conv.forward_nd(x.clone());
    let (diff, _) = lora_core::testing::max_abs_diff(y_ws.clone(), y_base.clone());
    assert!(diff > 1e-3, "{what}: the adapter did not change the output");

    // Parameter count.
    let geometry = conv.geometry();
    assert_eq!(
        param_counts(&ws).trainable,
        param_count(variant, &geometry, rank),
        "{what}: trainable parameters"
    );

    let adapter = ws
        .clone()
        .weight_param_adapter()
        .expect("the weight carries an adapter");
    let w: Tensor<N> = conv.base_weight();
    let delta: Tensor<N> = adapter.delta_weight::<N>();
    let magnitude = max_abs(w.clone()).max(max_abs(w.clone() + delta.clone()));
    // The effective kernel: W + scale·ΔW, or s ⊙ (W + scale·ΔW) for a weight-decomposed type
    // (DoRA; its own s is checked against PEFT's by the lora-files fixture tests).
    let v = w.clone() + delta.clone();
    let effective = match adapter.channel_scale(&v) {
        Some(s) if !adapter.additive() => v * s,
        _ => v,
    };

    // Merge writes W + scale·ΔW into the base and sets the flag; the output does not change.
    let merged = merge(&ws).unwrap();
    assert!(
        adapted_params(&merged).iter().all(|a| a.merged),
        "{what}: merge did not set the merged flag"
    );
    assert_close(
        merged.base_weight(),
        w.clone() + delta.clone(),
        WEIGHT,
        &format!("{what}: merged base = W + scale·ΔW"),
    );
    assert_close(
        merged.forward_nd(x.clone()),
        y_ws.clone(),
        OUT,
        &format!("{what}: merged"),
    );
    // Unmerge restores the base to a few ulps of the magnitudes involved and clears the flag.
    let restored = unmerge(&merged).unwrap();
    assert!(
        adapted_params(&restored).iter().all(|a| !a.merged),
        "{what}: unmerge did not clear the merged flag"
    );
    assert_close(
        restored.base_weight(),
        w.clone(),
        Tol {
            rel: 0.0,
            abs: 8.0 * f32::EPSILON * magnitude,
        },
        &format!("{what}: base after merge and unmerge"),
    );
    assert_close(
        restored.forward_nd(x.clone()),
        y_ws.clone(),
        OUT,
        &format!("{what}: unmerged"),
    );

    let spec = AdapterSpec {
        rank,
        alpha: 2.0,
        scaling: Scaling::Standard,
        init: FactorInit::KaimingUniform,
    };
    if geo.groups > 1 {
        let err = LoraConv::wrap("conv", conv, variant, &spec, 0.0, device).unwrap_err();
        assert!(
            matches!(err, LoraError::UnsupportedGeometry { .. }),
            "{what}: {err:?}"
        );
        return;
    }
    let bypass = LoraConv::wrap("conv", conv.clone(), variant, &spec, 0.0, device).unwrap();
    let bypass = bypass.with_adapter("conv", adapter).unwrap();
    let y_bypass = bypass.forward(x.clone());
    // The branch alone is the convolution of the input with ΔK, with the base's stride,
    // padding and dilation: an independent reference for the bypass chain.
    let dims = x.dims();
    let branch_ref = conv_nd(
        x.clone(),
        effective.clone() - w.clone(),
        &geometry.stride,
        &geometry.padding_for(&dims[2..]),
        &geometry.dilation,
        1,
    );
    assert_close(
        y_bypass.clone() - y_base,
        branch_ref,
        OUT,
        &format!("{what}: bypass branch vs conv with ΔK"),
    );
    assert_close(
        y_ws.clone(),
        y_bypass.clone(),
        OUT,
        &format!("{what}: weight-space vs bypass"),
    );
    // The bypass module's merge is the plain conv with kernel W + scale·ΔW.
    let folded = bypass.clone().merge();
    assert_close(
        folded.base_weight(),
        effective,
        WEIGHT,
        &format!("{what}: bypass merge kernel"),
    );
    assert_close(
        folded.forward_nd(x),
        y_bypass,
        OUT,
        &format!("{what}: bypass merge output"),
    );
}

fn max_abs<const N: usize>(t: Tensor<N>) -> f32 {
    t.abs().max().into_scalar::<f32>()
}

fn attach_random<C: ConvLayer>(
    conv: &C,
    config: &lora_core::LoraConfig,
    variant: ConvVariant,
) -> C {
    randomize_adapters(
        lora_core::attach(conv, config, &ConvFactory::new(variant)).unwrap(),
        1.0,
    )
}

/// Read the adapter attached to a conv's weight, and the weight's base value.
trait WeightAdapter {
    fn weight_param_adapter(self) -> Option<AnyAdapter>;
    /// The stored kernel (without the adapter's update while unmerged), as a rank-`N` tensor.
    fn base_weight<const N: usize>(&self) -> Tensor<N>;
}
macro_rules! weight_adapter {
    ($($t:ty),*) => {$(
        impl WeightAdapter for $t {
            fn weight_param_adapter(self) -> Option<AnyAdapter> {
                self.weight
                    .reparameterization::<LoraParam<AnyAdapter>>()
                    .map(|p| p.adapter.clone())
            }
            fn base_weight<const N: usize>(&self) -> Tensor<N> {
                let w = self.weight.base();
                let shape = w.shape();
                w.reshape(shape)
            }
        }
    )*};
}
weight_adapter!(
    burn::nn::conv::Conv1d,
    burn::nn::conv::Conv2d,
    burn::nn::conv::Conv3d
);

fn input<const N: usize>(channels: usize, spatial: usize, device: &Device) -> Tensor<N> {
    let mut shape = vec![2, channels];
    shape.extend(std::iter::repeat_n(spatial, N - 2));
    Tensor::random(
        burn::tensor::Shape::from(shape),
        Distribution::Normal(0.0, 1.0),
        device,
    )
}

#[test]
fn conv1d_grid() {
    let device = Device::flex();
    device.seed(11);
    for geo in geometries(1) {
        for variant in ConvVariant::BUILTIN {
            let padding = match &geo.pad {
                Pad::Sym(p) => PaddingConfig1d::Explicit(*p, *p),
                Pad::Same => PaddingConfig1d::Same,
                Pad::Asym(v) => PaddingConfig1d::Explicit(v[0].0, v[0].1),
            };
            let conv = Conv1dConfig::new(geo.s, geo.t, geo.kernel[0])
                .with_stride(geo.stride)
                .with_dilation(geo.dilation)
                .with_groups(geo.groups)
                .with_padding(padding)
                .init(&device);
            check(conv, input::<3>(geo.s, 11, &device), &geo, variant, &device);
        }
    }
}

#[test]
fn conv2d_grid() {
    let device = Device::flex();
    device.seed(12);
    for geo in geometries(2) {
        for variant in ConvVariant::BUILTIN {
            let padding = match &geo.pad {
                Pad::Sym(p) => PaddingConfig2d::Explicit(*p, *p, *p, *p),
                Pad::Same => PaddingConfig2d::Same,
                Pad::Asym(v) => PaddingConfig2d::Explicit(v[0].0, v[1].0, v[0].1, v[1].1),
            };
            let conv = Conv2dConfig::new([geo.s, geo.t], [geo.kernel[0], geo.kernel[1]])
                .with_stride([geo.stride; 2])
                .with_dilation([geo.dilation; 2])
                .with_groups(geo.groups)
                .with_padding(padding)
                .init(&device);
            check(conv, input::<4>(geo.s, 9, &device), &geo, variant, &device);
        }
    }
}

#[test]
fn conv3d_grid() {
    let device = Device::flex();
    device.seed(13);
    for geo in geometries(3) {
        for variant in ConvVariant::BUILTIN {
            let padding = match &geo.pad {
                Pad::Sym(p) => PaddingConfig3d::Explicit(*p, *p, *p),
                Pad::Same => PaddingConfig3d::Same,
                Pad::Asym(_) => unreachable!("Conv3d takes symmetric padding only"),
            };
            let k = [geo.kernel[0], geo.kernel[1], geo.kernel[2]];
            let conv = Conv3dConfig::new([geo.s, geo.t], k)
                .with_stride([geo.stride; 3])
                .with_dilation([geo.dilation; 3])
                .with_groups(geo.groups)
                .with_padding(padding)
                .init(&device);
            check(conv, input::<5>(geo.s, 7, &device), &geo, variant, &device);
        }
    }
}

#[test]
fn bypass_refuses_a_rank_above_the_cap_and_names_the_layer() {
    let device = Device::flex();
    let conv = Conv2dConfig::new([4, 6], [3, 3]).init(&device);
    let spec = AdapterSpec {
        rank: 5,
        alpha: 1.0,
        scaling: Scaling::Standard,
        init: FactorInit::KaimingUniform,
    };
    let err = LoraConv::wrap(
        "block.conv",
        conv,
        ConvVariant::Tucker2,
        &spec,
        0.0,
        &device,
    )
    .unwrap_err();
    match err {
        LoraError::InvalidRank { path, rank: 5, .. } => assert_eq!(path, "block.conv"),
        other => panic!("{other:?}"),
    }
}

/// On an autodiff device, the weight-space, merged and bypass forms of the same adapter give
/// the same output, the same gradients for every factor, and no gradient to the base.
#[test]
fn forward_modes_agree_under_autodiff_and_only_factors_get_gradients() {
    let device = Device::flex().autodiff();
    device.seed(14);
    let conv = Conv2dConfig::new([3, 5], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 0, 1, 2))
        .with_stride([2, 1])
        .init(&device);
    let spec = AdapterSpec::new(2, 2.0);
    for variant in ConvVariant::BUILTIN {
        let ws = attach_random(
            &conv,
            &conv_config(2, 2.0).with_targets(vec!["weight".into()]),
            variant,
        );
        let adapter = ws.clone().weight_param_adapter().unwrap();
        let bypass = LoraConv::wrap("conv", conv.clone(), variant, &spec, 0.0, &device).unwrap();
        let bypass = bypass.with_adapter("conv", adapter.clone()).unwrap();
        let x = input::<4>(3, 6, &device);
        let y_ws = ws.forward(x.clone());
        // A fixed random cotangent, so that the gradients are not sums over symmetric terms.
        let cotangent = Tensor::<4>::random(y_ws.shape(), Distribution::Normal(0.0, 1.0), &device);
        let y_bypass = bypass.forward(x.clone());
        assert_close(
            y_bypass.clone(),
            y_ws.clone(),
            OUT,
            &format!("{variant}: bypass vs weight-space under autodiff"),
        );
        let merged = merge(&ws).unwrap();
        assert_close(
            merged.forward(x.clone()),
            y_ws.clone(),
            OUT,
            &format!("{variant}: merged vs weight-space under autodiff"),
        );

        let grads_ws = (y_ws * cotangent.clone()).sum().backward();
        let grads_bypass = (y_bypass * cotangent).sum().backward();
        assert!(
            ws.weight.base().grad(&grads_ws).is_none(),
            "{variant}: base got a gradient"
        );
        let from_ws = factor_grads(&adapter, &grads_ws);
        let from_bypass = factor_grads(&adapter, &grads_bypass);
        let n_params: usize = adapter.num_params();
        let n_ws: usize = from_ws.iter().map(|g| g.as_ref().map_or(0, Vec::len)).sum();
        assert_eq!(n_ws, n_params, "{variant}: every factor gets a gradient");
        for (i, (a, b)) in from_ws.iter().zip(&from_bypass).enumerate() {
            let (Some(a), Some(b)) = (a, b) else {
                panic!("{variant}: factor {i} has a gradient in one form only");
            };
            let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let diff = a
                .iter()
                .zip(b)
                .fold(0.0f32, |m, (p, q)| m.max((p - q).abs()));
            let bound = OUT.bound(scale);
            assert!(
                diff <= bound,
                "{variant}: factor {i} gradient differs between forms by {diff:e} > {bound:e}"
            );
        }
    }
}

/// Each adapter factor's gradient, flattened, in visiting order (`None` when it has none).
fn factor_grads(adapter: &AnyAdapter, grads: &burn::tensor::Gradients) -> Vec<Option<Vec<f32>>> {
    use burn::module::{ModuleVisitor, Param};
    struct V<'a>(&'a burn::tensor::Gradients, Vec<Option<Vec<f32>>>);
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let grad = p
                .val()
                .grad(self.0)
                .map(|g| g.into_data().try_to_vec::<f32>().unwrap());
            self.1.push(grad);
        }
    }
    let mut v = V(grads, Vec::new());
    adapter.visit(&mut v);
    v.1
}
