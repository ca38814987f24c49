//! Conv LoRA on a whole model: every Conv1d/2d/3d and Linear of an arbitrary module, chosen by
//! path pattern, with per-path rank and alpha, through the one reparameterizer.

#![allow(clippy::unwrap_used, missing_docs)]

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Conv3d, Conv3dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::bounds::param_count;
use lora_conv::{ConvFactory, ConvLayer, ConvVariant, conv_config};
use lora_core::testing::{Tol, assert_close, randomize_adapters};
use lora_core::{LoraConfig, LoraError, attach, merge, param_counts};

#[derive(Module, Debug)]
struct Net {
    audio: Conv1d,
    stem: Conv2d,
    grouped: Conv2d,
    volume: Conv3d,
    head: Linear,
}

impl Net {
    fn new(device: &Device) -> Self {
        Self {
            audio: Conv1dConfig::new(2, 4, 3).init(device),
            stem: Conv2dConfig::new([3, 8], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            grouped: Conv2dConfig::new([8, 8], [3, 3])
                .with_groups(2)
                .init(device),
            volume: Conv3dConfig::new([2, 4], [3, 3, 3]).init(device),
            head: LinearConfig::new(8, 5).init(device),
        }
    }

    fn forward(&self, a: Tensor<3>, x: Tensor<4>, v: Tensor<5>) -> Tensor<2> {
        let a = self
            .audio
            .forward(a)
            .mean_dim(2)
            .mean_dim(1)
            .reshape([2, 1]);
        let x = self.grouped.forward(self.stem.forward(x));
        let x = x.mean_dim(3).mean_dim(2).reshape([2, 8]);
        let v = self.volume.forward(v).mean().reshape([1, 1]);
        self.head.forward(x) + a + v
    }
}

fn inputs(device: &Device) -> (Tensor<3>, Tensor<4>, Tensor<5>) {
    let n = Distribution::Normal(0.0, 1.0);
    (
        Tensor::random([2, 2, 9], n, device),
        Tensor::random([2, 3, 8, 8], n, device),
        Tensor::random([1, 2, 5, 5, 5], n, device),
    )
}

#[test]
fn every_variant_on_every_layer_kind_with_per_path_ranks() {
    let device = Device::flex();
    device.seed(31);
    let net = Net::new(&device);
    let (a, x, v) = inputs(&device);
    for name in ["hf", "tucker2", "cp"] {
        let variant: ConvVariant = name.parse().unwrap();
        let config = conv_config(2, 4.0)
            .with_rank_pattern(vec![("stem\\.weight".into(), 3), ("head\\..*".into(), 1)])
            .with_alpha_pattern(vec![("grouped.*".into(), 1.0)])
            .with_trainable(vec!["head\\.bias".into()]);
        let adapted = attach(&net, &config, &ConvFactory::new(variant)).unwrap();
        let expected = param_count(variant, &net.audio.geometry(), 2)
            + param_count(variant, &net.stem.geometry(), 3)
            + param_count(variant, &net.grouped.geometry(), 2)
            + param_count(variant, &net.volume.geometry(), 2)
            + (8 + 5)
            + 5;
        assert_eq!(param_counts(&adapted).trainable, expected, "{name}");

        let adapted = randomize_adapters(adapted, 0.3);
        let y = adapted.forward(a.clone(), x.clone(), v.clone());
        let merged = merge(&adapted).unwrap();
        assert_close(
            merged.forward(a.clone(), x.clone(), v.clone()),
            y,
            Tol {
                rel: 1e-4,
                abs: 1e-5,
            },
            name,
        );
    }
}

#[test]
fn targets_select_layers_by_path() {
    let device = Device::flex();
    let net = Net::new(&device);
    let config = conv_config(2, 2.0).with_targets(vec!["(stem|volume)\\.weight".into()]);
    let adapted = attach(&net, &config, &ConvFactory::new(ConvVariant::Cp)).unwrap();
    let paths: Vec<String> = lora_core::adapted_params(&adapted)
        .into_iter()
        .map(|p| p.path)
        .collect();
    assert_eq!(paths, vec!["stem.weight", "volume.weight"]);
}

/// `attach` borrows the model, so no call, failed or not, can change it: that is a property of
/// its signature, pinned here at compile time. (A runtime "the model is untouched" check after
/// a failed attach could never fail, so there is none.)
const _ATTACH_BORROWS_THE_MODEL: fn(&Net, &LoraConfig, &ConvFactory) -> lora_core::Result<Net> =
    attach::<Net, ConvFactory>;

#[test]
fn bad_ranks_and_names_are_errors_that_name_the_layer() {
    let device = Device::flex();
    let net = Net::new(&device);
    // grouped: [8, 4, 3, 3], Tucker-2 rank must be <= min(8, 4) = 4.
    let config = conv_config(2, 2.0).with_rank_pattern(vec![("grouped\\.weight".into(), 5)]);
    let err = attach(&net, &config, &ConvFactory::new(ConvVariant::Tucker2)).unwrap_err();
    match &err {
        LoraError::InvalidRank {
            path,
            rank: 5,
            shape,
            ..
        } => {
            assert_eq!(path, "grouped.weight");
            assert_eq!(shape, &vec![8, 4, 3, 3]);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("grouped.weight"));
    // audio: [4, 2, 3] -> HF rank must be <= min(4, 2·3) = 4.
    let config = conv_config(5, 2.0).with_targets(vec!["audio\\.weight".into()]);
    let err = attach(&net, &config, &ConvFactory::new(ConvVariant::LoCon)).unwrap_err();
    assert!(matches!(err, LoraError::InvalidRank { ref path, .. } if path == "audio.weight"));
    // Biases are 1-D: no adapter type takes them.
    let config = conv_config(1, 1.0)
        .with_targets(vec!["stem\\.bias".into()])
        .with_tensor_ranks(vec![1]);
    let err = attach(&net, &config, &ConvFactory::new(ConvVariant::LoCon)).unwrap_err();
    assert!(matches!(err, LoraError::UnsupportedGeometry { ref path, .. } if path == "stem.bias"));
    let err = "tucker3".parse::<ConvVariant>().unwrap_err();
    assert!(
        matches!(err, LoraError::UnknownVariant { ref name, ref known }
            if name == "tucker3" && known.contains("tucker2")),
        "{err:?}"
    );
    assert!(err.to_string().contains("`tucker3`"), "{err}");
}
