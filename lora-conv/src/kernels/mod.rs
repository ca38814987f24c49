//! Backend-level kernels: ops whose burn implementation is the bottleneck of a training step on
//! some backend, rewritten where that wins, and falling back to burn's op everywhere else.

pub mod conv2d;
mod gemm;
mod shifted;

pub use conv2d::{conv2d, forward as conv2d_forward};
