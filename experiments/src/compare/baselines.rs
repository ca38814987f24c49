//! The methods `compare` measures adapters against: `scratch` (the same CNN from a fresh init,
//! everything trained), `full` (the pretrained CNN with a new head, everything trained) and
//! `head` (the pretrained CNN frozen, only a new head trained).

use burn::nn::Linear;
use burn::nn::conv::Conv2d;
use burn::tensor::Device;

use crate::methods::{freeze, materialize};
use crate::model::{Cnn, CnnConfig};

/// `scratch`: a fresh body of the same shape (initialised after the head, from the seeded
/// device) under the seed's head.
pub fn scratch(cnn: &CnnConfig, head: Linear, device: &Device) -> Cnn<Conv2d> {
    let body = cnn.init(device);
    materialize(&body);
    Cnn { head, ..body }
}

/// `full`: the pretrained body under the seed's head, everything trainable.
pub fn full(base: &Cnn<Conv2d>, head: Linear) -> Cnn<Conv2d> {
    Cnn {
        head,
        ..base.clone()
    }
}

/// `head`: the pretrained body frozen (batch norm still re-estimates its running statistics),
/// the seed's head trainable.
pub fn head_only(base: &Cnn<Conv2d>, head: Linear) -> Cnn<Conv2d> {
    Cnn {
        head,
        ..freeze(base.clone())
    }
}
