//! The type-erasure plumbing of [`AnyAdapter`](crate::AnyAdapter): `Erased`, what the
//! carrier needs from the adapter it boxes, object-safe, implemented for every
//! [`ConvAdapter`]. Generic methods (`delta_weight::<D>`, `branch::<N>`, burn's module
//! traversal) are monomorphised here for the ranks a carrier meets (2 to 5), and burn's visitor
//! and mapper cross the box through [`lora_core::erased`].
//!
//! Below the carrier and the registry: it imports neither.

use std::any::Any;
use std::fmt;

use burn::module::{Devices, Module};
use burn::tensor::{Device, Tensor};
use lora_core::erased::{DynMapper, DynVisitor, Erase, EraseMapper};
use lora_core::{Adapter, AdapterSpec, Result};

use crate::adapter::{ConvAdapter, ConvArgs, Inflater};

/// The container type the carrier reports to visitors when it enters its adapter (whose
/// name, [`ConvAdapter::NAME`], is the path segment: `weight.lora.adapter.locon.down`).
pub const CONTAINER: &str = "AnyAdapter";

/// What a registered type's handle builds with: [`build`] for that type.
pub(crate) type Build = fn(&str, &[usize], &AdapterSpec, &Device) -> Result<Box<dyn Erased>>;

/// A fresh `A` for a weight of `shape`, boxed (what a registered type's handle builds).
///
/// # Errors
/// `A`'s own errors for this rank and shape, naming `path`.
pub(crate) fn build<A: ConvAdapter>(
    path: &str,
    shape: &[usize],
    spec: &AdapterSpec,
    device: &Device,
) -> Result<Box<dyn Erased>> {
    Ok(Box::new(A::new(path, shape, spec, device)?))
}

/// What [`AnyAdapter`](crate::AnyAdapter) needs from the adapter it carries, object-safe; implemented for every
/// [`ConvAdapter`].
pub(crate) trait Erased: Send + Sync {
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
