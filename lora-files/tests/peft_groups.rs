//! LoRA on grouped convs in PEFT files (fixtures peft-grouped-conv2d and peft-grouped-dense,
//! made by scripts/fixtures/peft_grouped.py with the real PEFT 0.21.2): the export is the
//! directory PEFT loaded, our forward matches PEFT's recorded output, the file reads back as
//! the same rank-2 grouped LoCon, and a lora_A that mixes groups is refused.

mod common;

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};
use common::{assert_close, fixture, read, values};
use lora_files::format::{self, ReadOptions};
use lora_files::{AdapterFile, FileError, Format, StateDict, merge};

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("peft-groups-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The LoCon of the fixture's source file, resolved onto its base, with groups 2.
fn source() -> (AdapterFile, StateDict) {
    let dir = fixture("peft-grouped-conv2d");
    let options = ReadOptions::default();
    let mut adapter =
        format::read(&dir.join("source.safetensors"), &options).unwrap_or_else(|e| panic!("{e}"));
    let base = read(&dir.join("base.safetensors"));
    merge::resolve(&mut adapter, &base, &options.prefixes).unwrap_or_else(|e| panic!("{e}"));
    adapter.layers[0].groups = 2;
    (adapter, base)
}

/// The grouped conv's output on the fixture's input with weight `w` [6, 4, 3, 3].
fn forward(reference: &StateDict, w: Vec<f32>) -> Vec<f32> {
    let device = Device::flex();
    let (xs, x) = values(reference, "input");
    let (_, b) = values(reference, "base.bias");
    let x = Tensor::<4>::from_data(TensorData::new(x, [xs[0], xs[1], xs[2], xs[3]]), &device);
    let w = Tensor::<4>::from_data(TensorData::new(w, [6, 4, 3, 3]), &device);
    let bias = Tensor::<1>::from_data(TensorData::new(b, [6]), &device);
    let opts = ConvOptions::new([1, 1], [1, 1], [1, 1], 2);
    conv2d(x, w, Some(bias), opts)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default()
}

#[test]
fn grouped_export_is_the_file_peft_loaded_and_matches_its_output() {
    let (adapter, base) = source();
    let out = tmp("export");
    format::write(&adapter, Format::Peft, &out).unwrap_or_else(|e| panic!("{e}"));
    let peft = fixture("peft-grouped-conv2d").join("peft");
    let (ours, theirs) = (
        read(&out.join("adapter_model.safetensors")),
        read(&peft.join("adapter_model.safetensors")),
    );
    assert_eq!(ours.tensors, theirs.tensors, "the tensors PEFT loaded");
    let config = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(d.join("adapter_config.json")).unwrap_or_default(),
        )
        .unwrap_or_default()
    };
    let (c, _) = (config(&out), config(&peft));
    assert_eq!(
        (c["r"].as_u64(), c["lora_alpha"].as_f64()),
        (Some(4), Some(6.0))
    );
    assert_eq!(c, config(&peft), "the config PEFT loaded");
    // Our merged forward against PEFT's unmerged one, recorded by the script.
    let reference = read(&fixture("peft-grouped-conv2d").join("reference.safetensors"));
    let merged = merge::merge(&base, "base", &adapter, 1.0).unwrap_or_else(|e| panic!("{e}"));
    let (_, w) = values(&merged, "layer.weight");
    let (_, expected_w) = values(&reference, "merged.weight");
    assert_close("merged weight", &w, &expected_w, 1e-6);
    let (_, peft_out) = values(&reference, "output_adapted");
    assert_close("output vs PEFT", &forward(&reference, w), &peft_out, 1e-5);
}

#[test]
fn grouped_peft_file_reads_back_as_the_rank_2_grouped_locon() {
    let (source, base) = source();
    let options = ReadOptions::default();
    let mut back = format::read(&fixture("peft-grouped-conv2d").join("peft"), &options)
        .unwrap_or_else(|e| panic!("{e}"));
    merge::resolve(&mut back, &base, &options.prefixes).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (&source.layers[0], &back.layers[0]);
    assert_eq!((b.rank, b.groups, b.scale), (2, 2, 1.5));
    assert_eq!(a.factors, b.factors, "exact round trip");
    // And again through PEFT: the same files.
    let out = tmp("again");
    format::write(&back, Format::Peft, &out).unwrap_or_else(|e| panic!("{e}"));
    let again = format::read(&out, &options).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again.layers[0].factors, a.factors);
}

#[test]
fn peft_trained_grouped_lora_is_refused_by_file_and_key() {
    let dir = fixture("peft-grouped-dense");
    let err = format::read(&dir, &ReadOptions::default()).map(|_| ());
    let Err(e @ FileError::NotAWeightUpdate { .. }) = err else {
        panic!("expected NotAWeightUpdate, got {err:?}");
    };
    let text = e.to_string();
    for needle in [
        "peft-grouped-dense/adapter_model.safetensors",
        "base_model.model.layer.lora_A.weight",
        "groups = 2",
        "PEFT cannot merge",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}

/// A block-sparse lora_A whose two diagonal blocks differ is still a grouped weight update:
/// it reads as rank R = 4 and its update is the grouped one, entry by entry.
#[test]
fn block_sparse_with_different_blocks_reads_exactly_at_rank_r_times_g() {
    let peft = fixture("peft-grouped-conv2d").join("peft");
    let out = tmp("blocks");
    std::fs::create_dir_all(&out).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(
        peft.join("adapter_config.json"),
        out.join("adapter_config.json"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut dict = read(&peft.join("adapter_model.safetensors"));
    let key = "base_model.model.layer.lora_A.weight";
    let (shape, mut a) = values(&dict, key);
    // Rows 2..4 are group 1; channels 4..8 its block. Change one entry inside the block.
    a[(2 * 8 + 5) * 9 + 4] += 0.25;
    dict.tensors.insert(
        key.to_string(),
        lora_files::state_dict::Stored::from_f32(shape, &a),
    );
    dict.write(&out.join("adapter_model.safetensors"))
        .unwrap_or_else(|e| panic!("{e}"));
    let file = format::read(&out, &ReadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let layer = &file.layers[0];
    assert_eq!((layer.rank, layer.groups), (4, 2));
    let delta = layer.delta("t").unwrap_or_else(|e| panic!("{e}"));
    let got = delta
        .matrix
        .into_data()
        .try_to_vec::<f32>()
        .unwrap_or_default();
    let (_, bv) = values(&dict, "base_model.model.layer.lora_B.weight");
    let mut want = vec![0f32; 6 * 36];
    for o in 0..6 {
        let j = o / 3;
        for c in 0..4 {
            for k in 0..9 {
                want[o * 36 + c * 9 + k] = (0..2)
                    .map(|i| bv[o * 2 + i] * a[((j * 2 + i) * 8 + j * 4 + c) * 9 + k])
                    .sum();
            }
        }
    }
    assert_close("update", &got, &want, 1e-6);
}
