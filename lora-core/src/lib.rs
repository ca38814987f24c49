//! # lora-core
//!
//! The adapter abstraction, linear LoRA, merge/unmerge and targeting by module path, on
//! burn 0.22's parameter reparameterization.
//!
//! LoRA (Hu et al. 2021, arXiv 2106.09685) freezes a weight `W` and learns a low-rank update:
//! `W' = W + (alpha/r)·ΔW`. Here every adapter type implements [`Adapter`], whose one real job is
//! [`Adapter::delta_weight`]; [`attach()`] puts adapters on the parameters a [`LoraConfig`]
//! selects, through burn's `Module::apply_reparameterization`, so records, optimizers,
//! autodiff and `materialize()` work unchanged and the model code does not change.
//! [`merge()`] and [`unmerge()`] fold the update into the base and take it out again.
//!
//! Linear LoRA comes in two forward modes with the same parameters: weight-space (attach to any
//! `Linear`) and bypass ([`LoraLinear`]). Convolutional adapters live in `lora-conv`.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::LinearConfig;
//! use burn::tensor::{Device, Tensor};
//! use lora_core::{attach, param_counts, LinearFactory, LoraConfig};
//!
//! let device = Device::flex();
//! let model = LinearConfig::new(64, 32).init(&device);
//! let adapted = attach(&model, &LoraConfig::new(4, 8.0), &LinearFactory).unwrap();
//!
//! // r·(d_in + d_out) = 4·(64 + 32) trainable scalars; the base (and its bias) is frozen.
//! let counts = param_counts(&adapted);
//! assert_eq!(counts.trainable, 384);
//! assert_eq!(counts.total, 64 * 32 + 32 + 384);
//!
//! // `up` starts at zero, so the adapted layer equals the base layer.
//! let x = Tensor::<2>::ones([2, 64], &device);
//! let diff = (adapted.forward(x.clone()) - model.forward(x)).abs().max().into_scalar::<f32>();
//! assert_eq!(diff, 0.0);
//! ```

#![forbid(unsafe_code)]

pub mod adapter;
pub mod attach;
pub mod config;
pub mod device;
pub mod erased;
pub mod error;
pub mod init;
pub mod io;
pub mod linear;
pub mod merge;
pub mod params;
pub mod position;
pub mod testing;

pub use adapter::{
    Adapter, AdapterSpec, FactorInit, LoraParam, Scaling, scale_bits, scale_from_bits,
};
pub use attach::{AdapterFactory, LinearFactory, ParamInfo, attach, scan};
pub use config::LoraConfig;
pub use device::DeviceSpec;
pub use error::{LoraError, Result};
pub use linear::{LinearAdapter, LoraLinear, LoraLinearConfig};
pub use merge::{AdaptedParam, adapted_params, has_adapters, merge, strip, unmerge};
pub use params::{ParamCounts, param_counts};
pub use position::Position;
