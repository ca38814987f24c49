//! # experiments
//!
//! Data loaders, models, training loops, the experiment harness, reports and the experiment
//! binaries of the workspace. Every study runs on [`harness`]: `compare` (which conv LoRA
//! decomposition and rank, Fashion-MNIST -> MNIST) and `inflate3d` (2D -> 3D inflation plus
//! conv LoRA on brain MRI patches), each one folder implementing [`harness::Experiment`].
//!
//! ```
//! use experiments::cli::parse_device;
//! use experiments::train::balanced_accuracy;
//! assert_eq!(parse_device("cpu").unwrap().to_string(), "cpu");
//! assert!(parse_device("tpu").is_err());
//! // Two classes, one always right, one always wrong: balanced accuracy 0.5.
//! assert_eq!(balanced_accuracy(&[0, 0, 0, 0], &[0, 0, 0, 1]), 0.5);
//! ```

// Unsafe code is denied everywhere but in `alloc`, which makes one libc call.
#![deny(unsafe_code)]

pub mod alloc;
pub mod cli;
pub mod compare;
pub mod data;
pub mod elpv;
pub mod error;
pub mod harness;
pub mod inflate3d;
pub mod methods;
pub mod model;
pub mod norm;
pub mod pretrain;
pub mod report;
pub mod studies;
pub mod train;

pub use harness::stats;

/// Run records and `runs.jsonl`, under their first path (they live in [`harness`]).
pub mod record {
    pub use crate::harness::record::*;
    pub use crate::harness::runlog::*;
}
