//! Adapters of other libraries on a burn model: burn's own LoRA (`Module::apply_lora`), which
//! this crate neither reads nor writes.
//!
//! burn 0.22 attaches its LoRA as a reparameterization named `lora`, the name this workspace's
//! [`lora_core::LoraParam`] has too; what tells them apart is burn's adapter module,
//! `burn::module::LoraAdapter` (factors `a [d_in, r]`, `b [r, d_out]`, its scale a plain
//! number that visitors never see).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use lora_core::Position;

use crate::error::FileError;

/// The container type burn's derive gives the fields of its `LoraAdapter`.
const BURN_LORA: &str = "Struct:LoraAdapter";

/// Finds the weights that carry burn's own LoRA.
#[derive(Default)]
struct Finder {
    at: Position,
    /// The path of the last base weight visited outside any reparameterization.
    base: Option<String>,
    found: Vec<String>,
}

impl ModuleVisitor for Finder {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
        if container_type == BURN_LORA
            && !self.at.outside()
            && let Some(base) = self.base.take()
        {
            self.found.push(base);
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<D>>) {
        if self.at.outside() {
            self.base = Some(self.at.path());
        }
    }
}

/// The burn paths of the weights of `model` that carry burn's own LoRA, in visiting order.
fn burn_lora_paths<M: Module>(model: &M) -> Vec<String> {
    let mut finder = Finder::default();
    model.visit(&mut finder);
    finder.found
}

/// Refuse a model that carries burn's own LoRA, for `what` (the operation, e.g. "attaching an
/// adapter file").
///
/// # Errors
/// [`FileError::Config`] naming the weights that carry it.
pub(crate) fn refuse_burn_lora<M: Module>(model: &M, what: &str) -> Result<(), FileError> {
    let paths = burn_lora_paths(model);
    if paths.is_empty() {
        return Ok(());
    }
    Err(FileError::Config {
        file: "model".to_string(),
        field: "adapted parameter".to_string(),
        value: paths.join(", "),
        why: format!(
            "{what}: the model carries burn's own LoRA (Module::apply_lora), which this crate \
             does not read or write, and burn does not nest reparameterizations; start from the \
             model without it (burn's LoRA and this workspace's linear LoCon are the same \
             update: attach with lora_conv::ConvFactory instead)"
        ),
    })
}
