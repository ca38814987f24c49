//! The pure maths of conv LoRA, apart from any module: recomposition of `ΔK`, parameter
//! counts, rank bounds, and an N-D convolution helper.

pub mod allocation;
pub mod bounds;
pub mod conv;
pub mod count;
pub mod recompose;

pub use bounds::{
    ClosedForm, closed_form, kernel_rank_limit, max_rank, max_rank_tucker2_below_hf, rank_limit,
};
pub use count::{full_count, param_count};
