//! The pure maths of every adapter type, apart from any module: one file per type holding its
//! update `ΔW` from the factors, its bypass branch where it has one, its parameter count and
//! its rank limit. The adapter modules ([`crate::adapters`]) and `lora-files` call these, so
//! no formula is written twice.
//!
//! This module uses only burn, std and its own files: nothing above it in this crate.
//!
//! | file | update |
//! |---|---|
//! | [`locon`] | `up · down` |
//! | [`tucker2`] | `up · mid · down` (Tucker along the channel modes) |
//! | [`cp`] | `Σ_r U[:, r] ⊗ V[r, :] ⊗ F_1[:, r] ⊗ ..` |
//! | [`loha`] | `(w1_a · w1_b) ⊙ (w2_a · w2_b)` |
//! | [`loha_tucker`] | `T(t1; w1_a, w1_b) ⊙ T(t2; w2_a, w2_b)` |
//! | [`lokr`] | `w1 ⊗ w2` |
//! | [`dora`] | LoCon's, with `m ⊙ V / ‖V‖` |
//!
//! Besides: [`conv`] (an N-D convolution and the 1x1 channel mix the branches use), [`shape`]
//! (saturating shape arithmetic) and [`recompose`] (the `delta` functions under their earlier
//! names).

pub mod conv;
pub mod cp;
pub mod dora;
pub mod locon;
pub mod loha;
pub mod loha_tucker;
pub mod lokr;
pub mod recompose;
pub mod shape;
pub mod tucker2;
