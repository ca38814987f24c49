//! The recomposition functions under their earlier names, kept so that code written against
//! them still builds. Each type's maths now lives in its own file ([`super::locon`],
//! [`super::tucker2`], [`super::cp`], [`super::loha`], [`super::loha_tucker`],
//! [`super::lokr`], [`super::dora`]); these are those files' `delta` functions.
//!
//! Every function returns `scale·ΔK` flattened as `[t, c·K]`, in the order of the kernel
//! `[t, c, k_1..k_d]` (row-major), ready to be reshaped to it.

pub use super::cp::delta as cp;
/// LoCon's update (PEFT/diffusers call it HF): [`super::locon::delta`].
pub use super::locon::delta as hf;
pub use super::tucker2::delta as tucker2;
