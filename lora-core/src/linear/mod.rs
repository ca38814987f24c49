//! Linear LoRA in its two forward modes.
//!
//! - weight-space: [`LinearAdapter`] attached to any `Linear` weight through
//!   [`crate::attach()`]; the model code does not change.
//! - bypass: [`LoraLinear`], `base(x) + scale · up(down(dropout(x)))`.

mod adapter;
mod bypass;

pub use adapter::LinearAdapter;
pub use bypass::{LoraLinear, LoraLinearConfig};
