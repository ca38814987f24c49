//! Factor initialization shared by every adapter type.

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};

use crate::adapter::{AdapterSpec, FactorInit};

/// A trainable input-side factor of the given shape.
///
/// `fan_in` is the number of inputs each output of the factor sees (`d_in` for a linear down
/// projection, `s/groups · Π k` for a convolutional one): Kaiming-uniform draws from
/// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`, Gaussian from `N(0, (1/r)^2)`.
pub fn input_factor<const D: usize>(
    shape: [usize; D],
    fan_in: usize,
    spec: &AdapterSpec,
    device: &Device,
) -> Param<Tensor<D>> {
    let distribution = match spec.init {
        FactorInit::KaimingUniform => {
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            Distribution::Uniform(-bound, bound)
        }
        FactorInit::Gaussian => Distribution::Normal(0.0, 1.0 / spec.rank as f64),
    };
    Param::from_tensor(Tensor::random(shape, distribution, device))
}

/// A trainable factor drawn from `U(-bound, bound)`.
pub fn uniform_factor<const D: usize>(
    shape: [usize; D],
    bound: f64,
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Uniform(-bound, bound),
        device,
    ))
}

/// A trainable factor drawn from `N(0, std²)` (LyCORIS's LoHa factors).
pub fn normal_factor<const D: usize>(
    shape: [usize; D],
    std: f64,
    device: &Device,
) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::random(
        shape,
        Distribution::Normal(0.0, std),
        device,
    ))
}

/// A trainable all-zero factor: the output side of every adapter, so that the adapted model
/// equals the base model when the adapter is attached.
pub fn zero_factor<const D: usize>(shape: [usize; D], device: &Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::zeros(shape, device))
}
