//! Merge and unmerge, written once for every adapter type.
//!
//! burn only exposes the pair (base, reparameterization) to `Param::val` and to
//! `Module::materialize`, never to a visitor or mapper. So merging is expressed through them:
//! `materialize()` on a copy computes each effective weight `W + gate·scale·ΔW` with the
//! adapter's own [`Adapter::delta_weight`](crate::Adapter::delta_weight), and a mapper writes it
//! into the base and flips the adapter's `merged` flag (which gates the update off).
//!
//! - merge: `W ← W + scale·ΔW`, `merged ← 1`;
//! - unmerge: `W ← W − scale·ΔW`, `merged ← 0`, where `scale·ΔW` is recomputed from the current
//!   factors. Swapping adapters on a resident base is unmerge, load other factors, merge.
//!
//! Float rounding: merge then unmerge returns the base to within a few ulps of
//! `max(|W|, |W + scale·ΔW|)` (the tests hold it to 8 ulps).
//!
//! Precision: both compute in f32. A base stored in a lower float precision (f16, bf16; the
//! factors are f32) is widened to f32, the update added or taken out there, and the result
//! rounded once back to the base's dtype. So a merged f16 base is `W + scale·ΔW` to half an
//! f16 ulp of its magnitude (2⁻¹¹ relative; 2⁻⁸ for bf16), and merge then unmerge returns `W`
//! to one ulp of `max(|W|, |W + scale·ΔW|)` in that dtype. A value that overflows the base's
//! dtype (above 65504 for f16) is refused like any other non-finite update.

use std::any::Any;
use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{FloatDType, Int, Tensor};

use crate::adapter::{flag_value, merge_state};
use crate::{LoraError, Result};

/// An adapted weight of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptedParam {
    /// Path of the base weight.
    pub path: String,
    /// Whether its update currently lives in the base.
    pub merged: bool,
    /// The scale in force (the recorded one, see [`crate::LoraParam`]); 0 for a weight that
    /// carries another reparameterization.
    pub scale: f64,
    id: ParamId,
    /// Tensor rank of the weight.
    rank: usize,
    /// Whether the reparameterization is ours ([`crate::LoraParam`], recognised by its
    /// `merged` flag) rather than another one, such as burn's own `apply_lora`/`apply_qlora`.
    ours: bool,
}

/// List the adapted weights of a model, with their merge state.
///
/// Only this workspace's adapters ([`crate::LoraParam`]) count: a weight that carries another
/// reparameterization (burn's own `Module::apply_lora` or `apply_qlora`) is not listed, so
/// [`merge()`] and [`unmerge()`] leave it alone instead of folding its update in a second time.
pub fn adapted_params<M: Module>(model: &M) -> Vec<AdaptedParam> {
    let mut finder = AdapterFinder::default();
    model.visit(&mut finder);
    finder.found.into_iter().filter(|a| a.ours).collect()
}

/// Merge and unmerge handle weights of tensor rank 1 to 6 (burn's float tensors are
/// const-generic in their rank, and the type-erased arithmetic is written for those).
pub(crate) const MAX_MERGE_RANK: usize = 6;

/// [`LoraError::UnsupportedGeometry`] for the first adapted weight of a rank merge cannot
/// handle, before anything is changed.
fn refuse_high_rank(adapted: &[AdaptedParam]) -> Result<()> {
    match adapted.iter().find(|a| a.rank > MAX_MERGE_RANK) {
        Some(a) => Err(LoraError::UnsupportedGeometry {
            path: a.path.clone(),
            reason: format!(
                "merge and unmerge handle weights of tensor rank 1 to {MAX_MERGE_RANK}; this \
                 one has rank {}",
                a.rank
            ),
        }),
        None => Ok(()),
    }
}

/// Whether any weight of the model carries an adapter.
pub fn has_adapters<M: Module>(model: &M) -> bool {
    !adapted_params(model).is_empty()
}

#[derive(Default)]
struct AdapterFinder {
    last_float: Option<(String, ParamId, usize)>,
    at: crate::Position,
    found: Vec<AdaptedParam>,
}

impl ModuleVisitor for AdapterFinder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if self.at.enter(name, container_type)
            && let Some((path, id, rank)) = self.last_float.take()
        {
            self.found.push(AdaptedParam {
                path,
                merged: false,
                scale: 0.0,
                id,
                rank,
                ours: false,
            });
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.at.outside() {
            self.last_float = Some((self.at.path(), param.id, D));
        }
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        if self.at.depth() == 1
            && self.at.last() == Some("merged")
            && let Some(found) = self.found.last_mut()
        {
            found.merged = flag_value(param) == merge_state::MERGED;
            found.ours = true;
        }
        if self.at.depth() == 1
            && self.at.last() == Some("scale")
            && let Some(found) = self.found.last_mut()
            && let Some(bits) = param.val().into_data().iter::<i64>().next()
        {
            found.scale = crate::adapter::scale_from_bits(bits);
        }
    }
}

/// Fold every adapter's update into its base weight.
///
/// The adapters stay attached (gated off), so [`unmerge()`] can take the update out again.
/// For inference without adapters at all, use burn's `model.valid().materialize()`.
///
/// # Errors
/// [`LoraError::NoAdapters`]; [`LoraError::AlreadyMerged`] naming every weight that is already
/// merged; [`LoraError::UnsupportedGeometry`] for a weight of tensor rank above 6;
/// [`LoraError::NonFiniteUpdate`] naming every weight whose merged value `W + scale·ΔW`
/// would hold a NaN or an infinity (PEFT's `safe_merge`). Nothing is changed then.
pub fn merge<M: Module>(model: &M) -> Result<M> {
    let adapted = adapted_params(model);
    if adapted.is_empty() {
        return Err(LoraError::NoAdapters);
    }
    refuse_high_rank(&adapted)?;
    let merged: Vec<String> = adapted
        .iter()
        .filter(|a| a.merged)
        .map(|a| a.path.clone())
        .collect();
    if !merged.is_empty() {
        return Err(LoraError::AlreadyMerged { paths: merged });
    }
    // Effective weights W + scale·ΔW in f32, keyed by the base's id (materialize keeps ids),
    // rounded back to each base's dtype.
    let (wide, dtypes) = widen(model.clone(), &adapted);
    let wide = wide.map(&mut Rewrite {
        flag: merge_state::ADD_UPDATE,
        ..Rewrite::new(&adapted)
    });
    let effective = narrow(collect(wide.materialize(), &adapted), &dtypes);
    refuse_non_finite(&effective, &adapted)?;
    Ok(model.clone().map(&mut Rewrite {
        bases: effective,
        flag: merge_state::MERGED,
        ..Rewrite::new(&adapted)
    }))
}

/// Take every adapter's update back out of its base weight.
///
/// # Errors
/// [`LoraError::NoAdapters`]; [`LoraError::NotMerged`] naming every weight that is not merged;
/// [`LoraError::NonFiniteUpdate`] naming every weight whose unmerged value would hold a NaN or
/// an infinity (factors that became non-finite after merging). Nothing is changed then.
pub fn unmerge<M: Module>(model: &M) -> Result<M> {
    let adapted = adapted_params(model);
    if adapted.is_empty() {
        return Err(LoraError::NoAdapters);
    }
    refuse_high_rank(&adapted)?;
    let unmerged: Vec<String> = adapted
        .iter()
        .filter(|a| !a.merged)
        .map(|a| a.path.clone())
        .collect();
    if !unmerged.is_empty() {
        return Err(LoraError::NotMerged { paths: unmerged });
    }
    // With the gate opened again, materialize gives W' + scale·ΔW where W' = W + scale·ΔW is
    // the merged base; the unmerged base is W' − (that − W').
    // In f32 (see the module docs), rounded back to each base's dtype at the end.
    let (wide, dtypes) = widen(model.clone(), &adapted);
    let opened = wide.clone().map(&mut Rewrite {
        flag: merge_state::ADD_UPDATE,
        ..Rewrite::new(&adapted)
    });
    let doubled = collect(opened.materialize(), &adapted);
    let current = collect(wide, &adapted);
    let mut bases: HashMap<ParamId, Box<dyn Any + Send>> = HashMap::new();
    for (id, twice) in doubled {
        if let Some(now) = current.get(&id) {
            bases.insert(id, subtract_delta(now.as_ref(), twice));
        }
    }
    let bases = narrow(bases, &dtypes);
    refuse_non_finite(&bases, &adapted)?;
    Ok(model.clone().map(&mut Rewrite {
        bases,
        flag: merge_state::UNMERGED,
        ..Rewrite::new(&adapted)
    }))
}

/// The model without its adapters: every adapted weight goes back to its pretrained base
/// (unmerging first if the updates are merged) and loses its reparameterization. Parameter ids
/// are kept. Use it to put fresh adapters on a model, or to drop a trained adapter; use
/// `model.materialize()` instead to keep the update folded in.
///
/// # Errors
/// [`LoraError::NoAdapters`]; [`LoraError::NotMerged`] if some updates are merged and others
/// are not (nothing is changed then).
pub fn strip<M: Module>(model: &M) -> Result<M> {
    let adapted = adapted_params(model);
    if adapted.is_empty() {
        return Err(LoraError::NoAdapters);
    }
    refuse_high_rank(&adapted)?;
    let base = if adapted.iter().any(|a| a.merged) {
        unmerge(model)?
    } else {
        model.clone()
    };
    // Gate every update off, then fold: the effective value is the base.
    let gated = base.map(&mut Rewrite {
        flag: merge_state::BASE,
        ..Rewrite::new(&adapted)
    });
    Ok(gated.materialize())
}

/// [`LoraError::NonFiniteUpdate`] naming every adapted weight whose new base value in `bases`
/// has a NaN or an infinity (as PEFT's `safe_merge` checks), so that merge and unmerge never
/// write one.
fn refuse_non_finite(
    bases: &HashMap<ParamId, Box<dyn Any + Send>>,
    adapted: &[AdaptedParam],
) -> Result<()> {
    let paths: Vec<String> = adapted
        .iter()
        .filter(|a| bases.get(&a.id).is_some_and(|t| !all_finite(t.as_ref())))
        .map(|a| a.path.clone())
        .collect();
    if paths.is_empty() {
        Ok(())
    } else {
        Err(LoraError::NonFiniteUpdate { paths })
    }
}

/// Whether a type-erased `Tensor<D>` holds finite values only (`true` for another type).
fn all_finite(tensor: &(dyn Any + Send)) -> bool {
    macro_rules! try_rank {
        ($($d:literal),*) => {$(
            if let Some(t) = tensor.downcast_ref::<Tensor<$d>>() {
                return t.clone().is_finite().all().into_scalar::<bool>();
            }
        )*};
    }
    try_rank!(1, 2, 3, 4, 5, 6);
    true
}

/// The model with every adapted base weight cast to f32, and the float dtype each had.
fn widen<M: Module>(model: M, adapted: &[AdaptedParam]) -> (M, HashMap<ParamId, FloatDType>) {
    struct Widen<'a> {
        ids: &'a [AdaptedParam],
        at: crate::Position,
        dtypes: HashMap<ParamId, FloatDType>,
    }
    impl ModuleMapper for Widen<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if !self.at.outside() || !self.ids.iter().any(|a| a.id == param.id) {
                return param;
            }
            let id = param.id;
            let mut dtype = FloatDType::F32;
            let param = param.map(|base| {
                dtype = base.dtype().into();
                base.cast(FloatDType::F32)
            });
            self.dtypes.insert(id, dtype);
            param
        }
    }
    let mut widen = Widen {
        ids: adapted,
        at: crate::Position::default(),
        dtypes: HashMap::new(),
    };
    let model = model.map(&mut widen);
    (model, widen.dtypes)
}

/// `bases` (type-erased `Tensor<D>`s) cast back to the dtypes [`widen`] recorded.
fn narrow(
    bases: HashMap<ParamId, Box<dyn Any + Send>>,
    dtypes: &HashMap<ParamId, FloatDType>,
) -> HashMap<ParamId, Box<dyn Any + Send>> {
    fn cast(tensor: Box<dyn Any + Send>, dtype: FloatDType) -> Box<dyn Any + Send> {
        macro_rules! try_rank {
            ($($d:literal),*) => {$(
                if let Some(t) = tensor.downcast_ref::<Tensor<$d>>() {
                    return Box::new(t.clone().cast(dtype));
                }
            )*};
        }
        try_rank!(1, 2, 3, 4, 5, 6);
        tensor
    }
    bases
        .into_iter()
        .map(|(id, t)| match dtypes.get(&id) {
            Some(&dtype) if dtype != FloatDType::F32 => (id, cast(t, dtype)),
            _ => (id, t),
        })
        .collect()
}

/// `now − (twice − now)` for tensors of any rank, type-erased as `Tensor<D>`.
fn subtract_delta(now: &(dyn Any + Send), twice: Box<dyn Any + Send>) -> Box<dyn Any + Send> {
    macro_rules! try_rank {
        ($($d:literal),*) => {$(
            if let (Some(now), Some(twice)) =
                (now.downcast_ref::<Tensor<$d>>(), twice.downcast_ref::<Tensor<$d>>())
            {
                let delta = twice.clone() - now.clone();
                return Box::new(now.clone() - delta);
            }
        )*};
    }
    try_rank!(1, 2, 3, 4, 5, 6);
    twice
}

/// The base values of the adapted weights in `model`, by id (as `Box<Tensor<D>>`).
fn collect<M: Module>(model: M, adapted: &[AdaptedParam]) -> HashMap<ParamId, Box<dyn Any + Send>> {
    struct Collector<'a> {
        ids: &'a [AdaptedParam],
        at: crate::Position,
        out: HashMap<ParamId, Box<dyn Any + Send>>,
    }
    impl ModuleVisitor for Collector<'_> {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.at.outside() && self.ids.iter().any(|a| a.id == param.id) {
                self.out.insert(param.id, Box::new(param.base().detach()));
            }
        }
    }
    let mut collector = Collector {
        ids: adapted,
        at: crate::Position::default(),
        out: HashMap::new(),
    };
    model.visit(&mut collector);
    collector.out
}

/// Writes new base values and merge flags into the adapted weights.
struct Rewrite {
    ids: Vec<ParamId>,
    bases: HashMap<ParamId, Box<dyn Any + Send>>,
    flag: i64,
    at: crate::Position,
}

impl Rewrite {
    fn new(adapted: &[AdaptedParam]) -> Self {
        Self {
            ids: adapted.iter().map(|a| a.id).collect(),
            bases: HashMap::new(),
            flag: 0,
            at: crate::Position::default(),
        }
    }
}

impl ModuleMapper for Rewrite {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !self.at.outside() || !self.ids.contains(&param.id) {
            return param;
        }
        match self
            .bases
            .remove(&param.id)
            .and_then(|b| b.downcast::<Tensor<D>>().ok())
        {
            Some(new_base) => param.map(|old| {
                let require_grad = old.is_require_grad();
                new_base.detach().set_require_grad(require_grad)
            }),
            None => param,
        }
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        if self.at.depth() == 1 && self.at.last() == Some("merged") {
            let flag = self.flag;
            return param.map(|old| old.zeros_like().add_scalar(flag));
        }
        param
    }
}
