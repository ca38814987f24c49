//! # benches
//!
//! Criterion benchmarks of the workspace: `cargo bench -p benches`. Speed and memory targets
//! live here and in written reports, never in timed unit tests.
//!
//! - `adapters`: recomposition of `ΔK` per variant, and one training-free forward pass of a
//!   conv layer in weight-space vs bypass form.
//!
//! ```
//! assert_eq!(benches::SHAPES.len(), 2);
//! ```

/// `(channels, spatial size, rank)` of the benchmarked Conv2d layers (3x3 kernels, batch 8).
pub const SHAPES: [(usize, usize, usize); 2] = [(64, 16, 8), (128, 8, 16)];
