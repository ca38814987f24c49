//! Reproduce adapters written by the real PEFT 0.21.2 and LyCORIS 4.1.3 (tests/fixtures, see
//! its README): load their factors, map the layouts, and match `merged.weight` (1e-5 relative,
//! 1e-6 absolute floor) and `output_adapted` (1e-4 relative, 1e-5 absolute floor) in
//! weight-space, bypass and merged forms.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::nn::conv::{Conv1dConfig, Conv2dConfig};
use burn::nn::{PaddingConfig1d, PaddingConfig2d};
use burn::tensor::{Device, Tensor};
use lora_conv::{
    AnyAdapter, ConvLayer, ForwardMode, LoConAdapter, LoraConv, Tucker2Adapter, conv_config,
};
use lora_core::io::{read_safetensors, take_tensor};
use lora_core::testing::{Tol, assert_close};
use lora_core::{Adapter, AdapterFactory, AdapterSpec, Result, attach, merge};
use serde_json::Value;

fn dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn case(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(name).join("case.json")).unwrap()).unwrap()
}

fn usize_list(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// Hands out one fixed, imported adapter: how a loaded adapter goes through `attach`.
struct Imported(AnyAdapter);

impl AdapterFactory for Imported {
    type Adapter = AnyAdapter;
    fn build(&self, _: &str, _: &[usize], _: &AdapterSpec, _: &Device) -> Result<AnyAdapter> {
        Ok(self.0.clone())
    }
}

/// Check one conv fixture in every form.
fn check<C: ConvLayer + Clone, const N: usize>(name: &str, base: C, adapter: AnyAdapter) {
    let device = Device::flex();
    let mut reference = read_safetensors(dir(name).join("reference.safetensors")).unwrap();
    let source = format!("{name}/reference.safetensors");
    let input: Tensor<N> = take_tensor(&mut reference, "input", &source, &device).unwrap();
    let expected: Tensor<N> =
        take_tensor(&mut reference, "output_adapted", &source, &device).unwrap();
    let output_base: Tensor<N> =
        take_tensor(&mut reference, "output_base", &source, &device).unwrap();
    let merged_ref: Tensor<N> =
        take_tensor(&mut reference, "merged.weight", &source, &device).unwrap();

    assert_close(
        base.forward_nd(input.clone()),
        output_base,
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        &format!("{name}: base"),
    );

    // Merged weight: W + scale·ΔK.
    let base_weight: Tensor<N> =
        take_tensor(&mut reference, "base.weight", &source, &device).unwrap();
    let merged = base_weight + adapter.delta_weight::<N>();
    assert_close(
        merged,
        merged_ref,
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        &format!("{name}: merged.weight"),
    );

    // Weight-space, through attach.
    let cfg = conv_config(adapter.rank(), 1.0).with_targets(vec!["weight".into()]);
    let ws = attach(&base, &cfg, &Imported(adapter.clone())).unwrap();
    assert_close(
        ws.forward_nd(input.clone()),
        expected.clone(),
        Tol {
            rel: 1e-4,
            abs: 1e-5,
        },
        &format!("{name}: weight-space"),
    );
    let merged_model = merge(&ws).unwrap();
    assert_close(
        merged_model.forward_nd(input.clone()),
        expected.clone(),
        Tol {
            rel: 1e-4,
            abs: 1e-5,
        },
        &format!("{name}: merged"),
    );

    // Bypass.
    let variant = adapter.variant();
    let spec = AdapterSpec::new(adapter.rank(), 1.0);
    let bypass = LoraConv::new(
        name,
        base,
        variant,
        &spec,
        0.0,
        ForwardMode::Bypass,
        &Device::flex(),
    )
    .unwrap()
    .with_adapter(name, adapter)
    .unwrap();
    assert_close(
        bypass.forward(input.clone()),
        expected.clone(),
        Tol {
            rel: 1e-4,
            abs: 1e-5,
        },
        &format!("{name}: bypass"),
    );
    assert_close(
        bypass.merge().forward_nd(input),
        expected,
        Tol {
            rel: 1e-4,
            abs: 1e-5,
        },
        &format!("{name}: bypass merge"),
    );
}

fn base_params<const N: usize>(name: &str) -> (Param<Tensor<N>>, Param<Tensor<1>>) {
    let device = Device::flex();
    let mut reference = read_safetensors(dir(name).join("reference.safetensors")).unwrap();
    let w = take_tensor(&mut reference, "base.weight", name, &device).unwrap();
    let b = take_tensor(&mut reference, "base.bias", name, &device).unwrap();
    (Param::from_tensor(w), Param::from_tensor(b))
}

fn conv2d_from_case(name: &str) -> burn::nn::conv::Conv2d {
    let c = case(name);
    let layer = &c["layer"];
    let k = usize_list(&layer["kernel"]);
    let s = usize_list(&layer["stride"]);
    let p = usize_list(&layer["padding"]);
    let d = usize_list(&layer["dilation"]);
    let conv = Conv2dConfig::new(
        [
            layer["in"].as_u64().unwrap() as usize,
            layer["out"].as_u64().unwrap() as usize,
        ],
        [k[0], k[1]],
    )
    .with_stride([s[0], s[1]])
    .with_padding(PaddingConfig2d::Explicit(p[0], p[1], p[0], p[1]))
    .with_dilation([d[0], d[1]])
    .with_groups(layer["groups"].as_u64().unwrap() as usize)
    .init(&Device::flex());
    let (weight, bias) = base_params::<4>(name);
    burn::nn::conv::Conv2d {
        weight,
        bias: Some(bias),
        ..conv
    }
}

fn peft_scale(c: &Value) -> f64 {
    let (r, alpha) = (c["rank"].as_f64().unwrap(), c["alpha"].as_f64().unwrap());
    if c["use_rslora"].as_bool().unwrap_or(false) {
        alpha / r.sqrt()
    } else {
        alpha / r
    }
}

fn peft_factors<const N: usize>(name: &str) -> (Tensor<N>, Tensor<N>) {
    let device = Device::flex();
    let mut t = read_safetensors(dir(name).join("adapter_model.safetensors")).unwrap();
    let a = take_tensor(
        &mut t,
        "base_model.model.layer.lora_A.weight",
        name,
        &device,
    )
    .unwrap();
    let b = take_tensor(
        &mut t,
        "base_model.model.layer.lora_B.weight",
        name,
        &device,
    )
    .unwrap();
    (a, b)
}

#[test]
fn peft_conv2d_stride_2() {
    let name = "peft-conv2d";
    let (a, b) = peft_factors::<4>(name);
    let adapter = LoConAdapter::from_peft("layer", a, b, peft_scale(&case(name))).unwrap();
    check::<_, 4>(name, conv2d_from_case(name), AnyAdapter::new(adapter));
}

#[test]
fn peft_conv1d_rslora() {
    let name = "peft-conv1d-rslora";
    let c = case(name);
    let layer = &c["layer"];
    let (k, p) = (
        usize_list(&layer["kernel"])[0],
        usize_list(&layer["padding"])[0],
    );
    let conv = Conv1dConfig::new(4, 6, k)
        .with_padding(PaddingConfig1d::Explicit(p, p))
        .init(&Device::flex());
    let (weight, bias) = base_params::<3>(name);
    let conv = burn::nn::conv::Conv1d {
        weight,
        bias: Some(bias),
        ..conv
    };
    let (a, b) = peft_factors::<3>(name);
    // rsLoRA: alpha / sqrt(r) = 2 / sqrt(2).
    let scale = peft_scale(&c);
    assert!((scale - 2f64.sqrt()).abs() < 1e-12);
    let adapter = LoConAdapter::from_peft("layer", a, b, scale).unwrap();
    check::<_, 3>(name, conv, AnyAdapter::new(adapter));
}

fn lycoris_factors(
    name: &str,
) -> (
    std::collections::HashMap<String, burn::tensor::TensorData>,
    f64,
) {
    let mut t = read_safetensors(dir(name).join("adapter.safetensors")).unwrap();
    let alpha = t
        .remove("lycoris_layer.alpha")
        .unwrap()
        .iter::<f32>()
        .next()
        .unwrap() as f64;
    (t, alpha)
}

#[test]
fn lycoris_locon_plain() {
    let name = "lycoris-conv2d-plain";
    let device = Device::flex();
    let (mut t, alpha) = lycoris_factors(name);
    let down: Tensor<4> =
        take_tensor(&mut t, "lycoris_layer.lora_down.weight", name, &device).unwrap();
    let up: Tensor<4> = take_tensor(&mut t, "lycoris_layer.lora_up.weight", name, &device).unwrap();
    let rank = down.dims()[0] as f64;
    let adapter = LoConAdapter::from_peft("layer", down, up, alpha / rank).unwrap();
    check::<_, 4>(name, conv2d_from_case(name), AnyAdapter::new(adapter));
}

#[test]
fn lycoris_tucker() {
    let name = "lycoris-conv2d-tucker";
    let device = Device::flex();
    let (mut t, alpha) = lycoris_factors(name);
    let down: Tensor<4> =
        take_tensor(&mut t, "lycoris_layer.lora_down.weight", name, &device).unwrap();
    let mid: Tensor<4> =
        take_tensor(&mut t, "lycoris_layer.lora_mid.weight", name, &device).unwrap();
    let up: Tensor<4> = take_tensor(&mut t, "lycoris_layer.lora_up.weight", name, &device).unwrap();
    let rank = down.dims()[0] as f64;
    let adapter = Tucker2Adapter::from_lycoris("layer", down, mid, up, alpha / rank).unwrap();
    check::<_, 4>(name, conv2d_from_case(name), AnyAdapter::new(adapter));
}

#[test]
fn mismatched_factors_are_refused_with_their_key() {
    let device = Device::flex();
    let a = Tensor::<4>::zeros([3, 6, 3, 3], &device);
    let b = Tensor::<4>::zeros([8, 2, 1, 1], &device);
    let err = LoConAdapter::from_peft("layer", a.clone(), b, 1.0).unwrap_err();
    assert!(err.to_string().contains("layer.lora_B"), "{err}");
    let b = Tensor::<4>::zeros([8, 3, 3, 3], &device);
    assert!(
        LoConAdapter::from_peft("layer", a, b, 1.0).is_err(),
        "up must be 1x1"
    );
}
