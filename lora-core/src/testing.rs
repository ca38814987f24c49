//! Helpers for tests, examples and benchmarks.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Distribution, Tensor};

/// Replace every adapter factor of `model` by draws from `N(0, std²)`, keeping ids and
/// trainability. Adapters start with a zero output factor, so this is how a test gets an
/// adapter that visibly changes the output. Seed the device first for reproducible draws.
pub fn randomize_adapters<M: Module>(model: M, std: f64) -> M {
    struct Randomize {
        std: f64,
        depth: usize,
    }
    impl ModuleMapper for Randomize {
        fn enter_module(&mut self, _name: &str, container_type: &str) {
            if container_type == "Reparameterization" {
                self.depth += 1;
            }
        }
        fn exit_module(&mut self, _name: &str, container_type: &str) {
            if container_type == "Reparameterization" {
                self.depth -= 1;
            }
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.depth == 0 {
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
    model.map(&mut Randomize { std, depth: 0 })
}

/// Largest absolute difference between two tensors, and the largest absolute value of `b`.
pub fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> (f32, f32) {
    let scale = b.clone().abs().max().into_scalar::<f32>();
    let diff = (a - b).abs().max().into_scalar::<f32>();
    (diff, scale)
}

/// Assert `a ≈ b` with `|a − b|_max ≤ rtol · max(|b|_max, 1)`.
///
/// # Panics
/// When the tensors differ by more than that; the message gives both numbers and `what`.
pub fn assert_close<const D: usize>(a: Tensor<D>, b: Tensor<D>, rtol: f32, what: &str) {
    let (diff, scale) = max_abs_diff(a, b);
    assert!(
        diff <= rtol * scale.max(1.0),
        "{what}: max |a-b| = {diff:e} exceeds {rtol:e} x max(|b|, 1) = {:e}",
        rtol * scale.max(1.0)
    );
}
