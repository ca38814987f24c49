//! Counting total and trainable parameters of any module.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Parameter counts of a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ParamCounts {
    /// Every float parameter, adapter factors included.
    pub total: usize,
    /// Those that receive gradients when training.
    pub trainable: usize,
    /// Those that belong to adapters (the factors), trainable or not.
    pub adapter: usize,
}

impl ParamCounts {
    /// `trainable / total`, or 0 for an empty module.
    pub fn trainable_fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.trainable as f64 / self.total as f64
        }
    }
}

/// Count total, trainable and adapter parameters of any module.
///
/// Trainability is what `Module::train` restores: a parameter counts as trainable when it will
/// require gradients on an autodiff device, whatever device the module is on now.
pub fn param_counts<M: Module>(module: &M) -> ParamCounts {
    let mut counter = Counter::default();
    module.clone().train().visit(&mut counter);
    counter.counts
}

#[derive(Default)]
struct Counter {
    at: crate::Position,
    counts: ParamCounts,
}

impl ModuleVisitor for Counter {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let n = param.lazy_shape().num_elements();
        self.counts.total += n;
        if !self.at.outside() {
            self.counts.adapter += n;
        }
        if param.is_require_grad() {
            self.counts.trainable += n;
        }
    }
}
