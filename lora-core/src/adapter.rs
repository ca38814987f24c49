//! The adapter abstraction every adapter type implements, and the one reparameterization that
//! carries any of them.
//!
//! An adapter is a burn [`Module`] holding trainable factors. It only has to say what its
//! scaled update `scale·ΔW` is ([`Adapter::delta_weight`]); everything else (the effective
//! weight `W + scale·ΔW`, merge, unmerge, records, autodiff, `materialize()`) is written once,
//! in [`LoraParam`] and [`crate::merge()`], on top of that one method.

use burn::module::{
    Content, DisplaySettings, Module, ModuleDisplay, Param, ParamId, Reparameterization,
};
use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::{LoraError, Result};

/// A low-rank update of one weight tensor.
///
/// Implementors are modules whose parameters are the trainable factors; burn sees them as
/// ordinary parameters (optimizer, records, autodiff, device moves).
///
/// Merge, unmerge, strip, records and training are written once over this trait, so an
/// adapter type only implements it; an [`AdapterFactory`](crate::AdapterFactory) builds it for
/// each targeted weight. The conv crate carries every type through one carrier
/// (`lora_conv::AnyAdapter`, which boxes any `lora_conv::ConvAdapter`), so a downstream type
/// implements this trait and that one.
pub trait Adapter: Module + ModuleDisplay + Sync + 'static {
    /// The rank `r` of the update.
    fn rank(&self) -> usize;

    /// The factor that multiplies the raw product: `alpha / r`, or `alpha / sqrt(r)` (rsLoRA).
    fn scale(&self) -> f64;

    /// The scaled update `scale·ΔW`, in exactly the adapted weight's shape and burn layout
    /// (`[d_in, d_out]` for a `Linear`, `[out, in/groups, k..]` for a convolution).
    ///
    /// The factors are read through `Param::val`, so the result is differentiable in them.
    ///
    /// # Panics
    /// If `D` is not the rank of the weight the adapter was built for. This is a programmer
    /// error: [`LoraParam`] always calls it with the adapted weight's rank.
    fn delta_weight<const D: usize>(&self) -> Tensor<D>;

    /// Number of trainable scalars in the factors.
    fn trainable_params(&self) -> usize;

    /// Whether `W' = W + scale·ΔW` (the default). Weight-decomposed types return `false` and
    /// implement [`Adapter::channel_scale`].
    fn additive(&self) -> bool {
        true
    }

    /// For weight-decomposed types (DoRA): the per-output-channel factor `s` of
    /// `W' = s ⊙ V`, `V = W + scale·ΔW`, computed from `V` and broadcastable against it in its
    /// layout (`[t, 1, 1..]` for a kernel, `[1, d_out]` for a burn `Linear` weight). `None`, the
    /// default, for additive types: `W' = V`.
    ///
    /// Merge folds `scale·ΔW` into the base, so a merged weight-decomposed layer computes
    /// `s(V) ⊙ V` from its base (one norm and one product per forward, no `ΔW`), and unmerge
    /// subtracts `scale·ΔW` exactly as for additive types.
    fn channel_scale<const D: usize>(&self, adapted: &Tensor<D>) -> Option<Tensor<D>> {
        let _ = adapted;
        None
    }

    /// The adapter once it knows the pretrained weight it is attached to (`attach` calls it).
    /// DoRA sets its magnitude to `‖W‖` per output channel here, so that attaching leaves the
    /// model unchanged; other types keep the default, which changes nothing.
    #[must_use]
    fn with_base<const D: usize>(self, base: &Tensor<D>) -> Self
    where
        Self: Sized,
    {
        let _ = base;
        self
    }
}

/// How `alpha` and `rank` combine into [`Adapter::scale`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Scaling {
    /// `alpha / r` (Hu et al. 2021).
    #[default]
    Standard,
    /// `alpha / sqrt(r)` (rsLoRA, Kalajdzievski 2023), stable across ranks.
    RsLora,
}

impl Scaling {
    /// The scale for this `alpha` and `rank`.
    pub fn scale(self, alpha: f64, rank: usize) -> f64 {
        match self {
            Scaling::Standard => alpha / rank as f64,
            Scaling::RsLora => alpha / (rank as f64).sqrt(),
        }
    }
}

/// How the input-side factor(s) are initialized. The output-side factor is always zero, so an
/// adapter does not change the model when it is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FactorInit {
    /// Kaiming-uniform with bound `1/sqrt(fan_in)` (PEFT's default, `a = sqrt(5)`).
    #[default]
    KaimingUniform,
    /// Gaussian `N(0, (1/r)^2)` (PEFT's `init_lora_weights="gaussian"`).
    Gaussian,
}

/// What one adapter is built with: the resolved rank, alpha, scaling and init for one weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdapterSpec {
    /// Rank `r`.
    pub rank: usize,
    /// Scaling numerator.
    pub alpha: f64,
    /// `alpha/r` or `alpha/sqrt(r)`.
    pub scaling: Scaling,
    /// Init of the input-side factor(s).
    pub init: FactorInit,
}

impl AdapterSpec {
    /// Rank and alpha with standard `alpha/r` scaling and Kaiming-uniform init.
    pub fn new(rank: usize, alpha: f64) -> Self {
        Self {
            rank,
            alpha,
            scaling: Scaling::Standard,
            init: FactorInit::KaimingUniform,
        }
    }

    /// The scale this spec gives.
    pub fn scale(&self) -> f64 {
        self.scaling.scale(self.alpha, self.rank)
    }

    /// Check the rank (`1..=max_rank`) and alpha for the weight at `path` of `shape`.
    ///
    /// `bound` says where `max_rank` comes from, for the error message (e.g. `"min(d_in, d_out)"`).
    ///
    /// # Errors
    /// [`LoraError::InvalidRank`] or [`LoraError::InvalidAlpha`], naming `path` and the values.
    pub fn check(&self, path: &str, shape: &[usize], max_rank: usize, bound: &str) -> Result<()> {
        if self.rank == 0 || self.rank > max_rank {
            return Err(LoraError::InvalidRank {
                path: path.to_string(),
                rank: self.rank,
                shape: shape.to_vec(),
                reason: format!("the rank must be in 1..={max_rank} ({bound})"),
            });
        }
        if !self.alpha.is_finite() {
            return Err(LoraError::InvalidAlpha {
                path: path.to_string(),
                alpha: self.alpha,
            });
        }
        Ok(())
    }
}

/// The reparameterization attached to every adapted weight: `W_eff = W + scale·ΔW` while
/// unmerged, `W_eff = W` once merged (for weight-decomposed types, `s(V) ⊙ V` of those; see
/// [`Adapter::channel_scale`]).
///
/// While unmerged the base holds the pretrained `W` and the update is added on the fly; once
/// [`crate::merge()`] has folded the update into the base, `merged` is 1 and the base is used as
/// is, without computing the update. `merged` is an integer parameter, so it travels in records with the
/// base it describes (a record saved after merging loads back merged) and is never trained or
/// counted by `num_params`.
///
/// The scale travels the same way: `scale` holds the bits of the f32 scale the factors were
/// trained with. A record loaded into a model attached with another alpha brings its own scale
/// along, and the update is computed with it (the adapter's `ΔW` is rescaled by the ratio), so
/// outputs, merge and unmerge all use the scale the factors belong to.
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct LoraParam<A: Adapter> {
    /// The adapter (its factors are the trainable parameters).
    pub adapter: A,
    /// `[1]`, 0 or 1: whether the update is already folded into the base weight.
    pub merged: Param<Tensor<1, Int>>,
    /// `[1]`: the f32 bits (as a signed 32-bit integer) of the scale the factors belong to.
    pub scale: Param<Tensor<1, Int>>,
}

/// The scale as stored in [`LoraParam::scale`]: f32 bits, reinterpreted as a signed 32-bit
/// integer so that every integer backend (i32 on wgpu) holds it exactly.
pub fn scale_bits(scale: f64) -> i64 {
    i64::from((scale as f32).to_bits() as i32)
}

/// The scale back from [`scale_bits`].
pub fn scale_from_bits(bits: i64) -> f64 {
    f64::from(f32::from_bits(bits as i32 as u32))
}

impl<A: Adapter> LoraParam<A> {
    /// Wrap a freshly built adapter (unmerged); `device` is where the adapted weight lives.
    pub fn new(adapter: A, device: &Device) -> Self {
        Self::with_state(adapter, false, device)
    }

    /// Wrap an adapter with a given merge state (for code that rebuilds adapted weights, such
    /// as 2D -> 3D inflation).
    pub fn with_state(adapter: A, merged: bool, device: &Device) -> Self {
        let flag = Tensor::<1, Int>::from_data([i64::from(merged)], device);
        let scale = Tensor::<1, Int>::from_data([scale_bits(adapter.scale())], device);
        Self {
            adapter,
            merged: Param::initialized(ParamId::new(), flag),
            scale: Param::initialized(ParamId::new(), scale),
        }
    }

    /// Whether the update is folded into the base.
    pub fn is_merged(&self) -> bool {
        flag_value(&self.merged) == merge_state::MERGED
    }

    /// The scale in force: the recorded one (see the type's docs).
    pub fn scale(&self) -> f64 {
        self.scale
            .val()
            .into_data()
            .iter::<i64>()
            .next()
            .map_or(self.adapter.scale(), scale_from_bits)
    }
}

/// The values of [`LoraParam::merged`]. Only [`UNMERGED`](merge_state::UNMERGED) and
/// [`MERGED`](merge_state::MERGED) are ever saved; the other two exist inside merge, unmerge
/// and strip, so that `materialize()` computes what they need.
pub mod merge_state {
    /// The base holds `W`; the effective weight is computed from it and the update.
    pub const UNMERGED: i64 = 0;
    /// The base holds `V = W + scale·ΔW`.
    pub const MERGED: i64 = 1;
    /// Transient: the effective weight is `base + scale·ΔW`, whatever the type.
    pub const ADD_UPDATE: i64 = 2;
    /// Transient: the effective weight is the base itself.
    pub const BASE: i64 = 3;
}

/// The value of a `[1]` integer flag parameter (such as [`LoraParam::merged`]).
pub(crate) fn flag_value<const D: usize>(flag: &Param<Tensor<D, Int>>) -> i64 {
    flag.val().into_data().iter::<i64>().next().unwrap_or(0)
}

impl<A: Adapter> ModuleDisplay for LoraParam<A> {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add("adapter", &self.adapter)
            .add("rank", &self.adapter.rank())
            .add("scale", &self.scale())
            .add("merged", &self.is_merged())
            .optional()
    }
}

impl<A: Adapter> Reparameterization for LoraParam<A> {
    const NAME: &'static str = "lora";

    /// `W + scale·ΔW` while unmerged; the base itself once merged (weight-decomposed types
    /// rescale either per output channel, see [`Adapter::channel_scale`]).
    ///
    /// A merged weight computes no update at all: its forward costs what the base costs, and
    /// its factors get no gradient (so an optimizer step, weight decay included, leaves them
    /// as they were and a later unmerge subtracts exactly the update that was merged). Reading
    /// the flag and the scale are two one-element host reads per forward.
    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let state = flag_value(&self.merged);
        let additive = self.adapter.additive();
        let decompose = |v: Tensor<D>| {
            if additive {
                return v;
            }
            match self.adapter.channel_scale(&v) {
                Some(s) => v * s,
                None => v,
            }
        };
        match state {
            merge_state::MERGED => return decompose(base),
            merge_state::BASE => return base,
            _ => {}
        }
        let built = self.adapter.scale();
        let recorded = self.scale();
        let delta = self.adapter.delta_weight::<D>();
        // The same f32 scale (the usual case): the adapter's own f64 scale, no extra pass.
        let adapted = if scale_bits(built) == scale_bits(recorded) || built == 0.0 {
            base + delta
        } else {
            base + delta.mul_scalar(recorded / built)
        };
        if state == merge_state::ADD_UPDATE {
            adapted
        } else {
            decompose(adapted)
        }
    }
}
