//! # lora-backbones
//!
//! Pretrained conv networks to fine-tune with conv LoRA, read from files a package registry
//! ships, with no network access at run time.
//!
//! - [`ResNet29`]: dlib's ResNet-29 face-descriptor network, read from the TensorFlow.js weights
//!   of npm's `@vladmandic/face-api` 1.7.15 (`model/face_recognition_model*`), matching
//!   face-api's own forward pass (tested against descriptors face-api computed). Put your own
//!   head on [`ResNet29::features`].
//! - [`tfjs`]: the TensorFlow.js weights-manifest reader it uses (float32 and uint8/uint16
//!   quantized weights), usable for other TensorFlow.js models.
//!
//! ```no_run
//! use burn::nn::conv::Conv2d;
//! use burn::tensor::{Device, Tensor};
//! use lora_backbones::ResNet29;
//!
//! # fn main() -> lora_backbones::Result<()> {
//! let device = Device::flex();
//! let net = ResNet29::<Conv2d>::from_faceapi("data/face-api".as_ref(), &device)?;
//! let pixels = Tensor::<4>::full([1, 3, 150, 150], 128.0, &device); // RGB in 0..255
//! let features = net.features(pixels); // [1, 256]
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod error;
pub mod resnet29;
pub mod tfjs;

pub use error::{BackboneError, Result};
pub use resnet29::{Affine, Classifier, Conv2dLike, ConvUnit, ResNet29, Residual};
pub use tfjs::{TfjsTensor, TfjsWeights};
