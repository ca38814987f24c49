//! LoHa and LoKr written by the real LyCORIS 4.1.3 and DoRA written by PEFT 0.21.2 (also as a
//! LyCORIS `dora_scale` file, converted by lora-files), loaded as
//! trainable burn modules (`LoHaAdapter`, `LoKrAdapter`, `DoraAdapter`) onto a burn Conv2d: the adapted layer's output reproduces
//! LyCORIS's to 1e-4, `lora_core::merge` reproduces its merged weight to 1e-5 (relative to the
//! reference's largest magnitude), and unmerge gives the base back.
//!
//! LyCORIS 4.1.3's `get_merged_weight` for LoHa applies the scale twice; the fixture's
//! `merged.weight` follows what its forward computes (the scale once), which is the maths, and
//! is what the module reproduces here.

mod common;

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_close, fixture, read, values};
use lora_files::StateDict;
use lora_files::format::{self, ReadOptions};
use lora_files::model::{PathMap, attach_file};

#[derive(Module, Debug)]
struct Net {
    layer: Conv2d,
}

fn check(name: &str, algorithm: &str) {
    let dir = fixture(name);
    let path = if dir.join("adapter.safetensors").is_file() {
        dir.join("adapter.safetensors")
    } else {
        dir.clone()
    };
    check_file(name, &path, algorithm);
}

/// The fixture `name`'s reference (base, input, outputs, merged weight) against the adapter
/// file at `path`.
fn check_file(name: &str, path: &std::path::Path, algorithm: &str) {
    let device = Device::flex();
    let dir = fixture(name);
    let reference = read(&dir.join("reference.safetensors"));
    let (ws, w) = values(&reference, "base.weight");
    let (_, b) = values(&reference, "base.bias");
    let conv = Conv2dConfig::new([ws[1], ws[0]], [ws[2], ws[3]])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&device);
    let base = Net {
        layer: Conv2d {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(w.clone(), ws.clone()),
                &device,
            )),
            bias: Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(b.clone(), [b.len()]),
                &device,
            ))),
            ..conv
        },
    };
    let options = ReadOptions::default();
    let mut file = format::read(path, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut state = StateDict::default();
    state.tensors.insert(
        "layer.weight".to_string(),
        reference.tensors["base.weight"].clone(),
    );
    lora_files::merge::resolve(&mut file, &state, &options.prefixes)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(file.layers[0].algorithm.name(), algorithm);
    let adapted = attach_file(&base, &file, &PathMap::identity(), Vec::new())
        .unwrap_or_else(|e| panic!("{name}: {e}"));

    let (xs, x) = values(&reference, "input");
    let x = Tensor::<4>::from_data(TensorData::new(x, xs), &device);
    let out = |m: &Net| {
        m.layer
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap_or_default()
    };
    let (_, expected) = values(&reference, "output_adapted");
    assert_close(
        &format!("{name}: adapted output"),
        &out(&adapted),
        &expected,
        1e-4,
    );

    let merged = lora_core::merge(&adapted).unwrap_or_else(|e| panic!("{name}: {e}"));
    let (_, expected) = values(&reference, "merged.weight");
    let got = merged
        .layer
        .weight
        .val()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    assert_close(&format!("{name}: merged weight"), &got, &expected, 1e-5);

    // Unmerge: W back to 8 f32 ulps of max(|W|, |W + scale·ΔW|) (the merged base holds the
    // latter), the bound lora_core::merge documents.
    let v_max = merged.layer.weight.base().abs().max().into_scalar::<f32>();
    let back = lora_core::unmerge(&merged).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = back
        .layer
        .weight
        .base()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    let w_max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = got
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    let bound = 8.0 * f32::EPSILON * w_max.max(v_max);
    assert!(
        worst <= bound,
        "{name}: unmerged base off by {worst:e} > {bound:e}"
    );
}

#[test]
fn lycoris_loha_as_a_trainable_module() {
    check("lycoris-loha-conv2d", "loha");
}

#[test]
fn lycoris_lokr_full_w2_as_a_trainable_module() {
    check("lycoris-lokr-conv2d", "lokr");
}

/// PEFT's DoRA (`lora_magnitude_vector [1, out, 1, 1]`) as a `DoraAdapter`: the output, the
/// merged weight `m ⊙ V / ‖V‖`, and the base back after unmerge.
#[test]
fn peft_dora_as_a_trainable_module() {
    check("peft-dora-conv2d", "locon");
}

/// LyCORIS's DoRA layout (`dora_scale [out, 1, 1, 1]`, `wd_on_out`) onto a model: PEFT's DoRA
/// fixture written as a LyCORIS file (lora-files' writer turns `lora_magnitude_vector` into
/// `dora_scale`) and read back. LyCORIS adds f32's epsilon to the norm where PEFT adds none, a
/// relative change of about 1e-7 on these norms, so PEFT's reference outputs and merged weight
/// hold to the same tolerances.
#[test]
fn lycoris_dora_wd_on_out_as_a_trainable_module() {
    use lora_files::{Format, MagnitudeLayout};
    let name = "peft-dora-conv2d";
    let peft = format::read(&fixture(name), &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = std::env::temp_dir().join(format!("lora-files-dora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join("dora-lycoris.safetensors");
    format::write(&peft, Format::Lycoris, &path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let lycoris = format::read(&path, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let magnitude = lycoris.layers[0].magnitude.as_ref().expect("a dora_scale");
    assert_eq!(magnitude.layout, MagnitudeLayout::LycorisOut);
    let out = magnitude.values.len();
    assert_eq!(
        magnitude.shape,
        vec![out, 1, 1, 1],
        "dora_scale as LyCORIS stores it"
    );
    check_file(name, &path, "locon");
    let _ = std::fs::remove_dir_all(&dir);
}
