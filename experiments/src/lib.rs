//! # experiments
//!
//! Data loaders, models, training loops and the experiment binaries of the workspace.
//!
//! ```
//! use experiments::cli::parse_device;
//! assert_eq!(parse_device("cpu").unwrap().to_string(), "cpu");
//! assert!(parse_device("tpu").is_err());
//! ```

pub mod cli;
