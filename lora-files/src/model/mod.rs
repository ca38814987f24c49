//! Adapter files onto a burn model, and a model's adapters back into a file.
//!
//! PyTorch module paths (`block.0`) map to burn module paths by [`PathMap`]: regex rewrites
//! applied in order, as burn-store's `KeyRemapper` does for whole checkpoints; the default is
//! the identity, so `block.0.weight` adapts burn's `block.0.weight`. Adapters of `Linear`
//! weights are built on the PyTorch layout `[out, in]` and their update is transposed into
//! burn's `[d_in, d_out]` by the carrier.
//!
//! The adapters land on the model through [`lora_core::attach()`], as `lora_conv::AnyAdapter`s
//! carrying the file's own scale, so merge, unmerge, training and records work on them as on
//! any other. LoCon (LoRA), Tucker-2, CP, LoHa, LoHa-Tucker, LoKr, DoRA (per
//! output channel) and any type registered with `lora_conv` have trainable module types; LoKr
//! with a Tucker core and LyCORIS's per-input-channel DoRA do not, and a file holding them is refused
//! by layer (merge them into the base with [`crate::merge::merge`] instead).

use regex::Regex;

use crate::error::{FileError, Result};
use crate::state_dict::StateDict;

mod attach;
mod export;
mod extras;
mod foreign;
pub use attach::attach_file;
pub use export::{file_from_model, file_from_model_with};
pub use extras::RunningStats;

/// Regex rewrites of module paths, applied in order (each to the result of the last).
#[derive(Debug, Clone, Default)]
pub struct PathMap {
    rules: Vec<(Regex, String)>,
}

impl PathMap {
    /// The identity.
    pub fn identity() -> Self {
        Self::default()
    }

    /// Add a rewrite `from` (a regex) -> `to` (with `$1`-style groups).
    ///
    /// # Errors
    /// [`FileError::Config`] naming the pattern when it does not compile.
    pub fn rule(mut self, from: &str, to: &str) -> Result<Self> {
        let re = Regex::new(from).map_err(|e| FileError::Config {
            file: "path map".to_string(),
            field: "from".to_string(),
            value: format!("{from:?}"),
            why: e.to_string(),
        })?;
        self.rules.push((re, to.to_string()));
        Ok(self)
    }

    /// `path` rewritten.
    pub fn apply(&self, path: &str) -> String {
        self.rules.iter().fold(path.to_string(), |p, (re, to)| {
            re.replace_all(&p, to.as_str()).into_owned()
        })
    }
}

fn store_error(what: &str, e: impl std::fmt::Debug) -> FileError {
    FileError::Io {
        file: "burn-store".to_string(),
        reason: format!("{what}: {e:?}"),
    }
}

/// Rewrite the module part (all but the last segment) of each key with `map`.
fn rename_modules(dict: StateDict, map: &PathMap) -> StateDict {
    let tensors = dict
        .tensors
        .into_iter()
        .map(|(k, v)| match k.rsplit_once('.') {
            Some((module, name)) => (format!("{}.{name}", map.apply(module)), v),
            None => (k, v),
        })
        .collect();
    StateDict {
        tensors,
        metadata: dict.metadata,
    }
}
