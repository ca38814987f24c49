//! The [`Inflate`] trait, the [`Inflation`] context it runs in, and [`inflate`], the one call
//! that turns a 2D model into a 3D one.

use std::collections::{HashMap, HashSet};

use burn::module::{Module, ModuleVisitor, Param, ParamId, Reparameterizer};
use burn::tensor::Tensor;
use lora_conv::{AnyAdapter, LoConAdapter};
use lora_core::{LinearAdapter, LoraParam, ParamInfo, has_adapters, scan, strip};

use crate::adapter::inflate_adapter;
use crate::error::{InflateError, Result};
use crate::functional::kernel::inflate_checked;
use crate::options::{AdapterPolicy, InflateOptions};

/// A 2D module that knows its 3D counterpart.
///
/// Implemented here for burn's `Conv2d` (-> `Conv3d`), `BatchNorm` (dimension-generic, kept),
/// `MaxPool2d`, `AvgPool2d`, `AdaptiveAvgPool2d` (-> [`PerSlice`](crate::PerSlice)), `Linear`
/// and the element-wise activations (kept), and for `Vec` and `Option` of any of them.
///
/// For a model or a custom layer, implement it in your own crate by inflating each field;
/// weights go through [`Inflation::kernel`] or [`Inflation::carry`], which keep parameter ids
/// so that adapters follow their weights:
///
/// ```
/// use burn::module::Module;
/// use burn::nn::conv::{Conv2d, Conv3d};
/// use burn::nn::BatchNorm;
/// use lora_3d::{Inflate, Inflation, Result};
///
/// #[derive(Module, Debug)]
/// struct Block2d { conv: Conv2d, norm: BatchNorm }
/// #[derive(Module, Debug)]
/// struct Block3d { conv: Conv3d, norm: BatchNorm }
///
/// impl Inflate for Block2d {
///     type Output = Block3d;
///     fn inflate(self, cx: &mut Inflation) -> Result<Block3d> {
///         Ok(Block3d { conv: self.conv.inflate(cx)?, norm: self.norm.inflate(cx)? })
///     }
/// }
/// ```
pub trait Inflate {
    /// The 3D module.
    type Output: Module;

    /// Build the 3D module.
    ///
    /// # Errors
    /// Whatever the layer cannot express in 3D (see [`InflateError`]).
    fn inflate(self, cx: &mut Inflation) -> Result<Self::Output>;
}

/// The state of one [`inflate`] call: the options, where each weight of the 2D model lives,
/// and the adapters waiting to be attached to the 3D weights.
#[derive(Debug)]
pub struct Inflation {
    options: InflateOptions,
    params: HashMap<ParamId, ParamInfo>,
    trainable: HashSet<ParamId>,
    pending: HashMap<ParamId, LoraParam<AnyAdapter>>,
}

impl Inflation {
    /// A context for inflating `model` (whose weight paths it records for error messages).
    ///
    /// # Errors
    /// The options' own errors.
    pub fn new<M: Module>(model: &M, options: InflateOptions) -> Result<Self> {
        options.validate()?;
        let params = scan(model).into_iter().map(|p| (p.id, p)).collect();
        let mut trainable = Trainable::default();
        model.clone().train().visit(&mut trainable);
        Ok(Self {
            options,
            params,
            trainable: trainable.ids,
            pending: HashMap::new(),
        })
    }

    /// The options.
    pub fn options(&self) -> &InflateOptions {
        &self.options
    }

    /// The path of a 2D weight, for error messages.
    pub fn path(&self, id: ParamId) -> String {
        self.params
            .get(&id)
            .map_or_else(|| format!("<parameter {id}>"), |p| p.path.clone())
    }

    /// Take a weight whose shape inflation does not change (a linear or norm weight, a bias).
    /// Its adapter, if any, is kept for re-attachment to the same parameter.
    ///
    /// # Errors
    /// [`InflateError::UnknownAdapter`].
    pub fn carry<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Result<Param<Tensor<D>>> {
        if let Some(adapter) = self.adapter_of(&param)? {
            self.pending.insert(param.id, adapter);
        }
        Ok(param.map(|base| base))
    }

    /// Inflate a conv kernel `[t, s/g, kh, kw]` to `[t, s/g, kd, kh, kw]` (keeping its id and
    /// training state), and its adapter with it.
    ///
    /// # Errors
    /// [`InflateError::UnknownAdapter`]; [`InflateError::Adapter`].
    pub fn kernel(&mut self, param: Param<Tensor<4>>) -> Result<Param<Tensor<5>>> {
        if let Some(lora) = self.adapter_of(&param)? {
            let path = self.path(param.id);
            // The merge state and the recorded scale travel with the inflated adapter.
            let inflated = LoraParam {
                adapter: inflate_adapter(&path, lora.adapter, &self.options)?,
                ..lora
            };
            self.pending.insert(param.id, inflated);
        }
        let (depth, mode) = (self.options.depth, self.options.mode);
        let trainable = self.trainable.contains(&param.id);
        let kernel = inflate_checked(param.base().detach(), depth, mode).detach();
        Ok(Param::initialized(param.id, kernel).set_require_grad(trainable))
    }

    fn adapter_of<const D: usize>(
        &self,
        param: &Param<Tensor<D>>,
    ) -> Result<Option<LoraParam<AnyAdapter>>> {
        if !self
            .params
            .get(&param.id)
            .is_some_and(|p| p.reparameterized)
        {
            return Ok(None);
        }
        if let Some(lora) = param.reparameterization::<LoraParam<AnyAdapter>>() {
            return Ok(Some(lora.clone()));
        }
        if let Some(lora) = param.reparameterization::<LoraParam<LinearAdapter>>() {
            return Ok(Some(LoraParam {
                adapter: AnyAdapter::linear(LoConAdapter::from_linear(&lora.adapter)),
                merged: lora.merged.clone(),
                scale: lora.scale.clone(),
            }));
        }
        Err(InflateError::UnknownAdapter {
            path: self.path(param.id),
        })
    }

    /// Attach the pending adapters to the inflated model.
    fn finish<M: Module>(mut self, model: M) -> Result<M> {
        if self.pending.is_empty() {
            return Ok(model);
        }
        let mut attach = Reattach {
            pending: std::mem::take(&mut self.pending),
        };
        // Only ids present in the 3D model can be re-attached: check before mapping.
        let present: HashSet<ParamId> = scan(&model).into_iter().map(|p| p.id).collect();
        let mut lost: Vec<String> = attach
            .pending
            .keys()
            .filter(|id| !present.contains(id))
            .map(|&id| self.path(id))
            .collect();
        if !lost.is_empty() {
            lost.sort();
            return Err(InflateError::LostAdapters { paths: lost });
        }
        let model = model.apply_reparameterization(&mut attach);
        Ok(model)
    }
}

/// The ids of the parameters that train (as `Module::train` restores them).
#[derive(Default)]
struct Trainable {
    ids: HashSet<ParamId>,
}

impl ModuleVisitor for Trainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.is_require_grad() {
            self.ids.insert(param.id);
        }
    }
}

/// Puts inflated adapters back on the weights with the same ids.
struct Reattach {
    pending: HashMap<ParamId, LoraParam<AnyAdapter>>,
}

impl Reparameterizer for &mut Reattach {
    type Reparam = LoraParam<AnyAdapter>;

    fn reparameterize<const D: usize>(
        &mut self,
        _path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<Self::Reparam>) {
        match self.pending.remove(&param.id) {
            Some(lora) => (param.set_require_grad(false), Some(lora)),
            None => (param, None),
        }
    }
}

/// Inflate a 2D model (or layer) to 3D with one call.
///
/// Adapters are handled as `options.adapters` says: inflated with their weights (the default),
/// merged into the weights first, or dropped. Parameter ids are kept, so a 3D record can be
/// traced back to the 2D one.
///
/// # Errors
/// Bad options ([`InflateError::ZeroDepth`], [`InflateError::EvenDepth`],
/// [`InflateError::InexactDepth`]); a layer that has no exact 3D form (for example asymmetric
/// padding, [`InflateError::Padding`]); an adapter that cannot be inflated. The 2D model is
/// consumed either way; clone it first to keep it.
pub fn inflate<M: Inflate + Module>(model: M, options: &InflateOptions) -> Result<M::Output> {
    options.validate()?;
    let model = match options.adapters {
        AdapterPolicy::Inflate => model,
        AdapterPolicy::Merge if has_adapters(&model) => model.materialize(),
        AdapterPolicy::Discard if has_adapters(&model) => strip(&model)?,
        AdapterPolicy::Merge | AdapterPolicy::Discard => model,
    };
    let mut cx = Inflation::new(&model, options.clone())?;
    let inflated = model.inflate(&mut cx)?;
    cx.finish(inflated)
}
