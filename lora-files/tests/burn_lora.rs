//! A model that carries burn's own LoRA (`Module::apply_lora`) is refused by name, both when an
//! adapter file is attached to it and when one is saved from it: burn cannot nest another
//! adapter under its LoRA, and a file saved from it would silently leave burn's factors out.

use burn::module::{Lora, Module};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::Device;
use lora_conv::{ConvFactory, ConvVariant, conv_config};
use lora_files::FileError;
use lora_files::model::{PathMap, attach_file, file_from_model};

#[derive(Module, Debug)]
struct Net {
    conv: Conv2d,
    head: Linear,
}

fn net(device: &Device) -> Net {
    Net {
        conv: Conv2dConfig::new([3, 4], [3, 3]).init(device),
        head: LinearConfig::new(6, 5).init(device),
    }
}

/// The `why` of a refusal that names burn's LoRA and the weight that carries it.
fn refusal(e: FileError) -> (String, String) {
    match e {
        FileError::Config { value, why, .. } => (value, why),
        other => panic!("expected a refusal naming burn's LoRA, got {other}"),
    }
}

#[test]
fn attaching_a_file_to_a_model_with_burns_lora_is_refused_by_name() {
    let device = Device::flex();
    let ours = lora_core::attach(
        &net(&device),
        &conv_config(2, 4.0),
        &ConvFactory::new(ConvVariant::LoCon),
    )
    .expect("attach");
    let file = file_from_model(&ours, &PathMap::identity()).expect("save");

    let with_burns = net(&device).apply_lora(Lora::new(2, 4.0));
    let (value, why) = refusal(
        attach_file(&with_burns, &file, &PathMap::identity(), vec![])
            .expect_err("a model with burn's LoRA must be refused"),
    );
    assert!(why.contains("burn's own LoRA"), "{why}");
    assert!(why.contains("attaching"), "{why}");
    assert_eq!(value, "head.weight");
}

#[test]
fn saving_a_file_from_a_model_with_burns_lora_is_refused_by_name() {
    let device = Device::flex();
    let with_burns = net(&device).apply_lora(Lora::new(2, 4.0));
    let (value, why) = refusal(
        file_from_model(&with_burns, &PathMap::identity())
            .expect_err("a model with burn's LoRA must be refused"),
    );
    assert!(why.contains("burn's own LoRA"), "{why}");
    assert!(why.contains("saving"), "{why}");
    assert_eq!(value, "head.weight");
}
