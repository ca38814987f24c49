//! Every variant on every geometry, for Conv1d, Conv2d and Conv3d, with random non-zero
//! factors:
//! - merged conv output = base conv output + bypass branch output;
//! - weight-space output = bypass output;
//! - analytic parameter count = counted trainable parameters.
//!
//! Grouped convs (groups 2, depthwise) have no exact bypass form: there the bypass must refuse,
//! and merge must equal the weight-space output. Tolerance: 1e-4 relative to max(|y|, 1).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::module::Module;
use burn::nn::conv::{Conv1dConfig, Conv2dConfig, Conv3dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d, PaddingConfig3d};
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::functional::param_count;
use lora_conv::{AnyAdapter, ConvFactory, ConvLayer, ConvVariant, LoraConv, conv_config};
use lora_core::testing::{assert_close, randomize_adapters};
use lora_core::{
    AdapterSpec, FactorInit, LoraError, LoraParam, Scaling, merge, param_counts, unmerge,
};

const RTOL: f32 = 1e-4;

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
    let ws = attach_random(&conv, &config, variant);
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

    // Merge is exact, and unmerge restores the base.
    let merged = merge(&ws).unwrap();
    assert_close(
        merged.forward_nd(x.clone()),
        y_ws.clone(),
        RTOL,
        &format!("{what}: merged"),
    );
    let restored = unmerge(&merged).unwrap();
    assert_close(
        restored.forward_nd(x.clone()),
        y_ws.clone(),
        RTOL,
        &format!("{what}: unmerged"),
    );

    let adapter = ws
        .clone()
        .weight_param_adapter()
        .expect("the weight carries an adapter");
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
    let bypass = LoraConv { adapter, ..bypass };
    let y_bypass = bypass.forward(x.clone());
    assert_close(
        y_ws.clone(),
        y_bypass.clone(),
        RTOL,
        &format!("{what}: weight-space vs bypass"),
    );
    // merged conv output = base conv output + branch output.
    let y_merged = bypass.clone().merge().forward_nd(x.clone());
    let branch = y_bypass.clone() - y_base;
    assert_close(
        y_merged,
        conv.forward_nd(x) + branch,
        RTOL,
        &format!("{what}: merged vs base+branch"),
    );
}

fn attach_random<C: ConvLayer>(
    conv: &C,
    config: &lora_core::LoraConfig,
    variant: ConvVariant,
) -> C {
    randomize_adapters(
        lora_core::attach(conv, config, &ConvFactory::new(variant)).unwrap(),
        0.5,
    )
}

/// Read the adapter attached to a conv's weight.
trait WeightAdapter {
    fn weight_param_adapter(self) -> Option<AnyAdapter>;
}
macro_rules! weight_adapter {
    ($($t:ty),*) => {$(
        impl WeightAdapter for $t {
            fn weight_param_adapter(self) -> Option<AnyAdapter> {
                self.weight
                    .reparameterization::<LoraParam<AnyAdapter>>()
                    .map(|p| p.adapter.clone())
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
        for variant in ConvVariant::ALL {
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
        for variant in ConvVariant::ALL {
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
        for variant in ConvVariant::ALL {
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

#[test]
fn forward_modes_agree_under_autodiff_and_only_factors_get_gradients() {
    let device = Device::flex().autodiff();
    device.seed(14);
    let conv = Conv2dConfig::new([3, 5], [3, 3]).init(&device);
    for variant in ConvVariant::ALL {
        let ws = attach_random(
            &conv,
            &conv_config(2, 2.0).with_targets(vec!["weight".into()]),
            variant,
        );
        let x = input::<4>(3, 6, &device);
        let grads = ws.forward(x).sum().backward();
        assert!(
            ws.weight.base().grad(&grads).is_none(),
            "{variant}: base got a gradient"
        );
        let adapter = ws.clone().weight_param_adapter().unwrap();
        let n_grads = count_grads(&adapter, &grads);
        let n_params = adapter.num_params();
        assert_eq!(n_grads, n_params, "{variant}: every factor gets a gradient");
    }
}

fn count_grads(adapter: &AnyAdapter, grads: &burn::tensor::Gradients) -> usize {
    use burn::module::{ModuleVisitor, Param};
    struct V<'a>(&'a burn::tensor::Gradients, usize);
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if p.val().grad(self.0).is_some() {
                self.1 += p.lazy_shape().num_elements();
            }
        }
    }
    let mut v = V(grads, 0);
    adapter.visit(&mut v);
    v.1
}
