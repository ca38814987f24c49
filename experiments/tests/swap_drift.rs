//! The f32 drift of hot-swapping adapters on a merged base, on the experiment CNN (widths
//! 32-32-64-64-128, about 140k parameters): 1,000 swaps between two LoCon rank-4 adapters on
//! every conv and the head, then the adapter is taken out and the base compared with the
//! pretrained one. The README states the bound this test holds; the exact-restore mode
//! (`AdapterSet`) has no drift at all.

use burn::tensor::Device;
use experiments::model::CnnConfig;
use lora_conv::{ConvFactory, ConvVariant, conv_config};
use lora_core::testing::randomize_adapters;
use lora_files::model::{PathMap, file_from_model};
use lora_files::set::swap_merged;

#[test]
fn merged_swaps_drift_by_rounding_only() {
    let device = Device::flex();
    device.seed(3);
    let base = CnnConfig::vgg([32, 32, 64, 64, 128], 10).init(&device);
    let factory = ConvFactory::new(ConvVariant::LoCon);
    let adapter = |seed: u64| {
        device.seed(seed);
        let adapted = lora_core::attach(&base, &conv_config(4, 8.0), &factory)
            .unwrap_or_else(|e| panic!("{e}"));
        file_from_model(&randomize_adapters(adapted, 0.05), &PathMap::identity())
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let files = [adapter(10), adapter(11)];
    let map = PathMap::identity();
    let start = lora_files::model::attach_file(&base, &files[0], &map, vec![])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut model = lora_core::merge(&start).unwrap_or_else(|e| panic!("{e}"));
    let swaps = 1000;
    for i in 1..=swaps {
        model = swap_merged(&model, &files[i % 2], &map, vec![]).unwrap_or_else(|e| panic!("{e}"));
    }
    let back = lora_core::strip(&model).unwrap_or_else(|e| panic!("{e}"));
    let weights = |m: &experiments::model::Cnn<burn::nn::conv::Conv2d>| -> Vec<f32> {
        let mut v: Vec<f32> = m
            .blocks
            .iter()
            .flat_map(|b| {
                b.conv
                    .weight
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .unwrap_or_default()
            })
            .collect();
        v.extend(
            m.head
                .weight
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap_or_default(),
        );
        v
    };
    let (w0, w1) = (weights(&base), weights(&back));
    let max = w0.iter().fold(0f32, |m, v| m.max(v.abs()));
    let drift = w0
        .iter()
        .zip(&w1)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "{swaps} merged swaps on {} weights: max drift {drift:e} = {:e} of max|W| {max:e}",
        w0.len(),
        drift / max
    );
    assert!(
        drift > 0.0,
        "f32 swaps round; a zero drift means nothing was swapped"
    );
    assert!(drift / max < 1e-5, "drift {:e} of max|W|", drift / max);
}
