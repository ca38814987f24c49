//! [`AnyAdapter`], the one carrier of every adapter type: a burn module and a
//! [`lora_core::Adapter`] that boxes any registered [`ConvAdapter`] (through the plumbing of
//! [`crate::erased`]) and, for a `Linear` weight, transposes its update into burn's layout.

use std::fmt;

use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
use burn::tensor::{Device, Tensor};
use lora_core::erased::{Restore, RestoreMapper};
use lora_core::{Adapter, AdapterSpec, LoraError, Result};

use crate::adapter::{ConvAdapter, ConvArgs, Inflater};
use crate::erased::Erased;
use crate::functional::conv::same_rank;
use crate::variant::ConvVariant;

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
    variant: ConvVariant,
    transposed: bool,
}

impl AnyAdapter {
    /// Carry `adapter`, whose update has the adapted weight's layout.
    pub fn new<A: ConvAdapter>(adapter: A) -> Self {
        Self {
            inner: Box::new(adapter),
            variant: ConvVariant::of::<A>(),
            transposed: false,
        }
    }

    /// Carry `adapter`, built on the PyTorch layout `[out, in]` of a `Linear` weight that burn
    /// stores as `[in, out]`: its update is transposed.
    pub fn linear<A: ConvAdapter>(adapter: A) -> Self {
        Self {
            inner: Box::new(adapter),
            variant: ConvVariant::of::<A>(),
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
        self.variant
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
            ..self
        })
    }
}

impl Clone for AnyAdapter {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone_dyn(),
            variant: self.variant,
            transposed: self.transposed,
        }
    }
}

impl fmt::Debug for AnyAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnyAdapter({}", self.variant)?;
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
            variant: self.variant,
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
            .add_debug_attribute("type", &self.variant)
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

impl ConvVariant {
    /// Build a fresh adapter for a weight of shape `[t, c, k..]` (PyTorch layout).
    ///
    /// State that depends on the pretrained weight (DoRA's magnitude) is not set here: `attach`
    /// and [`crate::LoraConv::new`] call [`lora_core::Adapter::with_base`] on what this builds.
    ///
    /// # Errors
    /// The type's own errors for this rank and shape, naming `path`.
    pub fn build(
        self,
        path: &str,
        shape: &[usize],
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<AnyAdapter> {
        Ok(AnyAdapter {
            inner: self.build_erased(path, shape, spec, device)?,
            variant: self,
            transposed: false,
        })
    }
}
