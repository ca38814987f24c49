//! # benches
//!
//! Criterion benchmarks of the workspace and the code they share. Run them all, and turn the
//! results into `benches/REPORT.md`, with `./scripts/bench.sh` (it runs
//! `cargo bench --workspace --profile dev --features lora-core/wgpu`, which reuses the test
//! build of burn instead of compiling a release build, then `scripts/bench_report.py`).
//! Speed and memory targets live here and in that report, never in timed unit tests.
//!
//! - `recompose`: recomposition of `ΔK` per variant, against an element-wise loop written from
//!   the formulas and against one matmul of equal FLOPs;
//! - `train`: one training step (forward, backward, Adam) of the experiment CNN, full
//!   fine-tuning and every variant in weight-space, bypass and auto form at ranks 1, 4, 16;
//! - `infer`: inference of the experiment CNN: base, unmerged weight-space, bypass, auto, and
//!   merged;
//! - `layers`: one layer's training step and inference at shapes from real networks
//!   (ResNet-18's 3x3 convs, a 1D and an inflated 3D layer), every form;
//! - `calibrate` (not criterion): measures the rates of [`lora_conv::CostModel`];
//! - `memory` (not criterion): the peak memory of one training step per form;
//! - `conv`: one conv's forward and backward at the ResNet-29's and the CNN's shapes, burn's
//!   `conv2d` against `lora_conv::kernels::conv2d`.

pub mod cnn;
pub mod loops;
pub mod resnet;

/// `criterion_main!` for this crate's benches: the `main` of a criterion bench binary that
/// first sets the allocator as the experiment binaries do
/// (`experiments::alloc::keep_freed_memory`), so that the benches time what a run pays.
#[macro_export]
macro_rules! bench_main {
    ($($group:path),+ $(,)?) => {
        fn main() {
            experiments::alloc::keep_freed_memory();
            $($group();)+
            criterion::Criterion::default()
                .configure_from_args()
                .final_summary();
        }
    };
}

/// `(channels, spatial size, rank)` of the Conv2d layers whose recomposition is benchmarked
/// (3x3 kernels).
pub const SHAPES: [(usize, usize, usize); 2] = [(64, 16, 8), (128, 8, 16)];

/// A conv layer shape from a real network.
#[derive(Debug, Clone, Copy)]
pub struct LayerShape {
    /// Short name for bench ids.
    pub name: &'static str,
    /// Spatial axes (1, 2, 3).
    pub dims: usize,
    /// Input and output channels.
    pub channels: usize,
    /// Size of every spatial axis.
    pub size: usize,
    /// Batch size.
    pub batch: usize,
}

/// ResNet-18's 3x3 convs at batch 8, a 1D conv and an inflated 3x3x3 conv on a 16-deep volume.
pub const LAYERS: [LayerShape; 6] = [
    LayerShape {
        name: "r18-64x56",
        dims: 2,
        channels: 64,
        size: 56,
        batch: 8,
    },
    LayerShape {
        name: "r18-128x28",
        dims: 2,
        channels: 128,
        size: 28,
        batch: 8,
    },
    LayerShape {
        name: "r18-256x14",
        dims: 2,
        channels: 256,
        size: 14,
        batch: 8,
    },
    LayerShape {
        name: "r18-512x7",
        dims: 2,
        channels: 512,
        size: 7,
        batch: 8,
    },
    LayerShape {
        name: "1d-128x256",
        dims: 1,
        channels: 128,
        size: 256,
        batch: 8,
    },
    LayerShape {
        name: "3d-32x16",
        dims: 3,
        channels: 32,
        size: 16,
        batch: 8,
    },
];

/// The ranks of the training-step benches.
pub const RANKS: [usize; 3] = [1, 4, 16];
