//! Helpers for tests, examples and benchmarks.

use std::any::Any;
use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Distribution, Tensor};

/// Replace every adapter factor of `model` by draws from `N(0, std²)`, keeping ids and
/// trainability. Adapters start with a zero output factor, so this is how a test gets an
/// adapter that visibly changes the output. Seed the device first for reproducible draws.
pub fn randomize_adapters<M: Module>(model: M, std: f64) -> M {
    struct Randomize {
        std: f64,
        at: crate::Position,
    }
    impl ModuleMapper for Randomize {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.at.outside() {
                return param;
            }
            let std = self.std;
            param.map(|old| {
                let require_grad = old.is_require_grad();
                Tensor::random(old.shape(), Distribution::Normal(0.0, std), &old.device())
                    .set_require_grad(require_grad)
            })
        }
    }
    model.map(&mut Randomize {
        std,
        at: crate::Position::default(),
    })
}

/// `into` with the adapter factors of `from` (matched by parameter path), and everything else
/// (base weights, merge flags, other parameters) left as it is in `into`.
///
/// This is "load other factors" on a resident base, without going through a record (a record
/// would also overwrite the base and the merge flag). Factors of `into` that `from` does not
/// have, or has with another shape, are kept.
pub fn copy_adapter_factors<M: Module>(into: M, from: &M) -> M {
    #[derive(Default)]
    struct Collect {
        at: crate::Position,
        out: HashMap<String, Box<dyn Any + Send>>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !self.at.outside() {
                self.out.insert(self.at.path(), Box::new(param.val()));
            }
        }
    }
    struct Replace {
        at: crate::Position,
        factors: HashMap<String, Box<dyn Any + Send>>,
    }
    impl ModuleMapper for Replace {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.at.enter(name, container_type);
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            self.at.exit(container_type);
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.at.outside() {
                return param;
            }
            let Some(new) = self
                .factors
                .remove(&self.at.path())
                .and_then(|b| b.downcast::<Tensor<D>>().ok())
            else {
                return param;
            };
            param.map(|old| {
                if old.shape() != new.shape() {
                    return old;
                }
                let require_grad = old.is_require_grad();
                new.detach().set_require_grad(require_grad)
            })
        }
    }
    let mut collect = Collect::default();
    from.visit(&mut collect);
    into.map(&mut Replace {
        at: crate::Position::default(),
        factors: collect.out,
    })
}

/// Largest absolute difference between two tensors, and the largest absolute value of `b`.
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> (f32, f32) {
    let scale = b.clone().abs().max().into_scalar::<f32>();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    (diff, scale)
}

/// The tolerance of [`assert_close`]: `|a − b|_max ≤ max(rel · |b|_max, abs)`.
///
/// `rel` is relative to the largest magnitude of the expected tensor `b` (a norm-wise relative
/// error, not an element-wise one); `abs` is an absolute floor, which is what applies when `b`
/// is small. Name both at every call, e.g. `Tol { rel: 1e-5, abs: 1e-6 }`, so that a reader
/// sees what is really asserted. `Tol { rel: 0.0, abs: 0.0 }` ([`Tol::EXACT`]) asks for
/// bit-equal values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tol {
    /// Relative tolerance, a multiple of `|b|_max`.
    pub rel: f32,
    /// Absolute floor.
    pub abs: f32,
}

impl Tol {
    /// Equal values.
    pub const EXACT: Tol = Tol { rel: 0.0, abs: 0.0 };

    /// The largest allowed `|a − b|_max` when `|b|_max = scale`.
    pub fn bound(&self, scale: f32) -> f32 {
        (self.rel * scale).max(self.abs)
    }
}

/// A bare number `x` is the tolerance `assert_close` used to have, `x · max(|b|_max, 1)`:
/// relative `x` with an absolute floor of the same `x`. It is kept so that older callers still
/// compile; new code names both parts with [`Tol`].
impl From<f32> for Tol {
    fn from(x: f32) -> Self {
        Tol { rel: x, abs: x }
    }
}

/// See `From<f32>`.
impl From<f64> for Tol {
    fn from(x: f64) -> Self {
        Tol::from(x as f32)
    }
}

/// Whether `a ≈ b` within `tol`; the error says by how much they differ, and mentions `what`.
///
/// Tensors of different shapes are never close (no broadcasting); a NaN anywhere in `a − b`
/// fails (an infinity in both at the same place gives NaN there, so it fails too).
///
/// # Errors
/// A message with the difference, the bound and both of its parts.
pub fn check_close<const D: usize>(
    a: Tensor<D>,
    b: Tensor<D>,
    tol: impl Into<Tol>,
    what: &str,
) -> Result<(), String> {
    let tol = tol.into();
    let (sa, sb) = (a.shape(), b.shape());
    if sa != sb {
        return Err(format!("{what}: shapes differ: {sa:?} vs {sb:?}"));
    }
    let scale = b.clone().abs().max().into_scalar::<f32>();
    let delta = a - b;
    let nan = delta.clone().is_nan().any().into_scalar::<bool>();
    let diff = delta.abs().max().into_scalar::<f32>();
    let bound = tol.bound(scale);
    if nan || diff.is_nan() || diff > bound {
        return Err(format!(
            "{what}: max |a-b| = {diff:e} exceeds max({:e} x max|b| = {:e}, {:e}) = {bound:e}",
            tol.rel,
            tol.rel * scale,
            tol.abs
        ));
    }
    Ok(())
}

/// Assert `a ≈ b`: same shape and `|a − b|_max ≤ max(tol.rel · |b|_max, tol.abs)`.
///
/// Pass a [`Tol`] naming both parts. A bare number `x` means `Tol { rel: x, abs: x }`, i.e.
/// `x · max(|b|_max, 1)` (the old behaviour, kept for existing callers): an *absolute*
/// tolerance `x` whenever `|b|_max < 1`.
///
/// # Panics
/// When they are not close; the message gives the numbers and `what`.
pub fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, tol: impl Into<Tol>, what: &str) {
    if let Err(message) = check_close(a, b, tol, what) {
        panic!("{message}");
    }
}
