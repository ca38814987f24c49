//! # experiments
//!
//! Data loaders, models, training loops, reports and the experiment binaries of the workspace:
//! `compare` (which conv LoRA decomposition and rank, Fashion-MNIST -> MNIST) and `inflate3d`
//! (2D -> 3D inflation plus conv LoRA on brain MRI patches).
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
pub mod error;
pub mod inflate3d;
pub mod methods;
pub mod model;
pub mod norm;
pub mod record;
pub mod report;
pub mod stats;
pub mod train;
