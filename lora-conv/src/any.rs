//! The carrier and its factory under their earlier path: [`AnyAdapter`] lives in
//! [`crate::carrier`], [`ConvFactory`] and [`conv_config`] in [`crate::factory`], and the
//! type-erasure plumbing in [`crate::erased`].

pub use crate::carrier::AnyAdapter;
pub use crate::erased::CONTAINER;
pub use crate::factory::{ConvFactory, conv_config};
