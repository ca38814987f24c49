//! [`AnyAdapter`], the one carrier of every adapter type, and the factory that builds it.

use std::any::Any;
use std::fmt;

use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
use burn::tensor::{Device, Tensor};
use lora_core::erased::{DynMapper, DynVisitor, Erase, EraseMapper, Restore, RestoreMapper};
use lora_core::{Adapter, AdapterFactory, AdapterSpec, LoraConfig, LoraError, Result};

use crate::adapter::{ConvAdapter, ConvArgs, Inflater};
use crate::functional::conv::same_rank;
use crate::variant::ConvVariant;

/// The container type [`AnyAdapter`] reports to visitors when it enters its adapter (whose
/// name, [`ConvAdapter::NAME`], is the path segment: `weight.lora.adapter.locon.down`).
pub const CONTAINER: &str = "AnyAdapter";

/// Any registered [`ConvAdapter`], behind one type, so that one reparameterization carries
/// every adapter type (burn does not nest reparameterizations).
///
/// It is a burn module like any other: its factors are visited, mapped, saved, loaded and moved
/// between devices under `<adapter name>.<factor>` (e.g. `locon.down`). The concrete adapter
/// is reachable with [`AnyAdapter::downcast_ref`].
///
/// For a `Linear` weight (burn layout `[d_in, d_out]`) the adapter is built on the PyTorch
/// layout `[d_out, d_in]` and its update is transposed here.
pub struct AnyAdapter {
    inner: Box<dyn Erased>,
    transposed: bool,
}

impl AnyAdapter {
    /// Carry `adapter`, whose update has the adapted weight's layout.
    pub fn new<A: ConvAdapter>(adapter: A) -> Self {
        Self {
            inner: Box::new(adapter),
            transposed: false,
        }
    }

    /// Carry `adapter`, built on the PyTorch layout `[out, in]` of a `Linear` weight that burn
    /// stores as `[in, out]`: its update is transposed.
    pub fn linear<A: ConvAdapter>(adapter: A) -> Self {
        Self {
            inner: Box::new(adapter),
            transposed: true,
        }
    }

    /// The same adapter carried for a `Linear` weight: built on `[out, in]`, its update is
    /// transposed into burn's `[in, out]`.
    pub fn into_linear(self) -> Self {
        Self {
            transposed: true,
            ..self
        }
    }

    /// The adapter type.
    pub fn variant(&self) -> ConvVariant {
        self.inner.variant()
    }

    /// Whether it adapts a `Linear` weight (its update is transposed to burn's layout).
    pub fn is_linear(&self) -> bool {
        self.transposed
    }

    /// The adapted weight's shape in PyTorch layout, `[t, s/g, k..]` (`[out, in]` for a
    /// `Linear` weight).
    pub fn shape(&self) -> &[usize] {
        self.inner.shape()
    }

    /// The adapted conv kernel's shape `[t, s/g, k..]`, or `None` for a `Linear` weight.
    pub fn kernel_shape(&self) -> Option<&[usize]> {
        (!self.transposed).then(|| self.inner.shape())
    }

    /// The concrete adapter, if it is an `A`.
    pub fn downcast_ref<A: ConvAdapter>(&self) -> Option<&A> {
        self.inner.as_any().downcast_ref::<A>()
    }

    /// The concrete adapter, if it is an `A` (check with [`AnyAdapter::downcast_ref`] first
    /// to keep the carrier otherwise).
    pub fn into_inner<A: ConvAdapter>(self) -> Option<A> {
        self.inner.into_any().downcast::<A>().ok().map(|a| *a)
    }

    /// The bypass branch `conv(x, scale·ΔW)` from the factors, or `None` when the type has no
    /// bypass form or this is a `Linear` adapter.
    ///
    /// # Panics
    /// If `N` is not `d + 2` for the kernel's `d` spatial axes (a programmer error).
    pub fn branch<const N: usize>(&self, x: Tensor<N>, conv: &ConvArgs) -> Option<Tensor<N>> {
        if self.transposed {
            return None;
        }
        match N {
            3 => self.inner.branch3(same_rank(x), conv).map(same_rank),
            4 => self.inner.branch4(same_rank(x), conv).map(same_rank),
            5 => self.inner.branch5(same_rank(x), conv).map(same_rank),
            _ => None,
        }
    }

    /// The 3D adapter of a 2D conv adapter (see [`ConvAdapter::inflate`]).
    ///
    /// # Errors
    /// [`LoraError::UnsupportedGeometry`] naming `path` for a `Linear` adapter, a kernel that is
    /// not 2D, or a type without inflation.
    pub fn inflate(self, path: &str, to3d: &Inflater) -> Result<Self> {
        let refuse = |reason: String| LoraError::UnsupportedGeometry {
            path: path.to_string(),
            reason,
        };
        if self.transposed {
            return Err(refuse(
                "a linear adapter has no spatial axes to inflate".into(),
            ));
        }
        if self.inner.shape().len() != 4 {
            return Err(refuse(format!(
                "its kernel {:?} is not 2D",
                self.inner.shape()
            )));
        }
        Ok(Self {
            inner: self.inner.inflate_dyn(path, to3d)?,
            transposed: false,
        })
    }
}

/// What [`AnyAdapter`] needs from the adapter it carries, object-safe; implemented for every
/// [`ConvAdapter`].
trait Erased: Send + Sync {
    fn variant(&self) -> ConvVariant;
    fn shape(&self) -> &[usize];
    fn rank(&self) -> usize;
    fn scale(&self) -> f64;
    fn trainable_params(&self) -> usize;
    fn additive(&self) -> bool;
    fn delta2(&self) -> Tensor<2>;
    fn delta3(&self) -> Tensor<3>;
    fn delta4(&self) -> Tensor<4>;
    fn delta5(&self) -> Tensor<5>;
    fn branch3(&self, x: Tensor<3>, conv: &ConvArgs) -> Option<Tensor<3>>;
    fn branch4(&self, x: Tensor<4>, conv: &ConvArgs) -> Option<Tensor<4>>;
    fn branch5(&self, x: Tensor<5>, conv: &ConvArgs) -> Option<Tensor<5>>;
    fn channel_scale2(&self, v: &Tensor<2>) -> Option<Tensor<2>>;
    fn channel_scale3(&self, v: &Tensor<3>) -> Option<Tensor<3>>;
    fn channel_scale4(&self, v: &Tensor<4>) -> Option<Tensor<4>>;
    fn channel_scale5(&self, v: &Tensor<5>) -> Option<Tensor<5>>;
    fn with_base2(self: Box<Self>, base: &Tensor<2>) -> Box<dyn Erased>;
    fn with_base3(self: Box<Self>, base: &Tensor<3>) -> Box<dyn Erased>;
    fn with_base4(self: Box<Self>, base: &Tensor<4>) -> Box<dyn Erased>;
    fn with_base5(self: Box<Self>, base: &Tensor<5>) -> Box<dyn Erased>;
    fn inflate_dyn(self: Box<Self>, path: &str, to3d: &Inflater) -> Result<Box<dyn Erased>>;
    fn visit_dyn(&self, visitor: &mut dyn DynVisitor);
    fn map_dyn(self: Box<Self>, mapper: &mut dyn DynMapper) -> Box<dyn Erased>;
    fn collect_devices_dyn(&self, devices: Devices) -> Devices;
    fn to_device_dyn(self: Box<Self>, device: &Device) -> Box<dyn Erased>;
    fn fork_dyn(self: Box<Self>, device: &Device) -> Box<dyn Erased>;
    fn train_dyn(self: Box<Self>) -> Box<dyn Erased>;
    fn valid_dyn(&self) -> Box<dyn Erased>;
    fn materialize_dyn(self: Box<Self>) -> Box<dyn Erased>;
    fn clone_dyn(&self) -> Box<dyn Erased>;
    fn debug_dyn(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<A: ConvAdapter> Erased for A {
    fn variant(&self) -> ConvVariant {
        ConvVariant::of::<A>()
    }
    fn shape(&self) -> &[usize] {
        ConvAdapter::shape(self)
    }
    fn rank(&self) -> usize {
        Adapter::rank(self)
    }
    fn scale(&self) -> f64 {
        Adapter::scale(self)
    }
    fn trainable_params(&self) -> usize {
        Adapter::trainable_params(self)
    }
    fn additive(&self) -> bool {
        Adapter::additive(self)
    }
    fn delta2(&self) -> Tensor<2> {
        self.delta_weight::<2>()
    }
    fn delta3(&self) -> Tensor<3> {
        self.delta_weight::<3>()
    }
    fn delta4(&self) -> Tensor<4> {
        self.delta_weight::<4>()
    }
    fn delta5(&self) -> Tensor<5> {
        self.delta_weight::<5>()
    }
    fn branch3(&self, x: Tensor<3>, conv: &ConvArgs) -> Option<Tensor<3>> {
        self.branch::<3>(x, conv)
    }
    fn branch4(&self, x: Tensor<4>, conv: &ConvArgs) -> Option<Tensor<4>> {
        self.branch::<4>(x, conv)
    }
    fn branch5(&self, x: Tensor<5>, conv: &ConvArgs) -> Option<Tensor<5>> {
        self.branch::<5>(x, conv)
    }
    fn channel_scale2(&self, v: &Tensor<2>) -> Option<Tensor<2>> {
        self.channel_scale(v)
    }
    fn channel_scale3(&self, v: &Tensor<3>) -> Option<Tensor<3>> {
        self.channel_scale(v)
    }
    fn channel_scale4(&self, v: &Tensor<4>) -> Option<Tensor<4>> {
        self.channel_scale(v)
    }
    fn channel_scale5(&self, v: &Tensor<5>) -> Option<Tensor<5>> {
        self.channel_scale(v)
    }
    fn with_base2(self: Box<Self>, base: &Tensor<2>) -> Box<dyn Erased> {
        Box::new(Adapter::with_base(*self, base))
    }
    fn with_base3(self: Box<Self>, base: &Tensor<3>) -> Box<dyn Erased> {
        Box::new(Adapter::with_base(*self, base))
    }
    fn with_base4(self: Box<Self>, base: &Tensor<4>) -> Box<dyn Erased> {
        Box::new(Adapter::with_base(*self, base))
    }
    fn with_base5(self: Box<Self>, base: &Tensor<5>) -> Box<dyn Erased> {
        Box::new(Adapter::with_base(*self, base))
    }
    fn inflate_dyn(self: Box<Self>, path: &str, to3d: &Inflater) -> Result<Box<dyn Erased>> {
        Ok(Box::new(ConvAdapter::inflate(*self, path, to3d)?))
    }
    fn visit_dyn(&self, visitor: &mut dyn DynVisitor) {
        visitor.enter(A::NAME, CONTAINER);
        self.visit(&mut Erase(visitor));
        visitor.exit(A::NAME, CONTAINER);
    }
    fn map_dyn(self: Box<Self>, mapper: &mut dyn DynMapper) -> Box<dyn Erased> {
        mapper.enter(A::NAME, CONTAINER);
        let mapped = Module::map(*self, &mut EraseMapper(&mut *mapper));
        mapper.exit(A::NAME, CONTAINER);
        Box::new(mapped)
    }
    fn collect_devices_dyn(&self, devices: Devices) -> Devices {
        self.collect_devices(devices)
    }
    fn to_device_dyn(self: Box<Self>, device: &Device) -> Box<dyn Erased> {
        Box::new(Module::to_device(*self, device))
    }
    fn fork_dyn(self: Box<Self>, device: &Device) -> Box<dyn Erased> {
        Box::new(Module::fork(*self, device))
    }
    fn train_dyn(self: Box<Self>) -> Box<dyn Erased> {
        Box::new(Module::train(*self))
    }
    fn valid_dyn(&self) -> Box<dyn Erased> {
        Box::new(Module::valid(self))
    }
    fn materialize_dyn(self: Box<Self>) -> Box<dyn Erased> {
        Box::new(Module::materialize(*self))
    }
    fn clone_dyn(&self) -> Box<dyn Erased> {
        Box::new(self.clone())
    }
    fn debug_dyn(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

impl Clone for AnyAdapter {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone_dyn(),
            transposed: self.transposed,
        }
    }
}

impl fmt::Debug for AnyAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyAdapter({}", self.inner.variant())?;
        if self.transposed {
            write!(f, ", linear")?;
        }
        write!(f, ": ")?;
        self.inner.debug_dyn(f)?;
        write!(f, ")")
    }
}

impl Module for AnyAdapter {
    fn collect_devices(&self, devices: Devices) -> Devices {
        self.inner.collect_devices_dyn(devices)
    }

    fn fork(self, device: &Device) -> Self {
        Self {
            inner: self.inner.fork_dyn(device),
            ..self
        }
    }

    fn to_device(self, device: &Device) -> Self {
        Self {
            inner: self.inner.to_device_dyn(device),
            ..self
        }
    }

    fn train(self) -> Self {
        Self {
            inner: self.inner.train_dyn(),
            ..self
        }
    }

    fn valid(&self) -> Self {
        Self {
            inner: self.inner.valid_dyn(),
            transposed: self.transposed,
        }
    }

    fn materialize(self) -> Self {
        Self {
            inner: self.inner.materialize_dyn(),
            ..self
        }
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        self.inner.visit_dyn(&mut Restore(visitor));
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        Self {
            inner: self.inner.map_dyn(&mut RestoreMapper(mapper)),
            ..self
        }
    }
}

impl ModuleDisplayDefault for AnyAdapter {
    fn content(&self, content: Content) -> Option<Content> {
        let mut content = content
            .set_top_level_type("AnyAdapter")
            .add_debug_attribute("type", &self.inner.variant())
            .add_debug_attribute("rank", &self.inner.rank())
            .add_debug_attribute("scale", &self.inner.scale())
            .add_debug_attribute("shape", &self.inner.shape());
        if self.transposed {
            content = content.add_debug_attribute("linear", &true);
        }
        content.optional()
    }
}

impl ModuleDisplay for AnyAdapter {}

impl Adapter for AnyAdapter {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn scale(&self) -> f64 {
        self.inner.scale()
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        if self.transposed {
            return same_rank(self.inner.delta2().transpose());
        }
        match D {
            2 => same_rank(self.inner.delta2()),
            3 => same_rank(self.inner.delta3()),
            4 => same_rank(self.inner.delta4()),
            _ => same_rank(self.inner.delta5()),
        }
    }

    fn trainable_params(&self) -> usize {
        self.inner.trainable_params()
    }

    fn additive(&self) -> bool {
        self.inner.additive()
    }

    fn channel_scale<const D: usize>(&self, adapted: &Tensor<D>) -> Option<Tensor<D>> {
        if self.transposed {
            // The adapter sees the PyTorch layout [out, in]; its [out, 1] comes back as [1, out].
            let v: Tensor<2> = same_rank(adapted.clone()).transpose();
            return self
                .inner
                .channel_scale2(&v)
                .map(|s| same_rank::<2, D>(s.transpose()));
        }
        match D {
            2 => self
                .inner
                .channel_scale2(&same_rank(adapted.clone()))
                .map(same_rank),
            3 => self
                .inner
                .channel_scale3(&same_rank(adapted.clone()))
                .map(same_rank),
            4 => self
                .inner
                .channel_scale4(&same_rank(adapted.clone()))
                .map(same_rank),
            5 => self
                .inner
                .channel_scale5(&same_rank(adapted.clone()))
                .map(same_rank),
            _ => None,
        }
    }

    fn with_base<const D: usize>(self, base: &Tensor<D>) -> Self {
        let inner = if self.transposed {
            let w: Tensor<2> = same_rank::<D, 2>(base.clone()).transpose();
            self.inner.with_base2(&w)
        } else {
            match D {
                2 => self.inner.with_base2(&same_rank(base.clone())),
                3 => self.inner.with_base3(&same_rank(base.clone())),
                4 => self.inner.with_base4(&same_rank(base.clone())),
                5 => self.inner.with_base5(&same_rank(base.clone())),
                _ => self.inner,
            }
        };
        Self { inner, ..self }
    }
}

/// Builds the chosen adapter type for every targeted conv kernel (3-, 4- and 5-D weights) and,
/// for 2-D `Linear` weights, the same type when it adapts linear weights
/// ([`ConvVariant::adapts_linear`]) or plain LoRA otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvFactory {
    /// The adapter type.
    pub variant: ConvVariant,
}

impl ConvFactory {
    /// A factory for `variant`.
    pub fn new(variant: ConvVariant) -> Self {
        Self { variant }
    }
}

impl AdapterFactory for ConvFactory {
    type Adapter = AnyAdapter;

    fn build(
        &self,
        path: &str,
        shape: &[usize],
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<AnyAdapter> {
        match shape {
            [d_in, d_out] => {
                let variant = if self.variant.adapts_linear() {
                    self.variant
                } else {
                    ConvVariant::LoCon
                };
                let adapter = variant.build(path, &[*d_out, *d_in], spec, device)?;
                Ok(AnyAdapter {
                    transposed: true,
                    ..adapter
                })
            }
            _ if (3..=5).contains(&shape.len()) => self.variant.build(path, shape, spec, device),
            _ => Err(LoraError::UnsupportedGeometry {
                path: path.to_string(),
                reason: format!(
                    "no adapter for a {}-D weight {shape:?}: linear weights are 2-D, conv kernels \
                     3- to 5-D",
                    shape.len()
                ),
            }),
        }
    }
}

/// A [`LoraConfig`] that targets every weight of every Linear and Conv1d/2d/3d (tensor ranks 2
/// to 5); narrow it with `with_targets`.
pub fn conv_config(rank: usize, alpha: f64) -> LoraConfig {
    LoraConfig::new(rank, alpha).with_tensor_ranks(vec![2, 3, 4, 5])
}
