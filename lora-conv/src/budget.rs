//! Budgets become ranks: per-layer ranks for any registered adapter type that spend at most a
//! given number of trainable parameters, every layer strictly below break-even.
//!
//! A layer's admissible ranks are `1..=cap` with `cap = min(rank_limit, max_rank)`: the type's
//! own [`ConvVariant::rank_limit`] and the largest rank whose
//! [`ConvVariant::param_count`] is strictly below the kernel's size
//! ([`crate::bounds::max_rank`]); an adapter as large as the kernel it adapts is not
//! low-rank. A layer with `cap = 0` is never adapted. An adapted layer at rank `r` costs
//! `param_count(r)` (fixed parts included: DoRA's magnitude, LoKr's `w1`); a layer left out
//! costs nothing.
//!
//! Three rules ([`Allocation`]):
//! - **Uniform**: one rank `r` for every layer, capped per layer (`min(r, cap)`), the largest
//!   whose total fits the budget. When rank 1 on every layer does not fit, the layers with the
//!   most parameters at rank 1 are dropped first (ties: the later one in the list), keeping the
//!   most layers that fit at rank 1; the common rank is then searched again on those kept.
//! - **Filled**: the uniform ranks, topped up. While a one-rank step of some layer fits the
//!   budget left, the layer with the lowest rank (ties: the cheapest step, then the earlier
//!   layer) rises by one. The spend ends within one step of the budget, so types compare at
//!   (nearly) equal parameters where the uniform rule can leave much of a small budget unspent
//!   (LoCon at rank 1 on a ResNet-29 spends 60% of a 1% budget; rank 2 does not fit).
//! - **Energy**: greedy by the singular-value energy of the pretrained kernels. Starting from
//!   rank 0 everywhere, repeatedly raise by one the rank of the layer whose next step has the
//!   largest `priority = (σ_{r+1}² / Σ_j σ_j²) / (param_count(r+1) − param_count(r))`
//!   (`param_count(0) = 0`; `σ` of the kernel's `[t, (s/g)·K]` unfolding, descending, 0 past
//!   its end), among the steps that stay within the layer's cap and the budget. Ties go to the
//!   layer with the lower current rank, then the earlier one. It stops when no step fits. The
//!   energy share makes layers of different sizes comparable: each step buys the fraction of
//!   its layer's energy that a rank-`r+1` matrix holds beyond rank `r` (Eckart–Young), per
//!   parameter. Low-rank kernels saturate after a few ranks and the budget flows to layers
//!   whose spectrum is spread. For Tucker-2, CP and LoKr the matrix spectrum is a proxy (their
//!   rank is not the unfolding's).
//!
//! ```
//! use lora_conv::budget::{Allocation, LayerInfo, allocate};
//! use lora_conv::{ConvGeometry, ConvVariant};
//!
//! let layers = vec![
//!     LayerInfo::new("stem.weight", ConvGeometry::new(3, 32, vec![7, 7])),
//!     LayerInfo::new("block.weight", ConvGeometry::new(32, 32, vec![3, 3])),
//! ];
//! let plan = allocate(ConvVariant::LoCon, &layers, 2_000, Allocation::Uniform)?;
//! // Rank 4: 4·(147 + 32) + 4·(288 + 32) = 1,996 <= 2,000; rank 5 would cost 2,495.
//! assert_eq!(plan.rank_of("block.weight"), Some(4));
//! assert_eq!(plan.total, 1_996);
//! let config = plan.lora_config(1.0)?; // scale alpha/r = 1 on every layer
//! assert_eq!(config.spec_for("block.weight")?.rank, 4);
//! # Ok::<(), lora_core::LoraError>(())
//! ```

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use lora_core::{LoraConfig, LoraError, Position, Result};
use serde::{Deserialize, Serialize};

pub mod allocation;

use crate::bounds::{full_count, max_rank, param_count, rank_limit};
use crate::budget::allocation::{
    energy_ranks, energy_shares, fill_ranks, kernel_singular_values, uniform_ranks,
};
use crate::factory::conv_config;
use crate::geometry::ConvGeometry;
use crate::layer::ConvLayer;
use crate::variant::ConvVariant;

/// How [`allocate`] shares a budget between layers (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Allocation {
    /// The largest common rank, capped per layer.
    Uniform,
    /// Greedy by the share of each kernel's singular-value energy bought per parameter.
    Energy,
    /// Uniform, then the budget left over raises ranks by one, lowest rank first: a budget
    /// met to within one rank step, with ranks as even as the caps allow.
    Filled,
}

/// A layer to adapt: its kernel's parameter path, its geometry and, for
/// [`Allocation::Energy`], its kernel's singular values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// The kernel's parameter path as burn spells it (`blocks.3.conv1.weight`).
    pub path: String,
    /// The convolution's geometry (only the kernel shape `[t, s/g, k..]` matters here).
    pub geometry: ConvGeometry,
    /// Singular values of the kernel's `[t, (s/g)·K]` unfolding, any order.
    pub singular_values: Option<Vec<f64>>,
}

impl LayerInfo {
    /// A layer without singular values (enough for [`Allocation::Uniform`]).
    pub fn new(path: impl Into<String>, geometry: ConvGeometry) -> Self {
        Self {
            path: path.into(),
            geometry,
            singular_values: None,
        }
    }

    /// With the kernel's singular values.
    #[must_use]
    pub fn with_singular_values(self, values: Vec<f64>) -> Self {
        Self {
            singular_values: Some(values),
            ..self
        }
    }

    /// A burn Conv1d/2d/3d: its geometry and its kernel's singular values.
    ///
    /// # Errors
    /// As [`layer_singular_values`].
    pub fn of_layer<L: ConvLayer>(path: impl Into<String>, layer: &L) -> Result<Self> {
        let path = path.into();
        let values = layer_singular_values(&path, layer)?;
        Ok(Self::new(path, layer.geometry()).with_singular_values(values))
    }
}

/// The singular values (descending) of a burn Conv1d/2d/3d's kernel: [`kernel_singular_values`]
/// of [`ConvLayer::kernel`].
///
/// # Errors
/// As [`kernel_singular_values`]; [`LoraError::UnsupportedGeometry`] for a layer type with
/// other than 1 to 3 spatial axes.
pub fn layer_singular_values<L: ConvLayer>(path: &str, layer: &L) -> Result<Vec<f64>> {
    match L::DIMS {
        1 => kernel_singular_values(path, layer.kernel::<3>()),
        2 => kernel_singular_values(path, layer.kernel::<4>()),
        3 => kernel_singular_values(path, layer.kernel::<5>()),
        d => Err(LoraError::UnsupportedGeometry {
            path: path.to_string(),
            reason: format!("a conv layer with {d} spatial axes"),
        }),
    }
}

/// Every conv kernel of `model` (each float parameter of rank 3 to 5 that is not an adapter's
/// own), in traversal order, with its singular values when `spectrum` is set. Filter the list by
/// path to leave some out (e.g. 3-D parameters that are not kernels).
///
/// The geometry is read from the kernel shape `[t, c, k..]` alone, as one group of `c` inputs:
/// counts and rank limits depend on that shape only, so plans are the same as with the true
/// groups.
///
/// # Errors
/// As [`kernel_singular_values`], for the first kernel that fails.
pub fn model_kernels<M: Module>(model: &M, spectrum: bool) -> Result<Vec<LayerInfo>> {
    let mut visitor = KernelVisitor {
        at: Position::default(),
        spectrum,
        layers: Vec::new(),
        error: None,
    };
    model.visit(&mut visitor);
    visitor.error.map_or(Ok(visitor.layers), Err)
}

struct KernelVisitor {
    at: Position,
    spectrum: bool,
    layers: Vec<LayerInfo>,
    error: Option<LoraError>,
}

impl ModuleVisitor for KernelVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let kernel = self.at.outside() && (3..=5).contains(&D) && self.error.is_none();
        let geometry = ConvGeometry::from_weight_shape(&param.lazy_shape(), 1);
        let (true, Some(geometry)) = (kernel, geometry) else {
            return;
        };
        let mut layer = LayerInfo::new(self.at.path(), geometry);
        if self.spectrum {
            match kernel_singular_values(&layer.path, param.val()) {
                Ok(values) => layer.singular_values = Some(values),
                Err(e) => self.error = Some(e),
            }
        }
        self.layers.push(layer);
    }
}

/// The rank given to one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRank {
    /// The kernel's parameter path.
    pub path: String,
    /// Its rank (at least 1).
    pub rank: usize,
    /// Trainable parameters of its adapter at that rank.
    pub params: usize,
    /// Scalars in the kernel it adapts (break-even: `params` is always below it).
    pub kernel: usize,
    /// The largest rank it could have had ([`admissible_rank`]).
    pub cap: usize,
}

/// Why a layer got no adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LeftOutReason {
    /// Even rank 1 has at least as many parameters as the kernel (or the type refuses it).
    NoLowRank,
    /// The budget ran out before this layer (see [`Allocation`] for who goes first).
    Budget,
}

/// A layer left unadapted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// The kernel's parameter path.
    pub path: String,
    /// Why.
    pub reason: LeftOutReason,
}

/// Per-layer ranks for one adapter type, from [`allocate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankPlan {
    /// The adapter type.
    pub variant: ConvVariant,
    /// The rule that made it.
    pub rule: Allocation,
    /// The budget it was asked to fit, in trainable parameters.
    pub budget: usize,
    /// Trainable parameters it spends: the sum of `layers[..].params`, at most `budget`.
    pub total: usize,
    /// The adapted layers, in the order given.
    pub layers: Vec<LayerRank>,
    /// The layers left unadapted, in the order given.
    pub left_out: Vec<LeftOut>,
}

impl RankPlan {
    /// The rank of the layer at `path`, `None` when it is not adapted.
    pub fn rank_of(&self, path: &str) -> Option<usize> {
        self.layers.iter().find(|l| l.path == path).map(|l| l.rank)
    }

    /// A [`LoraConfig`] that adapts exactly this plan's layers at its ranks: `targets` and one
    /// `rank_pattern` and `alpha_pattern` entry per layer (each its path, regex-escaped, so it
    /// matches that path only), with `alpha = alpha_per_rank · rank` so that the scale
    /// `alpha/r` is `alpha_per_rank` on every layer under the default scaling. Add `trainable`
    /// (a new head) and an `init` with the config's `with_*` methods.
    ///
    /// # Errors
    /// [`LoraError::NoAdapters`] for a plan without layers; [`LoraError::InvalidAlpha`] when
    /// `alpha_per_rank` is not finite.
    pub fn lora_config(&self, alpha_per_rank: f64) -> Result<LoraConfig> {
        let first = self.layers.first().ok_or(LoraError::NoAdapters)?;
        if !alpha_per_rank.is_finite() {
            return Err(LoraError::InvalidAlpha {
                path: first.path.clone(),
                alpha: alpha_per_rank,
            });
        }
        let alpha = |rank: usize| alpha_per_rank * rank as f64;
        let patterns: Vec<(String, usize)> = self
            .layers
            .iter()
            .map(|l| (escape(&l.path), l.rank))
            .collect();
        Ok(conv_config(first.rank, alpha(first.rank))
            .with_targets(patterns.iter().map(|(p, _)| p.clone()).collect())
            .with_alpha_pattern(
                patterns
                    .iter()
                    .map(|(p, r)| (p.clone(), alpha(*r)))
                    .collect(),
            )
            .with_rank_pattern(patterns))
    }
}

/// `text` as a regex that matches it literally (every regex metacharacter backslashed).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(ch) {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// The largest rank `variant` may take on this layer: its [`ConvVariant::rank_limit`], and
/// strictly below break-even ([`max_rank`]). 0 when no rank is low-rank.
pub fn admissible_rank(variant: ConvVariant, geometry: &ConvGeometry) -> usize {
    rank_limit(variant, geometry).min(max_rank(variant, geometry))
}

/// Per-layer ranks of `variant` on `layers` that spend at most `budget` trainable parameters,
/// every layer strictly below break-even, by `rule` (see the [module docs](self) for both rules
/// exactly). Layers that get no rank are listed in [`RankPlan::left_out`] with the reason.
///
/// # Errors
/// - [`LoraError::InvalidGeometry`] for an empty `layers`, or naming the path of an invalid
///   geometry ([`ConvGeometry::validate`]) or of a path listed twice;
/// - [`LoraError::InvalidRank`] naming a layer when no layer can be adapted: the budget (0,
///   say) is below the cheapest rank-1 adapter, or no layer has a rank below break-even;
/// - [`LoraError::UnsupportedGeometry`] naming the layer, for [`Allocation::Energy`], when a
///   layer has no singular values or one that is negative or not finite.
pub fn allocate(
    variant: ConvVariant,
    layers: &[LayerInfo],
    budget: usize,
    rule: Allocation,
) -> Result<RankPlan> {
    let invalid = |reason: String| Err(LoraError::InvalidGeometry { reason });
    if layers.is_empty() {
        return invalid("no layers to share a budget between: the layer list is empty".into());
    }
    for (i, layer) in layers.iter().enumerate() {
        if let Err(e) = layer.geometry.validate() {
            return invalid(format!("`{}`: {e}", layer.path));
        }
        if layers[..i].iter().any(|l| l.path == layer.path) {
            return invalid(format!("`{}` is listed twice", layer.path));
        }
    }
    let caps: Vec<usize> = layers
        .iter()
        .map(|l| admissible_rank(variant, &l.geometry))
        .collect();
    let cost = |i: usize, r: usize| match r {
        0 => 0,
        r => param_count(variant, &layers[i].geometry, r),
    };
    let ranks = match rule {
        Allocation::Uniform => uniform_ranks(&caps, budget, cost),
        Allocation::Filled => fill_ranks(uniform_ranks(&caps, budget, cost), &caps, budget, cost),
        Allocation::Energy => energy_ranks(&shares(layers, &caps)?, &caps, budget, cost),
    };
    if ranks.iter().all(|&r| r == 0) {
        return Err(nothing_fits(variant, layers, &caps, budget, cost));
    }
    let mut plan = RankPlan {
        variant,
        rule,
        budget,
        total: 0,
        layers: Vec::new(),
        left_out: Vec::new(),
    };
    for (i, layer) in layers.iter().enumerate() {
        let path = layer.path.clone();
        match ranks[i] {
            0 => plan.left_out.push(LeftOut {
                path,
                reason: match caps[i] {
                    0 => LeftOutReason::NoLowRank,
                    _ => LeftOutReason::Budget,
                },
            }),
            rank => {
                let params = cost(i, rank);
                plan.total = plan.total.saturating_add(params);
                plan.layers.push(LayerRank {
                    path,
                    rank,
                    params,
                    kernel: full_count(&layer.geometry),
                    cap: caps[i],
                });
            }
        }
    }
    Ok(plan)
}

/// The error when no layer gets a rank, naming the cheapest rank-1 layer (or the first).
fn nothing_fits(
    variant: ConvVariant,
    layers: &[LayerInfo],
    caps: &[usize],
    budget: usize,
    cost: impl Fn(usize, usize) -> usize,
) -> LoraError {
    let eligible = (0..layers.len()).filter(|&i| caps[i] > 0);
    let cheapest = eligible.min_by_key(|&i| (cost(i, 1), i));
    let i = cheapest.unwrap_or(0);
    let reason = match cheapest {
        Some(i) => format!(
            "a budget of {budget} trainable parameters adapts no layer: the cheapest rank-1 \
             {variant} adapter (this layer's) costs {}",
            cost(i, 1)
        ),
        None => format!(
            "no layer has a {variant} rank below break-even (rank 1 has at least as many \
             parameters as the kernel), so no budget adapts any"
        ),
    };
    LoraError::InvalidRank {
        path: layers[i].path.clone(),
        rank: 1,
        shape: layers[i].geometry.weight_shape(),
        reason,
    }
}

/// The energy shares of each layer's singular values, descending (empty where `caps` is 0).
fn shares(layers: &[LayerInfo], caps: &[usize]) -> Result<Vec<Vec<f64>>> {
    let mut out = vec![Vec::new(); layers.len()];
    for (i, layer) in layers.iter().enumerate().filter(|&(i, _)| caps[i] > 0) {
        let unsupported = |reason: &str| LoraError::UnsupportedGeometry {
            path: layer.path.clone(),
            reason: reason.to_string(),
        };
        let mut values = layer.singular_values.clone().ok_or_else(|| {
            unsupported(
                "the energy allocation needs the kernel's singular values \
                 (LayerInfo::with_singular_values, LayerInfo::of_layer or model_kernels)",
            )
        })?;
        if values.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(unsupported(
                "singular values must be finite and non-negative",
            ));
        }
        values.sort_by(|a, b| b.total_cmp(a));
        out[i] = energy_shares(&values);
    }
    Ok(out)
}
