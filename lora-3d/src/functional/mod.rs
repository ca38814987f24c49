//! Pure tensor maths of inflation, apart from modules.

pub mod kernel;

pub use kernel::{centre_padding, inflate_kernel};
