//! The ResNet-29 port against face-api's own forward pass.
//!
//! `fixtures/faceapi-descriptors.json` holds the descriptors face-api 1.7.15 computed on the
//! TensorFlow.js 4.22 CPU backend for four 150x150 images made from an integer formula
//! (`scripts/faceapi-reference/` made it; CI needs no Node). The port must match every
//! descriptor within 1e-4 (max abs); a float32 port lands near 1e-6.
//!
//! The weights are the fetched ones (`./scripts/fetch-data.sh` puts them in `data/face-api/`, or
//! `$LORA_DATA/face-api/`). When they are missing the test fails, naming the command to run: it
//! does not skip.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use burn::nn::conv::Conv2d;
use burn::tensor::{Device, Tensor, TensorData};
use lora_backbones::ResNet29;
use serde_json::Value;

/// Max abs difference allowed on a descriptor value.
const TOLERANCE: f32 = 1e-4;

fn model_dir() -> PathBuf {
    let data = std::env::var_os("LORA_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data"));
    data.join("face-api")
}

fn fixture() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/faceapi-descriptors.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn as_usize(v: &Value) -> usize {
    v.as_u64()
        .map(|n| n as usize)
        .unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The fixture's images, `[N, 3, 150, 150]`, rebuilt from its formula:
/// `(a·y + b·x + c·ch + d·((x·y) mod 7)) mod 256`.
fn images(fixture: &Value, device: &Device) -> Tensor<4> {
    let constants = fixture["input"]["constants"].as_array().expect("constants");
    let n = constants.len();
    let size = 150;
    let mut pixels = Vec::with_capacity(n * 3 * size * size);
    for k in constants {
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|name| as_usize(&k[name]));
        for ch in 0..3 {
            for y in 0..size {
                for x in 0..size {
                    pixels.push(((a * y + b * x + c * ch + d * ((x * y) % 7)) % 256) as f32);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(pixels, [n, 3, size, size]), device)
}

fn load(device: &Device) -> ResNet29<Conv2d> {
    let dir = model_dir();
    ResNet29::from_faceapi(&dir, device).unwrap_or_else(|e| {
        panic!(
            "the face-api weights are needed in {} (run ./scripts/fetch-data.sh): {e}",
            dir.display()
        )
    })
}

#[test]
fn descriptors_match_faceapi() {
    let device = Device::flex();
    let fixture = fixture();
    let net = load(&device);
    let got = net.forward(images(&fixture, &device)).into_data();
    let got = got.as_slice::<f32>().expect("f32 descriptors");
    let expected = fixture["descriptors"].as_array().expect("descriptors");
    assert_eq!(got.len(), expected.len() * 128);
    let mut worst = 0f32;
    for (i, d) in expected.iter().enumerate() {
        let values = d["values"].as_array().expect("values");
        assert_eq!(values.len(), 128);
        for (j, v) in values.iter().enumerate() {
            let want = v.as_f64().expect("a number") as f32;
            worst = worst.max((got[i * 128 + j] - want).abs());
        }
    }
    eprintln!(
        "max abs difference to face-api over {} descriptors: {worst:.3e}",
        expected.len()
    );
    assert!(
        worst <= TOLERANCE,
        "descriptors differ from face-api's by {worst:.3e} (max abs), over the {TOLERANCE:.0e} bound"
    );
}

/// The stem (conv, bias, affine, ReLU) checkpoint of image 0: its sum and first values (NHWC
/// order), so a wrong stem is told apart from a wrong block.
#[test]
fn stem_matches_faceapi() {
    let device = Device::flex();
    let fixture = fixture();
    let net = load(&device);
    let x = images(&fixture, &device).narrow(0, 0, 1);
    let stem = net
        .act
        .forward(net.stem.forward(lora_backbones::resnet29::normalize(x)));
    let item = &fixture["checkpoints_image0"]["items"][0];
    assert_eq!(item["name"], "conv32_down");
    let nhwc = stem.permute([0, 2, 3, 1]).into_data();
    let values = nhwc.as_slice::<f32>().expect("f32");
    let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
    let want_sum = item["sum"].as_f64().expect("sum");
    assert!(
        (sum - want_sum).abs() <= 1e-5 * want_sum.abs(),
        "stem sum {sum} against face-api's {want_sum}"
    );
    for (got, want) in values
        .iter()
        .zip(item["first8"].as_array().expect("first8"))
    {
        let want = want.as_f64().expect("a number") as f32;
        assert!(
            (got - want).abs() <= 1e-5,
            "stem value {got} against {want}"
        );
    }
}
