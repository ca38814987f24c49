//! # lora-files
//!
//! Adapter files without a model: PEFT adapter directories, LyCORIS/kohya `.safetensors`, and
//! this workspace's native format; recognised from their keys, inspected, merged into a
//! PyTorch-layout state dict, and converted between formats.
//!
//! - [`algorithm`]: LoCon (LoRA), Tucker-2, LoHa, LoHa-Tucker, LoKr and CP, one file each,
//!   named as `lora_conv` names the types, behind one trait;
//!   a downstream crate adds its own with one [`Registry::with`] line.
//! - [`format`](mod@format): the readers and writers, and format detection.
//! - [`model`]: a file's adapters onto a burn model ([`model::attach_file`]) and a model's
//!   adapters back into a file ([`model::file_from_model`]).
//! - [`set`]: several named adapters over one base: activate, disable, delete, combine,
//!   and hot swap on a merged base.
//! - [`merge::merge`]: `W' = W + multiplier·scale·ΔW`, or DoRA's normalised form, in the base's
//!   dtype, plus `modules_to_save`.
//!
//! The maths of each update is `lora_conv::functional::<type>`'s, the same functions the
//! adapters train with. Writes are atomic; every failure is a [`FileError`] naming the file, key and
//! values, and leaves the files on disk as they were.
//!
//! ```no_run
//! use std::path::Path;
//! use lora_files::{StateDict, format::{self, ReadOptions}, merge};
//!
//! let options = ReadOptions::default();
//! let mut adapter = format::read(Path::new("adapter_dir"), &options)?;
//! let base = StateDict::read(Path::new("base.safetensors"))?;
//! merge::resolve(&mut adapter, &base, &options.prefixes)?;
//! let merged = merge::merge(&base, "base.safetensors", &adapter, 1.0)?;
//! merged.write(Path::new("merged.safetensors"))?;
//! # Ok::<(), lora_files::FileError>(())
//! ```

#![forbid(unsafe_code)]

pub mod adapter;
pub mod algorithm;
pub mod atomic;
pub mod error;
pub mod format;
pub mod merge;
pub mod model;
pub mod set;
pub mod state_dict;

pub use adapter::{AdapterFile, Format, LayerAdapter, Magnitude, MagnitudeLayout};
pub use algorithm::{Algorithm, Registry};
pub use error::{FileError, Result};
pub use state_dict::{StateDict, Stored};
