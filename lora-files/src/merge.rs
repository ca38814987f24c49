//! Merging an adapter file into a base state dict, with no model: every adapted weight is
//! replaced by its merged value, in the base's own dtype, and `modules_to_save` entries are
//! applied. Everything is checked before anything is returned; the base is not changed.

use std::collections::BTreeSet;

use crate::adapter::{AdapterFile, Format};
use crate::error::{FileError, Result};
use crate::format::lycoris;
use crate::state_dict::{StateDict, Stored};

/// The module paths of a state dict: every key's parent (`block.0.weight` -> `block.0`).
pub fn modules(base: &StateDict) -> BTreeSet<String> {
    base.tensors
        .keys()
        .filter_map(|k| k.rsplit_once('.').map(|(m, _)| m.to_string()))
        .collect()
}

/// [`resolve_base`] for a base named "the base" in errors.
///
/// # Errors
/// As [`resolve_base`].
pub fn resolve(adapter: &mut AdapterFile, base: &StateDict, prefixes: &[String]) -> Result<()> {
    resolve_base(adapter, base, "the base", prefixes)
}

/// Give each LyCORIS layer the base module its key stem maps to (see [`lycoris::resolve`]);
/// PEFT and native layers must name a module of the base. Each layer's update must have the
/// shape of its base weight, which becomes the layer's `base_shape`.
///
/// # Errors
/// [`FileError::UnexpectedKey`] naming the layer when no base module matches its LyCORIS key
/// stem; [`FileError::BaseMismatch`] naming `base_file`, the key and both shapes when the base
/// lacks a module the adapter names, or its weight has another shape than the update (or than
/// the shape a native file recorded).
pub fn resolve_base(
    adapter: &mut AdapterFile,
    base: &StateDict,
    base_file: &str,
    prefixes: &[String],
) -> Result<()> {
    let modules = modules(base);
    if adapter.format == Format::Lycoris {
        lycoris::resolve(adapter, &modules, prefixes)?;
    }
    for layer in &mut adapter.layers {
        let key = format!("{}.weight", layer.module);
        let mismatch = |found: String, expected: String| FileError::BaseMismatch {
            base: base_file.to_string(),
            key: key.clone(),
            found,
            adapter: adapter.source.clone(),
            adapter_key: layer.key_prefix.clone(),
            expected,
        };
        if !modules.contains(&layer.module) {
            return Err(mismatch(
                "is missing (the base has no module of that name)".to_string(),
                format!("a module `{}`", layer.module),
            ));
        }
        let Some(stored) = base.tensors.get(&key) else {
            continue;
        };
        let found = format!("has shape {:?}", stored.shape);
        match &layer.base_shape {
            Some(shape) if *shape != stored.shape => {
                return Err(mismatch(found, format!("shape {shape:?}")));
            }
            Some(_) => {}
            None => {
                let delta = layer.delta(&adapter.source)?;
                let rows = stored.shape.first().copied().unwrap_or(1);
                let cols: usize = stored.shape.iter().skip(1).product();
                let fits = delta.matrix.dims() == [rows, cols]
                    && delta.shape.as_ref().is_none_or(|s| *s == stored.shape);
                if !fits {
                    let expected = delta.shape.as_ref().map_or(
                        format!("{:?} elements once flattened", delta.matrix.dims()),
                        |s| format!("shape {s:?}"),
                    );
                    return Err(mismatch(found, expected));
                }
                layer.base_shape = Some(stored.shape.clone());
            }
        }
    }
    Ok(())
}

/// The base with `adapter` merged at strength `multiplier` (1 = as trained). `adapter`'s
/// layers must be resolved ([`resolve`]).
///
/// # Errors
/// [`FileError::MissingKey`] when the base lacks `<module>.weight` or a replaced entry;
/// [`FileError::BaseMismatch`] when an update or a replacement does not have the base entry's
/// shape;
/// [`FileError::Dtype`] for a non-float adapted weight; [`FileError::NonFinite`] for a
/// non-finite base weight; [`FileError::NonFiniteMerge`] when a merged value would not be
/// finite (PEFT's `safe_merge`).
pub fn merge(
    base: &StateDict,
    base_file: &str,
    adapter: &AdapterFile,
    multiplier: f64,
) -> Result<StateDict> {
    let mut out = base.clone();
    for layer in &adapter.layers {
        let key = format!("{}.weight", layer.module);
        let stored = base
            .tensors
            .get(&key)
            .ok_or_else(|| FileError::MissingKey {
                file: base_file.to_string(),
                key: key.clone(),
                why: format!("`{}` in {} adapts it", layer.key_prefix, adapter.source),
            })?;
        let (shape, values) = base.f32(base_file, &key, "")?;
        let merged = layer.merged(
            &adapter.source,
            base_file,
            &key,
            &shape,
            &values,
            multiplier,
        )?;
        if let Some(index) = merged.iter().position(|v| !v.is_finite()) {
            return Err(FileError::NonFiniteMerge { key, index });
        }
        let rounded = Stored::from_f32_as(shape, &merged, stored.dtype);
        if let Some(index) = rounded
            .to_f32()
            .and_then(|v| v.iter().position(|x| !x.is_finite()))
        {
            return Err(FileError::NonFiniteMerge { key, index });
        }
        out.tensors.insert(key, rounded);
    }
    for (key, replacement) in &adapter.replacements {
        let stored = base.tensors.get(key).ok_or_else(|| FileError::MissingKey {
            file: base_file.to_string(),
            key: key.clone(),
            why: format!("{} replaces it (modules_to_save)", adapter.source),
        })?;
        if stored.shape != replacement.shape {
            return Err(FileError::BaseMismatch {
                base: base_file.to_string(),
                key: key.clone(),
                found: format!("has shape {:?}", stored.shape),
                adapter: adapter.source.clone(),
                adapter_key: key.clone(),
                expected: format!("shape {:?} (a whole-tensor replacement)", replacement.shape),
            });
        }
        let value = match (replacement.to_f32(), stored.is_float()) {
            (Some(v), true) => Stored::from_f32_as(stored.shape.clone(), &v, stored.dtype),
            _ => replacement.clone(),
        };
        out.tensors.insert(key.clone(), value);
    }
    Ok(out)
}
