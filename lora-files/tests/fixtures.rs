//! Adapters written by the real PEFT 0.21.2 and LyCORIS 4.1.3 (tests/fixtures, see its README):
//! read from their files, merged into the base with no model, and checked against what those
//! libraries computed. Merged weights are held to 1e-5 and outputs to 1e-4, relative to the
//! reference's largest magnitude.

mod common;

use burn::tensor::module::{conv1d, conv2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_close, fixture, read, values};
use lora_files::format::{self, ReadOptions};
use lora_files::{Format, StateDict, merge};

/// Merge the per-layer fixture `name` into its base (module `layer`) and return the merged
/// weight.
fn merged_layer(name: &str) -> (serde_json::Value, StateDict, Vec<f32>) {
    let dir = fixture(name);
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap_or_default())
            .unwrap_or_default();
    let reference = read(&dir.join("reference.safetensors"));
    let mut base = StateDict::default();
    base.tensors.insert(
        "layer.weight".to_string(),
        reference.tensors["base.weight"].clone(),
    );
    let options = ReadOptions::default();
    let path = if dir.join("adapter.safetensors").is_file() {
        dir.join("adapter.safetensors")
    } else {
        dir.clone()
    };
    let mut adapter = format::read(&path, &options).unwrap_or_else(|e| panic!("{e}"));
    merge::resolve(&mut adapter, &base, &options.prefixes).unwrap_or_else(|e| panic!("{e}"));
    let merged = merge::merge(&base, "base", &adapter, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let (_, w) = values(&merged, "layer.weight");
    (case, reference, w)
}

/// The layer's output on the fixture's input with weight `w`.
fn output(case: &serde_json::Value, reference: &StateDict, w: &[f32]) -> Vec<f32> {
    let device = Device::flex();
    let layer = &case["layer"];
    let dims = |k: &str| -> Vec<usize> {
        layer[k]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_u64())
                    .map(|v| v as usize)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (xs, x) = values(reference, "input");
    let (ws, _) = values(reference, "base.weight");
    let (_, b) = values(reference, "base.bias");
    let bias = Tensor::<1>::from_data(TensorData::new(b.clone(), [b.len()]), &device);
    let groups = layer["groups"].as_u64().unwrap_or(1) as usize;
    let out = match layer["kind"].as_str() {
        Some("conv2d") => {
            let x =
                Tensor::<4>::from_data(TensorData::new(x, [xs[0], xs[1], xs[2], xs[3]]), &device);
            let w = Tensor::<4>::from_data(
                TensorData::new(w.to_vec(), [ws[0], ws[1], ws[2], ws[3]]),
                &device,
            );
            let (s, p, d) = (dims("stride"), dims("padding"), dims("dilation"));
            let opts = ConvOptions::new([s[0], s[1]], [p[0], p[1]], [d[0], d[1]], groups);
            conv2d(x, w, Some(bias), opts).into_data()
        }
        Some("conv1d") => {
            let x = Tensor::<3>::from_data(TensorData::new(x, [xs[0], xs[1], xs[2]]), &device);
            let w =
                Tensor::<3>::from_data(TensorData::new(w.to_vec(), [ws[0], ws[1], ws[2]]), &device);
            let (s, p, d) = (dims("stride"), dims("padding"), dims("dilation"));
            conv1d(
                x,
                w,
                Some(bias),
                ConvOptions::new([s[0]], [p[0]], [d[0]], groups),
            )
            .into_data()
        }
        Some("linear") => {
            let x = Tensor::<2>::from_data(TensorData::new(x, [xs[0], xs[1]]), &device);
            let w = Tensor::<2>::from_data(TensorData::new(w.to_vec(), [ws[0], ws[1]]), &device);
            (x.matmul(w.transpose()) + bias.reshape([1, b.len()])).into_data()
        }
        other => panic!("unknown layer kind {other:?}"),
    };
    out.try_to_vec::<f32>().unwrap_or_default()
}

fn check_layer(name: &str) {
    let (case, reference, w) = merged_layer(name);
    let (_, expected) = values(&reference, "merged.weight");
    assert_close(&format!("{name}: merged weight"), &w, &expected, 1e-5);
    let (_, adapted) = values(&reference, "output_adapted");
    assert_close(
        &format!("{name}: output"),
        &output(&case, &reference, &w),
        &adapted,
        1e-4,
    );
}

#[test]
fn peft_lora_linear_conv1d_rslora_and_conv2d() {
    check_layer("peft-linear");
    check_layer("peft-conv1d-rslora");
    check_layer("peft-conv2d");
}

#[test]
fn lycoris_locon_and_tucker() {
    check_layer("lycoris-conv2d-plain");
    check_layer("lycoris-conv2d-tucker");
}

/// LyCORIS 4.1.3's LoHa `get_merged_weight` applies the scale twice; the fixture's
/// `merged.weight` is what its forward computes, `W + scale·ΔW`, which is the right maths and
/// what this merge does.
#[test]
fn lycoris_loha() {
    check_layer("lycoris-loha-conv2d");
}

#[test]
fn lycoris_lokr_full_matrix() {
    check_layer("lycoris-lokr-conv2d");
}

#[test]
fn peft_dora() {
    check_layer("peft-dora-conv2d");
}

/// The recognised algorithm, rank and scale of each fixture.
#[test]
fn inspect_reads_algorithm_rank_and_scale() {
    let cases = [
        ("peft-linear", "locon", 4, 2.0, false),
        ("peft-conv1d-rslora", "locon", 2, 2.0 / 2f64.sqrt(), false),
        ("lycoris-conv2d-tucker", "tucker2", 4, 0.5, false),
        ("lycoris-loha-conv2d", "loha", 4, 0.5, false),
        ("lycoris-lokr-conv2d", "lokr", 1, 1.0, false),
        ("peft-dora-conv2d", "locon", 3, 2.0, true),
    ];
    for (name, algorithm, rank, scale, dora) in cases {
        let dir = fixture(name);
        let path = if dir.join("adapter.safetensors").is_file() {
            dir.join("adapter.safetensors")
        } else {
            dir
        };
        let a = format::read(&path, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.layers.len(), 1, "{name}");
        let l = &a.layers[0];
        assert_eq!(l.algorithm.name(), algorithm, "{name}");
        assert_eq!(l.rank, rank, "{name}");
        assert!(
            (l.scale - scale).abs() < 1e-12,
            "{name}: scale {} != {scale}",
            l.scale
        );
        assert_eq!(l.magnitude.is_some(), dora, "{name}");
    }
}

/// `adapter merge` on each model-level fixture: every entry of the merged state dict, BatchNorm
/// buffers and the integer `num_batches_tracked` included, as the library merged it.
#[test]
fn model_level_merge_reproduces_every_entry() {
    for (name, adapter_path, format) in [
        ("model-peft-lora", "", Format::Peft),
        (
            "model-lycoris-tucker",
            "adapter.safetensors",
            Format::Lycoris,
        ),
    ] {
        let dir = fixture(name);
        let base = read(&dir.join("base.safetensors"));
        let reference = read(&dir.join("reference.safetensors"));
        let options = ReadOptions::default();
        let mut adapter =
            format::read(&dir.join(adapter_path), &options).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(adapter.format, format);
        merge::resolve(&mut adapter, &base, &options.prefixes).unwrap_or_else(|e| panic!("{e}"));
        let merged = merge::merge(&base, "base", &adapter, 1.0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(merged.tensors.len(), base.tensors.len(), "{name}");
        let mut changed = 0;
        for (key, stored) in &merged.tensors {
            let expected = &reference.tensors[&format!("merged.{key}")];
            assert_eq!(stored.dtype, expected.dtype, "{name} {key}");
            assert_eq!(stored.shape, expected.shape, "{name} {key}");
            match (stored.to_f32(), expected.to_f32()) {
                (Some(a), Some(b)) => assert_close(&format!("{name} {key}"), &a, &b, 1e-5),
                _ => assert_eq!(stored.bytes, expected.bytes, "{name} {key}"),
            }
            if stored != &base.tensors[key] {
                changed += 1;
            }
        }
        assert_eq!(
            changed,
            adapter.layers.len(),
            "{name}: exactly the adapted weights change"
        );
    }
}

/// The grouped conv `block.3` of the LyCORIS model: its down factor is `[r, in/groups, 1, 1]`
/// and the update is a grouped kernel update of the weight's own shape.
#[test]
fn lycoris_grouped_conv_resolves_to_block_3() {
    let dir = fixture("model-lycoris-tucker");
    let base = read(&dir.join("base.safetensors"));
    let options = ReadOptions::default();
    let mut adapter =
        format::read(&dir.join("adapter.safetensors"), &options).unwrap_or_else(|e| panic!("{e}"));
    merge::resolve(&mut adapter, &base, &options.prefixes).unwrap_or_else(|e| panic!("{e}"));
    let modules: Vec<(&str, &str)> = adapter
        .layers
        .iter()
        .map(|l| (l.module.as_str(), l.algorithm.name()))
        .collect();
    assert_eq!(
        modules,
        [
            ("block.0", "tucker2"),
            ("block.3", "tucker2"),
            ("block.5", "locon"),
            ("head", "locon"),
            ("stem.0", "tucker2"),
        ]
    );
}
