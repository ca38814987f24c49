//! # lora-3d
//!
//! Turn a pretrained 2D conv net into a 3D one that gives exactly the 2D net's output on every
//! depth slice, then fine-tune it on volumes with conv LoRA.
//!
//! A 2D kernel `[t, s/g, kh, kw]` is placed in the centre depth slice of a 3D kernel
//! `[t, s/g, kd, kh, kw]` (zeros elsewhere); with depth stride 1 and depth padding `(kd-1)/2`,
//! output slice `d` of the 3D conv only sees input slice `d`, through the 2D kernel. BatchNorm is
//! dimension-generic in burn and is kept, pooling and other per-image layers run on each slice
//! ([`PerSlice`]), linear layers act on the last axis and are kept. So the whole network is
//! exact per slice (BatchNorm in inference mode). The I3D "mean" mode is also offered; it is
//! exact only for volumes that are constant along depth.
//!
//! Trained 2D adapters are inflated with their weights ([`AdapterPolicy::Inflate`]), folded in
//! first ([`AdapterPolicy::Merge`]) or dropped ([`AdapterPolicy::Discard`]); fresh 3D adapters
//! attach to the inflated convs like to any Conv3d.
//!
//! ```
//! use burn::nn::conv::Conv2dConfig;
//! use burn::nn::PaddingConfig2d;
//! use burn::tensor::{Device, Tensor};
//! use lora_3d::{inflate, InflateOptions};
//!
//! let device = Device::flex();
//! let conv = Conv2dConfig::new([1, 1], [3, 3])
//!     .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
//!     .with_bias(false)
//!     .init(&device);
//! let conv = burn::nn::conv::Conv2d {
//!     weight: conv.weight.map(|w| w.ones_like()), // a 3x3 box filter
//!     ..conv
//! };
//! let conv3d = inflate(conv, &InflateOptions::new(3)).unwrap();
//! assert_eq!(conv3d.weight.dims(), [1, 1, 3, 3, 3]);
//!
//! // A 3x3x3 volume of ones, except the last depth slice, which is all twos.
//! let x = Tensor::<5>::ones([1, 1, 3, 3, 3], &device);
//! let x = x.clone().slice_assign([0..1, 0..1, 2..3, 0..3, 0..3], Tensor::ones([1, 1, 1, 3, 3], &device).mul_scalar(2.0));
//! let y = conv3d.forward(x);
//! // Centre pixel of each slice: the 3x3 box sum of that slice alone: 9, 9, 18.
//! let centre: Vec<f32> = y.slice([0..1, 0..1, 0..3, 1..2, 1..2]).into_data().try_to_vec().unwrap();
//! assert_eq!(centre, vec![9.0, 9.0, 18.0]);
//! ```

#![forbid(unsafe_code)]

pub mod adapter;
pub mod error;
pub mod functional;
pub mod inflate;
pub mod layers;
pub mod options;

pub use adapter::inflate_adapter;
pub use error::{InflateError, Result};
pub use functional::{centre_padding, inflate_kernel};
pub use inflate::{Inflate, Inflation, inflate};
pub use layers::{PerSlice, SliceLayer};
pub use options::{AdapterPolicy, InflateMode, InflateOptions, MAX_DEPTH};
