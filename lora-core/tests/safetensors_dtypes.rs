//! `read_safetensors` on files written by the `safetensors` crate itself: F32, F16 and BF16
//! tensors come back as the exact f32 values (checked against values written out by hand, not
//! against the reader's own conversion), with their shapes; an integer tensor is an error that
//! names the key and the dtype.

#![allow(clippy::unwrap_used, missing_docs)]

use burn::tensor::TensorData;
use lora_core::io::read_safetensors;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, serialize};

fn write(name: &str, tensors: Vec<(&str, TensorView<'_>)>) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lora-dtypes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, serialize(tensors, None).unwrap()).unwrap();
    path
}

fn values(data: &TensorData) -> Vec<f32> {
    data.try_to_vec::<f32>().unwrap()
}

#[test]
fn float_dtypes_read_exactly() {
    // (f16 bits, value): normal, negative, inexact third, smallest subnormal, largest finite,
    // infinities.
    let f16: [(u16, f32); 8] = [
        (0x3c00, 1.0),
        (0xc000, -2.0),
        (0x3555, 0.333_251_95),
        (0x0001, 5.960_464_5e-8),
        (0x0200, 3.051_757_8e-5),
        (0x7bff, 65504.0),
        (0x7c00, f32::INFINITY),
        (0xfc00, f32::NEG_INFINITY),
    ];
    // (bf16 bits, value): the top half of the f32 bits.
    let bf16: [(u16, f32); 4] = [
        (0x3f80, 1.0),
        (0xc040, -3.0),
        (0x3eab, 0.333_984_38),
        (0x7f7f, 3.389_531_4e38),
    ];
    let f32s = [1.5f32, -0.0, 1e-30, 123_456.79, 7.0, -8.25];
    let f16_bytes: Vec<u8> = f16.iter().flat_map(|(b, _)| b.to_le_bytes()).collect();
    let bf16_bytes: Vec<u8> = bf16.iter().flat_map(|(b, _)| b.to_le_bytes()).collect();
    let f32_bytes: Vec<u8> = f32s.iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = write(
        "floats.safetensors",
        vec![
            (
                "half",
                TensorView::new(Dtype::F16, vec![2, 4], &f16_bytes).unwrap(),
            ),
            (
                "brain",
                TensorView::new(Dtype::BF16, vec![4], &bf16_bytes).unwrap(),
            ),
            (
                "single",
                TensorView::new(Dtype::F32, vec![3, 1, 2], &f32_bytes).unwrap(),
            ),
        ],
    );
    let read = read_safetensors(&path).unwrap();
    assert_eq!(read.len(), 3);
    let half = &read["half"];
    assert_eq!(half.shape().to_vec(), vec![2, 4]);
    let want: Vec<f32> = f16.iter().map(|(_, v)| *v).collect();
    assert_eq!(values(half), want, "f16");
    let brain = &read["brain"];
    assert_eq!(brain.shape().to_vec(), vec![4]);
    let want: Vec<f32> = bf16.iter().map(|(_, v)| *v).collect();
    assert_eq!(values(brain), want, "bf16");
    let single = &read["single"];
    assert_eq!(single.shape().to_vec(), vec![3, 1, 2]);
    let got = values(single);
    // Bit-equal, so that -0.0 is checked too.
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&f32s), "f32");
}

#[test]
fn integer_tensors_are_refused_by_name() {
    let bytes: Vec<u8> = [1i32, 2, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let path = write(
        "ints.safetensors",
        vec![(
            "counts",
            TensorView::new(Dtype::I32, vec![3], &bytes).unwrap(),
        )],
    );
    let err = read_safetensors(&path).unwrap_err().to_string();
    assert!(err.contains("counts") && err.contains("I32"), "{err}");
    assert!(err.contains("ints.safetensors"), "{err}");
}
