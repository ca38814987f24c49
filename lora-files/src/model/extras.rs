//! What a model holds besides its adapter factors, as whole-tensor entries of an adapter file:
//! the trainable extras (a new head, BatchNorm affine) and BatchNorm running statistics.
//!
//! burn's `BatchNorm` keeps its running mean and variance as buffers (`RunningState`), not
//! trainable parameters, and updates them in every training-mode forward. A method that trains
//! with batch statistics therefore changes them even when every BatchNorm parameter is frozen,
//! and a file without them does not reproduce the model it was saved from.

use std::collections::{BTreeMap, BTreeSet};

use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use safetensors::Dtype;

use super::{PathMap, rename_modules, store_error};
use crate::error::{FileError, Result};
use crate::state_dict::{StateDict, Stored};

/// Which BatchNorm running statistics [`super::file_from_model_with`] saves.
///
/// A BatchNorm whose statistics are saved is saved whole, in PyTorch's names, as PEFT's
/// `modules_to_save` needs it: `weight`, `bias`, `running_mean`, `running_var` and
/// `num_batches_tracked` (burn does not count batches: the base's counter when
/// [`RunningStats::ChangedFrom`] has one, else 0; PyTorch reads it only when `momentum` is
/// `None`).
#[derive(Debug, Clone, Copy, Default)]
pub enum RunningStats<'a> {
    /// Every BatchNorm's (the default of [`super::file_from_model`]): the file reproduces the
    /// model whatever training did to its statistics.
    #[default]
    All,
    /// Only the BatchNorms whose running mean or variance differs, bit for bit, from the entry
    /// of the same PyTorch name (after the path map) in this base state dict. A file that
    /// carries no statistic can also be written as LyCORIS.
    ChangedFrom(&'a StateDict),
    /// None: the file reproduces the model only if its statistics are still the base's.
    None,
}

/// Whether the model's devices record gradients (its parameters are trainable at all).
fn is_autodiff<M: Module>(model: &M) -> bool {
    model.devices().iter().any(|d| d.is_autodiff())
}

/// A copy of `model` that shares no running statistics with it. burn's `RunningState` is shared
/// between clones, so loading statistics into a plain clone would write them into the
/// caller's model too; `valid` makes new ones (and `train` restores an autodiff model's
/// trainability, parameter ids and flags).
pub(super) fn unshared<M: Module>(model: &M) -> M {
    let copy = model.valid();
    if is_autodiff(model) {
        copy.train()
    } else {
        copy
    }
}

/// The model's state in PyTorch names and layouts (burn-store's adapter transposes Linear
/// weights and renames BatchNorm gamma/beta), module names rewritten by `back`.
///
/// Saved from `model.valid()`: a `RunningState` holds its last update aside until it is
/// synchronised, and a visitor of the model itself would read the statistics from one step
/// before; `valid` synchronises them, as evaluation does.
fn pytorch_dict<M: Module>(model: &M, back: &PathMap) -> Result<StateDict> {
    let what = "saving the model's extras";
    let mut store = SafetensorsStore::from_bytes(None).with_to_adapter(BurnToPyTorchAdapter);
    model
        .valid()
        .save_into(&mut store)
        .map_err(|e| store_error(what, e))?;
    let bytes = store.get_bytes().map_err(|e| store_error(what, e))?;
    Ok(rename_modules(StateDict::from_bytes(what, &bytes)?, back))
}

/// The modules of `dict` that are BatchNorms: they hold a running mean and a running variance.
fn batch_norms(dict: &StateDict) -> Vec<String> {
    dict.tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".running_mean"))
        .filter(|m| dict.tensors.contains_key(&format!("{m}.running_var")))
        .map(str::to_string)
        .collect()
}

/// Whether BatchNorm `module`'s statistics in `model` differ from `base`'s.
fn changed(model: &StateDict, base: &StateDict, module: &str) -> Result<bool> {
    for name in ["running_mean", "running_var"] {
        let key = format!("{module}.{name}");
        let theirs = base
            .tensors
            .get(&key)
            .ok_or_else(|| FileError::MissingKey {
                file: "base state dict".to_string(),
                key: key.clone(),
                why: "the model has this BatchNorm statistic (check the path map)".to_string(),
            })?;
        let ours = model.tensors.get(&key).and_then(Stored::to_f32);
        if ours.is_none() || ours != theirs.to_f32() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The trainable extras at burn paths `trainable` and the running statistics `stats` asks for,
/// in PyTorch names and layouts, keyed by `back`'s module names.
///
/// # Errors
/// [`FileError::Io`] when burn-store cannot save the model or leaves out a listed parameter;
/// [`FileError::MissingKey`] when [`RunningStats::ChangedFrom`]'s base lacks a statistic the
/// model has.
pub(super) fn extras<M: Module>(
    model: &M,
    trainable: &[String],
    back: &PathMap,
    stats: RunningStats<'_>,
) -> Result<BTreeMap<String, Stored>> {
    let with_stats = !matches!(stats, RunningStats::None);
    if trainable.is_empty() && !with_stats {
        return Ok(BTreeMap::new());
    }
    let dict = pytorch_dict(model, back)?;
    // burn-store names a BatchNorm's gamma and beta `weight` and `bias` in PyTorch layout; keep
    // exactly the listed parameters under those names.
    let mut wanted: BTreeSet<String> = trainable
        .iter()
        .filter_map(|p| p.rsplit_once('.'))
        .map(|(module, name)| {
            let name = match name {
                "gamma" => "weight",
                "beta" => "bias",
                other => other,
            };
            format!("{}.{name}", back.apply(module))
        })
        .collect();
    let mut counters = BTreeMap::new();
    for module in batch_norms(&dict) {
        let keep = match stats {
            RunningStats::All => true,
            RunningStats::ChangedFrom(base) => changed(&dict, base, &module)?,
            RunningStats::None => false,
        };
        if !keep {
            continue;
        }
        for name in ["weight", "bias", "running_mean", "running_var"] {
            let key = format!("{module}.{name}");
            if dict.tensors.contains_key(&key) {
                wanted.insert(key);
            }
        }
        let key = format!("{module}.num_batches_tracked");
        let counter = match stats {
            RunningStats::ChangedFrom(base) => base.tensors.get(&key).cloned(),
            _ => None,
        };
        counters.insert(
            key,
            counter.unwrap_or_else(|| Stored {
                dtype: Dtype::I64,
                shape: Vec::new(),
                bytes: 0i64.to_le_bytes().to_vec(),
            }),
        );
    }
    let mut tensors: BTreeMap<String, Stored> = dict
        .tensors
        .into_iter()
        .filter(|(k, _)| wanted.contains(k))
        .collect();
    if tensors.len() != wanted.len() {
        return Err(store_error(
            "saving the model's extras",
            format!(
                "wanted {wanted:?}, burn-store gave {:?}",
                tensors.keys().collect::<Vec<_>>()
            ),
        ));
    }
    tensors.extend(counters);
    Ok(tensors)
}
