//! Layers that are already dimension-generic, pooling, and containers.

use burn::nn::pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
use burn::nn::{BatchNorm, Dropout, Gelu, Identity, LeakyRelu, Linear, Relu, Sigmoid, Tanh};

use crate::error::Result;
use crate::inflate::{Inflate, Inflation};
use crate::layers::PerSlice;

/// burn's `BatchNorm` normalises over every axis but the channels, for any rank, so the 2D layer
/// is its own 3D form: running mean and variance, gamma and beta are kept as they are. In
/// inference mode it is exact per slice; in training mode its batch statistics span the whole
/// volume.
impl Inflate for BatchNorm {
    type Output = BatchNorm;

    fn inflate(self, cx: &mut Inflation) -> Result<BatchNorm> {
        Ok(BatchNorm {
            gamma: cx.carry(self.gamma)?,
            beta: cx.carry(self.beta)?,
            ..self
        })
    }
}

/// `Linear` acts on the last axis of any rank, so it is kept: on `[B, D, F]` it is per slice.
/// Its adapter, if any, is kept.
impl Inflate for Linear {
    type Output = Linear;

    fn inflate(self, cx: &mut Inflation) -> Result<Linear> {
        Ok(Linear {
            weight: cx.carry(self.weight)?,
            bias: self.bias.map(|b| cx.carry(b)).transpose()?,
        })
    }
}

macro_rules! unchanged {
    ($($t:ty),*) => {$(
        /// Element-wise, so the same layer works on volumes.
        impl Inflate for $t {
            type Output = $t;

            fn inflate(self, _cx: &mut Inflation) -> Result<$t> {
                Ok(self)
            }
        }
    )*};
}
unchanged!(Relu, Gelu, Sigmoid, Tanh, LeakyRelu, Dropout, Identity);

macro_rules! per_slice {
    ($($t:ty),*) => {$(
        /// Pooling with depth kernel and stride 1: the 2D pool on every depth slice.
        impl Inflate for $t {
            type Output = PerSlice<$t>;

            fn inflate(self, _cx: &mut Inflation) -> Result<PerSlice<$t>> {
                Ok(PerSlice::new(self))
            }
        }
    )*};
}
per_slice!(MaxPool2d, AvgPool2d, AdaptiveAvgPool2d);

impl<T: Inflate> Inflate for Vec<T> {
    type Output = Vec<T::Output>;

    fn inflate(self, cx: &mut Inflation) -> Result<Self::Output> {
        self.into_iter().map(|layer| layer.inflate(cx)).collect()
    }
}

impl<T: Inflate> Inflate for Option<T> {
    type Output = Option<T::Output>;

    fn inflate(self, cx: &mut Inflation) -> Result<Self::Output> {
        self.map(|layer| layer.inflate(cx)).transpose()
    }
}
