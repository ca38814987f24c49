//! Bad weight files get an error that names the file and the values, and nothing is built.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use lora_backbones::{BackboneError, ResNet29, TfjsWeights};

/// A scratch folder with a manifest and one `.bin`.
fn folder(name: &str, manifest: &str, bin: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lora-backbones-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("m.json"), manifest).unwrap();
    std::fs::write(dir.join("w.bin"), bin).unwrap();
    dir
}

const TWO: &str = r#"[{"paths": ["w.bin"], "weights": [
    {"name": "a", "shape": [2, 2], "dtype": "float32"},
    {"name": "b", "shape": [3], "dtype": "float32",
     "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}}]}]"#;

fn good_bin() -> Vec<u8> {
    let mut bin: Vec<u8> = [1.0f32, -2.0, 3.5, 0.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    bin.extend([0u8, 2, 255]);
    bin
}

#[test]
fn reads_float_and_quantized_weights() {
    let dir = folder("good", TWO, &good_bin());
    let w = TfjsWeights::read(&dir.join("m.json")).unwrap();
    assert_eq!(
        w.get("a", &[2, 2]).unwrap().values,
        vec![1.0, -2.0, 3.5, 0.25]
    );
    // min + scale * q: -1, 0, 126.5
    assert_eq!(w.get("b", &[3]).unwrap().values, vec![-1.0, 0.0, 126.5]);
}

#[test]
fn truncated_bin_names_the_file_and_the_sizes() {
    let mut bin = good_bin();
    bin.pop();
    let dir = folder("short", TWO, &bin);
    let err = TfjsWeights::read(&dir.join("m.json")).unwrap_err();
    assert!(
        matches!(
            err,
            BackboneError::Size {
                expected: 19,
                actual: 18,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("w.bin") && msg.contains("18") && msg.contains("19"),
        "{msg}"
    );
}

#[test]
fn manifest_shapes_that_do_not_add_up_are_refused() {
    let wrong = TWO.replace("[2, 2]", "[2, 3]");
    let dir = folder("shape", &wrong, &good_bin());
    let err = TfjsWeights::read(&dir.join("m.json")).unwrap_err();
    assert!(
        matches!(
            err,
            BackboneError::Size {
                expected: 27,
                actual: 19,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unreadable_manifests_and_dtypes_are_named() {
    let dir = folder("json", "{not json", &[]);
    let err = TfjsWeights::read(&dir.join("m.json")).unwrap_err();
    assert!(matches!(err, BackboneError::Manifest { .. }), "{err}");
    assert!(err.to_string().contains("m.json"), "{err}");

    let f16 = TWO.replace("\"uint8\"", "\"float16\"");
    let dir = folder("f16", &f16, &good_bin());
    let err = TfjsWeights::read(&dir.join("m.json")).unwrap_err();
    assert!(
        err.to_string().contains("float16") && err.to_string().contains("weight b"),
        "{err}"
    );

    let missing = Path::new("/nonexistent/m.json");
    let err = TfjsWeights::read(missing).unwrap_err();
    assert!(
        matches!(err, BackboneError::Io { .. }) && err.to_string().contains("/nonexistent/m.json")
    );
}

/// What `ResNet29::from_faceapi` says of a folder holding `manifest` under face-api's manifest
/// name, with the good `.bin`.
fn faceapi_error(name: &str, manifest: &str) -> String {
    let dir = folder(name, manifest, &good_bin());
    std::fs::rename(
        dir.join("m.json"),
        dir.join(lora_backbones::resnet29::faceapi::MANIFEST),
    )
    .unwrap();
    ResNet29::<Conv2d>::from_faceapi(&dir, &Device::flex())
        .unwrap_err()
        .to_string()
}

/// A manifest whose bytes add up but that is not face-api's network: the first weight the
/// network needs is named, with the shape it has and the one expected.
#[test]
fn a_manifest_of_another_network_names_the_weight() {
    let msg = faceapi_error("other", TWO);
    assert!(
        msg.contains("conv32_down/conv/filters") && msg.contains("missing"),
        "{msg}"
    );
    let msg = faceapi_error(
        "shape2",
        &TWO.replace("\"a\"", "\"conv32_down/conv/filters\""),
    );
    assert!(
        msg.contains("[2, 2]") && msg.contains("[7, 7, 3, 32]"),
        "{msg}"
    );
}
