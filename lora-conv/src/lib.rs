//! # lora-conv
//!
//! Adapters for convolution kernels `K [t, s/g, k_1..k_d]` (Conv1d/2d/3d) and linear weights,
//! named for what they are. With `c = s/g` and `K = Π k_j`:
//!
//! | type | update `ΔK[t, s, i..]` | parameters |
//! |---|---|---|
//! | [`ConvVariant::LoCon`] (PEFT, diffusers, kohya, LyCORIS) | `Σ_r up[t,r]·down[r,s,i..]` | `r·(c·K + t)` |
//! | [`ConvVariant::Tucker2`] (LyCORIS `use_tucker`) | `Σ_p Σ_q up[t,p]·mid[p,q,i..]·down[q,s]` | `r·(c + t) + r²·K` |
//! | [`ConvVariant::Cp`] (Lebedev et al. 2014) | `Σ_r U[t,r]·V[r,s]·Π_j F_j[i_j,r]` | `r·(c + t + Σ k_j)` |
//! | [`ConvVariant::LoHa`] (LyCORIS) | `(w1_a·w1_b) ⊙ (w2_a·w2_b)` | `2·r·(c·K + t)` |
//! | [`ConvVariant::LoKr`] (LyCORIS) | `w1 ⊗ (w2_a·w2_b)` | `a·c1 + r·(b + c2·K)` |
//!
//! Every type is one file in [`adapters`] implementing [`ConvAdapter`]; another crate adds its
//! own the same way and registers it with [`register`] (see [`adapter`] for the steps and the
//! design).
//!
//! The design document this project started from calls the Tucker-2 form "CP"; it is a
//! Tucker decomposition along the two channel modes with the spatial modes kept whole in the
//! core, as in LyCORIS. The true CP decomposition (canonical polyadic, arXiv 1412.6553) has one
//! factor per mode; its bypass form is a 1x1 conv, one depthwise conv per spatial axis and a
//! 1x1 conv. The document's recomposition loop is also wrong as written (it sums over the
//! wrong indices and reshapes the up kernel by the input channel count); [`functional`]
//! does it with matmuls, and the tests check it against an element-wise reference written
//! straight from the formulas above.
//!
//! Each adapter runs in two forms with the same parameters: weight-space (attach to any model
//! through [`lora_core::attach()`] with a [`ConvFactory`]; exact for every geometry, groups
//! included) and bypass ([`LoraConv`], `base(x) + branch(x)`; refused for grouped convs).
//!
//! ```
//! use lora_conv::{ConvGeometry, ConvVariant, bounds::{param_count, full_count, max_rank}};
//!
//! // A 64 -> 64, 3x3 conv: 36,864 weights.
//! let g = ConvGeometry::new(64, 64, vec![3, 3]);
//! assert_eq!(full_count(&g), 36_864);
//! assert_eq!(param_count(ConvVariant::LoCon, &g, 8), 8 * (64 * 9 + 64)); // 5,120
//! assert_eq!(param_count(ConvVariant::Tucker2, &g, 8), 8 * 128 + 64 * 9); // 1,600
//! assert_eq!(param_count(ConvVariant::Cp, &g, 8), 8 * (64 + 64 + 6)); // 1,072
//! // The largest ranks still smaller than the full kernel: 0.9·s for LoCon, as the document
//! // says.
//! assert_eq!(max_rank(ConvVariant::LoCon, &g), 57);
//! ```

// One module, `kernels::gemm`, calls the gemm crate's unsafe matrix product behind a
// bounds-checked safe function; every other module is free of unsafe code.
#![deny(unsafe_code)]

pub mod adapter;
pub mod adapters;
pub mod any;
pub mod bounds;
pub mod budget;
pub mod bypass;
pub mod carrier;
pub mod config;
pub mod cost;
pub mod erased;
pub mod factory;
pub mod forward;
pub mod functional;
pub mod geometry;
pub mod import;
pub mod kernels;
pub mod layer;
pub mod variant;

pub use adapter::{BranchOp, ConvAdapter, ConvArgs, Inflater, OpKind};
pub use adapters::{
    CpAdapter, DoraAdapter, LoConAdapter, LoHaAdapter, LoHaTuckerAdapter, LoKrAdapter,
    Tucker2Adapter,
};
pub use bypass::LoraConv;
pub use carrier::AnyAdapter;
pub use config::LoraConvConfig;
pub use cost::{ConvRates, CostModel, Workload};
pub use factory::{ConvFactory, conv_config};
pub use forward::ForwardMode;
pub use geometry::{ConvGeometry, Padding};
pub use layer::ConvLayer;
pub use variant::{ConvVariant, register};
