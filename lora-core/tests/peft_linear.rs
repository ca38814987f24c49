//! Reproduce a linear adapter written by the real PEFT 0.21.2 (tests/fixtures/peft-linear):
//! PyTorch's `[out, in]` layouts transposed into burn's `[in, out]`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;

use burn::module::Param;
use burn::nn::{DropoutConfig, Linear};
use burn::tensor::Device;
use lora_core::io::{read_safetensors, take_tensor};
use lora_core::testing::{Tol, assert_close};
use lora_core::{
    Adapter, AdapterFactory, AdapterSpec, LinearAdapter, LoraConfig, LoraLinear, Result, attach,
};

struct Imported(LinearAdapter);

impl AdapterFactory for Imported {
    type Adapter = LinearAdapter;
    fn build(&self, _: &str, _: &[usize], _: &AdapterSpec, _: &Device) -> Result<LinearAdapter> {
        Ok(self.0.clone())
    }
}

#[test]
fn peft_linear_fixture() {
    let device = Device::flex();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft-linear");
    let mut r = read_safetensors(dir.join("reference.safetensors")).unwrap();
    let mut a = read_safetensors(dir.join("adapter_model.safetensors")).unwrap();
    let get2 = |m: &mut _, k: &str| take_tensor::<2>(m, k, "peft-linear", &device).unwrap();

    // PyTorch [out, in] -> burn [in, out].
    let weight = get2(&mut r, "base.weight").transpose();
    let bias = take_tensor::<1>(&mut r, "base.bias", "peft-linear", &device).unwrap();
    let base = Linear {
        weight: Param::from_tensor(weight.clone()),
        bias: Some(Param::from_tensor(bias)),
    };
    let input = get2(&mut r, "input");
    // lora_alpha 8, r 4.
    let adapter = LinearAdapter::from_peft(
        "layer",
        get2(&mut a, "base_model.model.layer.lora_A.weight"),
        get2(&mut a, "base_model.model.layer.lora_B.weight"),
        8.0 / 4.0,
    )
    .unwrap();

    let merged = weight + adapter.delta_weight::<2>();
    assert_close(
        merged.transpose(),
        get2(&mut r, "merged.weight"),
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        "merged.weight",
    );

    let expected = get2(&mut r, "output_adapted");
    let ws = attach(&base, &LoraConfig::new(4, 8.0), &Imported(adapter.clone())).unwrap();
    assert_close(
        ws.forward(input.clone()),
        expected.clone(),
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        "weight-space",
    );
    let bypass = LoraLinear {
        base,
        adapter,
        dropout: DropoutConfig::new(0.0).init(),
    };
    assert_close(
        bypass.forward(input.clone()),
        expected.clone(),
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        "bypass",
    );
    assert_close(
        bypass.merge().forward(input),
        expected,
        Tol {
            rel: 1e-5,
            abs: 1e-6,
        },
        "bypass merge",
    );
}
