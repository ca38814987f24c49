//! Module traversal across a type-erased boundary.
//!
//! burn's [`ModuleVisitor`] and [`ModuleMapper`] have const-generic methods, so a module behind
//! a trait object cannot be visited directly. This file carries a traversal across that
//! boundary in both directions, once for the whole workspace:
//!
//! - [`Erase`] / [`EraseMapper`] turn a generic visitor or mapper into calls on the object-safe
//!   [`DynVisitor`] / [`DynMapper`], with each parameter's tensor rank as a runtime value;
//! - [`Restore`] / [`RestoreMapper`] turn those calls back into the generic methods of the
//!   original visitor or mapper.
//!
//! So a boxed module implements `visit_dyn(&self, &mut dyn DynVisitor)` as
//! `self.visit(&mut Erase(visitor))`, and its owner implements `Module::visit` as
//! `inner.visit_dyn(&mut Restore(visitor))`. Parameters of tensor rank 1 to 8 cross (burn's own
//! limit for reparameterized weights); a parameter of another rank is not reported to the
//! visitor and passes a mapper unchanged.

use std::any::Any;

use burn::module::{Flag, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Bool, Int, Tensor};

/// The kind of tensor a crossing parameter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// `Param<Tensor<D>>`.
    Float,
    /// `Param<Tensor<D, Int>>`.
    Int,
    /// `Param<Tensor<D, Bool>>`.
    Bool,
}

/// An object-safe module visitor: parameters arrive as `&dyn Any` with their rank.
pub trait DynVisitor {
    /// A parameter of `kind` and tensor rank `rank`; `param` is a `Param<Tensor<rank, ..>>`.
    fn param(&mut self, kind: ParamKind, rank: usize, param: &dyn Any);
    /// A flag parameter.
    fn flag(&mut self, flag: &Param<Flag>);
    /// As [`ModuleVisitor::enter_module`].
    fn enter(&mut self, name: &str, container_type: &str);
    /// As [`ModuleVisitor::exit_module`].
    fn exit(&mut self, name: &str, container_type: &str);
}

/// An object-safe module mapper: parameters cross as `Box<dyn Any>` with their rank, and must
/// come back as the same type.
pub trait DynMapper {
    /// Map a parameter of `kind` and tensor rank `rank`.
    fn param(
        &mut self,
        kind: ParamKind,
        rank: usize,
        param: Box<dyn Any + Send>,
    ) -> Box<dyn Any + Send>;
    /// Map a flag parameter.
    fn flag(&mut self, flag: Param<Flag>) -> Param<Flag>;
    /// As [`ModuleMapper::enter_module`].
    fn enter(&mut self, name: &str, container_type: &str);
    /// As [`ModuleMapper::exit_module`].
    fn exit(&mut self, name: &str, container_type: &str);
}

/// A generic visitor over an object-safe one (use inside the boxed module).
pub struct Erase<'a>(pub &'a mut dyn DynVisitor);

impl ModuleVisitor for Erase<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.param(ParamKind::Float, D, param);
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.0.param(ParamKind::Int, D, param);
    }

    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.0.param(ParamKind::Bool, D, param);
    }

    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.0.flag(flag);
    }

    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter(name, container_type);
    }

    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit(name, container_type);
    }
}

/// Calls `$body` with `$d` bound, as a constant, to the runtime rank `$rank` (1 to 8), or
/// evaluates `$other` for any other rank.
macro_rules! with_rank {
    ($rank:expr, $d:ident => $body:expr, _ => $other:expr) => {
        match $rank {
            1 => {
                const $d: usize = 1;
                $body
            }
            2 => {
                const $d: usize = 2;
                $body
            }
            3 => {
                const $d: usize = 3;
                $body
            }
            4 => {
                const $d: usize = 4;
                $body
            }
            5 => {
                const $d: usize = 5;
                $body
            }
            6 => {
                const $d: usize = 6;
                $body
            }
            7 => {
                const $d: usize = 7;
                $body
            }
            8 => {
                const $d: usize = 8;
                $body
            }
            _ => $other,
        }
    };
}

/// An object-safe visitor over a generic one (use in the owner's `Module::visit`).
pub struct Restore<'a, V>(pub &'a mut V);

impl<V: ModuleVisitor> DynVisitor for Restore<'_, V> {
    fn param(&mut self, kind: ParamKind, rank: usize, param: &dyn Any) {
        with_rank!(rank, D => match kind {
            ParamKind::Float => {
                if let Some(p) = param.downcast_ref::<Param<Tensor<D>>>() {
                    self.0.visit_float(p);
                }
            }
            ParamKind::Int => {
                if let Some(p) = param.downcast_ref::<Param<Tensor<D, Int>>>() {
                    self.0.visit_int(p);
                }
            }
            ParamKind::Bool => {
                if let Some(p) = param.downcast_ref::<Param<Tensor<D, Bool>>>() {
                    self.0.visit_bool(p);
                }
            }
        }, _ => ())
    }

    fn flag(&mut self, flag: &Param<Flag>) {
        self.0.visit_flag(flag);
    }

    fn enter(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }

    fn exit(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
}

/// A generic mapper over an object-safe one (use inside the boxed module).
pub struct EraseMapper<'a>(pub &'a mut dyn DynMapper);

impl EraseMapper<'_> {
    /// Send `param` across and take it back; a mapper that returned another type (a broken
    /// [`DynMapper`]) leaves the parameter as it was.
    fn cross<P: Any + Send + Clone>(&mut self, kind: ParamKind, rank: usize, param: P) -> P {
        let kept = param.clone();
        match self.0.param(kind, rank, Box::new(param)).downcast::<P>() {
            Ok(mapped) => *mapped,
            Err(_) => kept,
        }
    }
}

impl ModuleMapper for EraseMapper<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter(name, container_type);
    }

    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit(name, container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.cross(ParamKind::Float, D, param)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        self.cross(ParamKind::Int, D, param)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        self.cross(ParamKind::Bool, D, param)
    }

    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        self.0.flag(flag)
    }
}

/// An object-safe mapper over a generic one (use in the owner's `Module::map`).
pub struct RestoreMapper<'a, M>(pub &'a mut M);

/// Map a boxed `P` with `f`, or hand the box back unchanged if it holds something else.
fn map_boxed<P: Any + Send>(
    param: Box<dyn Any + Send>,
    f: impl FnOnce(P) -> P,
) -> Box<dyn Any + Send> {
    match param.downcast::<P>() {
        Ok(p) => Box::new(f(*p)),
        Err(other) => other,
    }
}

impl<M: ModuleMapper> DynMapper for RestoreMapper<'_, M> {
    fn param(
        &mut self,
        kind: ParamKind,
        rank: usize,
        param: Box<dyn Any + Send>,
    ) -> Box<dyn Any + Send> {
        let mapper = &mut *self.0;
        with_rank!(rank, D => match kind {
            ParamKind::Float => map_boxed::<Param<Tensor<D>>>(param, |p| mapper.map_float(p)),
            ParamKind::Int => map_boxed::<Param<Tensor<D, Int>>>(param, |p| mapper.map_int(p)),
            ParamKind::Bool => map_boxed::<Param<Tensor<D, Bool>>>(param, |p| mapper.map_bool(p)),
        }, _ => param)
    }

    fn flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        self.0.map_flag(flag)
    }

    fn enter(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }

    fn exit(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
}
