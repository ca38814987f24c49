//! Where a module visitor or mapper is: written once for every traversal of the workspace.
//!
//! burn hands a visitor an adapted weight's base first, then enters a container of type
//! `"Reparameterization"` holding the adapter's own state (factors, the merge flag, the scale).
//! Every traversal here needs to know the path of names from the root and whether it is inside
//! such a container; [`Position`] tracks both.

/// The container type burn gives a parameter's reparameterization.
pub const REPARAMETERIZATION: &str = "Reparameterization";

/// The path of module names from the root and the depth inside reparameterizations (0: the
/// model's own parameters; 1: an adapter's state).
#[derive(Debug, Clone, Default)]
pub struct Position {
    names: Vec<String>,
    depth: usize,
}

impl Position {
    /// Call from `enter_module`. Returns whether this enters the reparameterization of a model
    /// parameter (depth 0 -> 1): the base was the last parameter visited.
    pub fn enter(&mut self, name: &str, container_type: &str) -> bool {
        let entered = container_type == REPARAMETERIZATION && self.depth == 0;
        if container_type == REPARAMETERIZATION {
            self.depth += 1;
        }
        self.names.push(name.to_string());
        entered
    }

    /// Call from `exit_module`.
    pub fn exit(&mut self, container_type: &str) {
        if container_type == REPARAMETERIZATION {
            self.depth = self.depth.saturating_sub(1);
        }
        self.names.pop();
    }

    /// Depth inside reparameterizations (0 outside any).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Whether the traversal is at the model's own parameters (outside any adapter).
    pub fn outside(&self) -> bool {
        self.depth == 0
    }

    /// The dotted path, e.g. `blocks.0.conv.weight.lora.adapter.Hf.down`.
    pub fn path(&self) -> String {
        self.names.join(".")
    }

    /// The names from the root.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The innermost name.
    pub fn last(&self) -> Option<&str> {
        self.names.last().map(String::as_str)
    }
}
