//! `Inflate` for burn's layers, and the depth-folding wrapper for per-slice layers.

mod basic;
mod conv;
mod per_slice;

pub use per_slice::{PerSlice, SliceLayer};
