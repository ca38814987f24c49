//! # custom-adapter
//!
//! An adapter type defined outside the library crates, [`SeparableAdapter`] (one file,
//! `separable.rs`), registered with one line:
//!
//! ```
//! use custom_adapter::SeparableAdapter;
//! use lora_conv::ConvVariant;
//!
//! lora_conv::register(ConvVariant::of::<SeparableAdapter>()).unwrap();
//! let variant: ConvVariant = "separable".parse().unwrap();
//! // r·(c + t) + K on a 64 -> 64 3x3 conv at rank 8.
//! assert_eq!(variant.param_count(&[64, 64, 3, 3], 8), 8 * 128 + 9);
//! ```
//!
//! From then on attach, training, merge/unmerge, the bypass form, native files and 3D inflation
//! work on it, LyCORIS files hold it as full diffs ([`full_diff`]: its merged update, the
//! factors lost) and PEFT refuses it by name and reason; [`walkthrough::run`] checks each.

#![forbid(unsafe_code)]

pub mod full_diff;
pub mod net;
mod separable;
pub mod walkthrough;

pub use net::Net;
pub use separable::SeparableAdapter;
