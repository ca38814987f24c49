//! Every built-in adapter type (LoCon, Tucker-2, CP, LoHa, LoKr) on Conv1d, Conv2d and Conv3d kernels (an
//! inflated 3D network's layers are Conv3d) and a Linear head: saved from the model as a native
//! file and loaded onto a fresh copy of the base, the outputs are bit for bit the same.

use burn::module::Module;
use burn::nn::conv::{Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Conv3d, Conv3dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};
use lora_conv::{ConvFactory, ConvVariant, conv_config};
use lora_core::testing::randomize_adapters;
use lora_files::format::{self, ReadOptions};
use lora_files::model::{PathMap, attach_file, file_from_model};
use lora_files::{Format, merge};

#[derive(Module, Debug)]
struct Mixed {
    c1: Conv1d,
    c2: Conv2d,
    c3: Conv3d,
    head: Linear,
}

impl Mixed {
    fn forward(&self, x1: Tensor<3>, x2: Tensor<4>, x3: Tensor<5>) -> Tensor<2> {
        let a = self.c1.forward(x1).mean_dim(2).reshape([2, 6]);
        let b = self.c2.forward(x2).mean_dim(3).mean_dim(2).reshape([2, 6]);
        let c = self
            .c3
            .forward(x3)
            .mean_dim(4)
            .mean_dim(3)
            .mean_dim(2)
            .reshape([2, 6]);
        self.head.forward(a + b + c)
    }
}

#[test]
fn every_variant_on_1d_2d_3d_survives_the_native_file() {
    let device = Device::flex();
    device.seed(5);
    let base = Mixed {
        c1: Conv1dConfig::new(4, 6, 3).init(&device),
        c2: Conv2dConfig::new([4, 6], [3, 3]).init(&device),
        c3: Conv3dConfig::new([4, 6], [3, 3, 3]).init(&device),
        head: LinearConfig::new(6, 3).init(&device),
    };
    let x1 = Tensor::<3>::random([2, 4, 9], Distribution::Normal(0.0, 1.0), &device);
    let x2 = Tensor::<4>::random([2, 4, 7, 7], Distribution::Normal(0.0, 1.0), &device);
    let x3 = Tensor::<5>::random([2, 4, 5, 5, 5], Distribution::Normal(0.0, 1.0), &device);
    let run = |m: &Mixed| {
        m.forward(x1.clone(), x2.clone(), x3.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    };
    for variant in ConvVariant::BUILTIN {
        let adapted = lora_core::attach(&base, &conv_config(2, 3.0), &ConvFactory::new(variant))
            .unwrap_or_else(|e| panic!("{e}"));
        let adapted = randomize_adapters(adapted, 0.3);
        let want = run(&adapted);
        assert_ne!(
            want,
            run(&base),
            "{variant:?}: the adapters change the output"
        );
        let file =
            file_from_model(&adapted, &PathMap::identity()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<&str> = file.layers.iter().map(|l| l.algorithm.name()).collect();
        // One name per type; DoRA is a LoCon layer with a magnitude.
        let conv = match variant.name() {
            "dora" => "locon",
            other => other,
        };
        // Linear weights get the type itself when it adapts them, plain LoRA otherwise.
        let head = if variant.adapts_linear() {
            conv
        } else {
            "locon"
        };
        assert_eq!(names, [conv, conv, conv, head], "{variant:?}");
        let doras = file.layers.iter().filter(|l| l.magnitude.is_some()).count();
        assert_eq!(
            doras,
            if variant.name() == "dora" { 4 } else { 0 },
            "{variant:?}"
        );
        let path = std::env::temp_dir().join(format!(
            "lora-files-variants-{}-{variant:?}.safetensors",
            std::process::id()
        ));
        format::write(&file, Format::Native, &path).unwrap_or_else(|e| panic!("{e}"));
        let back = format::read(&path, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let loaded = attach_file(&base, &back, &PathMap::identity(), vec![])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run(&loaded), want, "{variant:?}: native round trip");
        // The file-level maths agrees with the model's: merging the file into the base's
        // PyTorch-layout weights gives the model's merged weights.
        let merged = lora_core::merge(&loaded).unwrap_or_else(|e| panic!("{e}"));
        let mut dict = lora_files::StateDict::default();
        let w = |t: Vec<f32>, s: Vec<usize>| lora_files::Stored::from_f32(s, &t);
        let val = |p: &burn::module::Param<Tensor<5>>| {
            p.val().into_data().try_to_vec::<f32>().unwrap_or_default()
        };
        dict.tensors.insert(
            "c3.weight".into(),
            w(val(&base.c3.weight), base.c3.weight.val().dims().to_vec()),
        );
        let mut only3 = back.clone();
        only3.layers.retain(|l| l.module == "c3");
        let m = merge::merge(&dict, "base", &only3, 1.0).unwrap_or_else(|e| panic!("{e}"));
        let file_merged = m.tensors["c3.weight"].to_f32().unwrap_or_default();
        let model_merged = val(&merged.c3.weight);
        let worst = file_merged
            .iter()
            .zip(&model_merged)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= 1e-5,
            "{variant:?}: file merge vs model merge differ by {worst:e}"
        );
    }
}
