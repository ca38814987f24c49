//! `Adapter::with_base`: `attach` hands a fresh adapter its pretrained weight (DoRA sets its
//! magnitude to `‖W‖` there), and leaves alone the adapters of a factory that says they are not
//! fresh (trained adapters read from a file), whose state must survive attaching.

#![allow(clippy::unwrap_used, missing_docs)]

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use lora_core::{Adapter, AdapterFactory, AdapterSpec, LoraConfig, LoraParam, Result, attach};

/// A rank-1 additive adapter that records the sum of the weight it was shown.
#[derive(Module, Debug)]
struct Probe {
    down: Param<Tensor<2>>,
    up: Param<Tensor<2>>,
    seen: Param<Tensor<1>>,
}

impl Adapter for Probe {
    fn rank(&self) -> usize {
        1
    }
    fn scale(&self) -> f64 {
        1.0
    }
    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        let delta = self.down.val().matmul(self.up.val());
        let shape = delta.shape();
        delta.reshape(shape)
    }
    fn trainable_params(&self) -> usize {
        self.down.lazy_shape().num_elements() + self.up.lazy_shape().num_elements()
    }
    fn with_base<const D: usize>(self, base: &Tensor<D>) -> Self {
        let total = base.clone().sum();
        Self {
            seen: self.seen.map(|_| total),
            ..self
        }
    }
}

struct Probes {
    fresh: bool,
    seen: f32,
}

impl AdapterFactory for Probes {
    type Adapter = Probe;
    fn build(&self, _: &str, shape: &[usize], _: &AdapterSpec, device: &Device) -> Result<Probe> {
        Ok(Probe {
            down: Param::from_tensor(Tensor::zeros([shape[0], 1], device)),
            up: Param::from_tensor(Tensor::zeros([1, shape[1]], device)),
            seen: Param::from_tensor(Tensor::from_data([self.seen], device)),
        })
    }
    fn fresh(&self) -> bool {
        self.fresh
    }
}

fn seen(model: &Linear) -> f32 {
    model
        .weight
        .reparameterization::<LoraParam<Probe>>()
        .unwrap()
        .adapter
        .seen
        .val()
        .into_scalar::<f32>()
}

#[test]
fn fresh_adapters_see_their_weight_and_loaded_ones_keep_their_state() {
    let device = Device::flex();
    let base = LinearConfig::new(5, 3).init(&device);
    let total = base.weight.val().sum().into_scalar::<f32>();
    let config = LoraConfig::new(1, 1.0);
    let fresh = attach(
        &base,
        &config,
        &Probes {
            fresh: true,
            seen: -7.0,
        },
    )
    .unwrap();
    assert_eq!(seen(&fresh), total, "a fresh adapter is shown its weight");
    let loaded = attach(
        &base,
        &config,
        &Probes {
            fresh: false,
            seen: -7.0,
        },
    )
    .unwrap();
    assert_eq!(seen(&loaded), -7.0, "a loaded adapter keeps its state");
}
