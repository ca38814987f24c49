//! Merging an adapter file into a base state dict, with no model: every adapted weight is
//! replaced by its merged value, in the base's own dtype, and `modules_to_save` entries are
//! applied. Everything is checked before anything is returned; the base is not changed.

use std::collections::BTreeSet;

use crate::adapter::{AdapterFile, Format, LayerAdapter};
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
            adapter: format!("`{}` in {}", layer.key_prefix, adapter.source),
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
        let rounded = rounded_finite(&key, shape, &merged, stored.dtype)?;
        out.tensors.insert(key, rounded);
    }
    for (key, replacement) in &adapter.replacements {
        let stored = base.tensors.get(key).ok_or_else(|| FileError::MissingKey {
            file: base_file.to_string(),
            key: key.clone(),
            why: format!("{} replaces it (modules_to_save)", adapter.source),
        })?;
        if stored.shape != replacement.shape {
            return Err(shape_mismatch(
                base_file,
                key,
                &stored.shape,
                &adapter.source,
                &replacement.shape,
                "a whole-tensor replacement",
            ));
        }
        let value = match (replacement.to_f32(), stored.is_float()) {
            (Some(v), true) => Stored::from_f32_as(stored.shape.clone(), &v, stored.dtype),
            _ => replacement.clone(),
        };
        out.tensors.insert(key.clone(), value);
    }
    for (key, diff) in &adapter.diffs {
        let (shape, values) = added(base, base_file, adapter, key, diff, multiplier)?;
        let rounded = rounded_finite(key, shape, &values, base.tensors[key].dtype)?;
        out.tensors.insert(key.clone(), rounded);
    }
    Ok(out)
}

/// `values` stored in `dtype`, refused when rounding to it makes a value non-finite (an f32
/// merge that overflows f16 or bf16).
fn rounded_finite(
    key: &str,
    shape: Vec<usize>,
    values: &[f32],
    dtype: safetensors::Dtype,
) -> Result<Stored> {
    let rounded = Stored::from_f32_as(shape, values, dtype);
    if let Some(index) = rounded
        .to_f32()
        .and_then(|v| v.iter().position(|x| !x.is_finite()))
    {
        return Err(FileError::NonFiniteMerge {
            key: key.to_string(),
            index,
        });
    }
    Ok(rounded)
}

/// The base entry `key` has `found_shape` where the adapter's `what` needs `expected_shape`.
fn shape_mismatch(
    base_file: &str,
    key: &str,
    found_shape: &[usize],
    source: &str,
    expected_shape: &[usize],
    what: &str,
) -> FileError {
    FileError::BaseMismatch {
        base: base_file.to_string(),
        key: key.to_string(),
        found: format!("has shape {found_shape:?}"),
        adapter: format!("`{key}` in {source}"),
        expected: format!("shape {expected_shape:?} ({what})"),
    }
}

/// `base[key] + multiplier·diff` in f32, checked.
fn added(
    base: &StateDict,
    base_file: &str,
    adapter: &AdapterFile,
    key: &str,
    diff: &Stored,
    multiplier: f64,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let stored = base
        .tensors
        .get(key)
        .ok_or_else(|| FileError::BaseMismatch {
            base: base_file.to_string(),
            key: key.to_string(),
            found: "is missing".to_string(),
            adapter: format!("`{key}` in {}", adapter.source),
            expected: format!("shape {:?} (a whole-tensor difference)", diff.shape),
        })?;
    if stored.shape != diff.shape {
        return Err(shape_mismatch(
            base_file,
            key,
            &stored.shape,
            &adapter.source,
            &diff.shape,
            "a whole-tensor difference",
        ));
    }
    let (shape, w) = base.f32(base_file, key, "a difference is added to it")?;
    let d = diff.to_f32().ok_or_else(|| FileError::Dtype {
        file: adapter.source.clone(),
        key: key.to_string(),
        expected: "a float dtype".to_string(),
        actual: format!("{:?}", diff.dtype),
    })?;
    let values: Vec<f32> = w
        .iter()
        .zip(&d)
        .map(|(w, d)| (f64::from(*w) + multiplier * f64::from(*d)) as f32)
        .collect();
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(FileError::NonFiniteMerge {
            key: key.to_string(),
            index,
        });
    }
    Ok((shape, values))
}

/// Turn whole-tensor replacements of Linear and conv modules into differences from `base`
/// (what LyCORIS's `full` algorithm holds): `diff = replacement − base`, per module `weight`
/// and `bias` (a bias alone gets a zero weight difference, since LyCORIS needs one).
///
/// # Errors
/// [`FileError::Inexpressible`] naming the module when it is not a Linear or conv: BatchNorm
/// running statistics (LyCORIS holds no buffers), a 1-D weight (a norm layer's affine
/// parameters: LyCORIS's full module wraps Linear and Conv1d/2d/3d only), or any other entry;
/// [`FileError::BaseMismatch`] when the base lacks the entry or has another shape;
/// [`FileError::Dtype`] for a non-float entry.
pub fn replacements_to_diffs(
    adapter: &mut AdapterFile,
    base: &StateDict,
    base_file: &str,
) -> Result<()> {
    let refuse = |module: &str, why: String| FileError::Inexpressible {
        layer: module.to_string(),
        algorithm: "whole-tensor replacement".to_string(),
        format: "lycoris".to_string(),
        why,
    };
    let mut diffs = adapter.diffs.clone();
    for (key, replacement) in &adapter.replacements {
        let (module, what) = key.rsplit_once('.').unwrap_or(("", key));
        if ["running_mean", "running_var", "num_batches_tracked"].contains(&what) {
            return Err(refuse(
                module,
                format!(
                    "`{key}` is a BatchNorm statistic; LyCORIS files hold no buffers (use the \
                     native or PEFT format)"
                ),
            ));
        }
        if what != "weight" && what != "bias" {
            return Err(refuse(
                module,
                format!("`{key}`: LyCORIS's full module holds a weight and a bias only"),
            ));
        }
        let weight = format!("{module}.weight");
        let dims = base.tensors.get(&weight).map_or(0, |w| w.shape.len());
        if dims < 2 {
            return Err(refuse(
                module,
                format!(
                    "`{weight}` in {base_file} has {dims} axes: LyCORIS's full-diff module wraps \
                     Linear and Conv1d/2d/3d only (a norm layer's affine parameters cannot be \
                     written; use the native or PEFT format)"
                ),
            ));
        }
        let (shape, b) = base.f32(base_file, key, "a replaced entry")?;
        let r = replacement.to_f32().ok_or_else(|| FileError::Dtype {
            file: adapter.source.clone(),
            key: key.clone(),
            expected: "a float dtype".to_string(),
            actual: format!("{:?}", replacement.dtype),
        })?;
        if replacement.shape != shape {
            return Err(shape_mismatch(
                base_file,
                key,
                &shape,
                &adapter.source,
                &replacement.shape,
                "a whole-tensor replacement",
            ));
        }
        let d: Vec<f32> = r.iter().zip(&b).map(|(r, b)| r - b).collect();
        diffs.insert(key.clone(), Stored::from_f32(shape, &d));
        if what == "bias" && !adapter.replacements.contains_key(&weight) {
            let (wshape, _) = base.f32(base_file, &weight, "a replaced module's weight")?;
            let n = wshape.iter().product();
            diffs.insert(weight, Stored::from_f32(wshape, &vec![0.0; n]));
        }
    }
    adapter.diffs = diffs;
    adapter.replacements.clear();
    Ok(())
}

/// Turn the layers `which` selects into whole-tensor differences from `base` (LyCORIS's `full`
/// algorithm, which any adapter type's update fits): `diff = scale·ΔW` for an additive layer,
/// `W' − W` with the merged weight `W'` for a DoRA layer, keyed `<module>.weight` and added to
/// the difference the module already has, if any. The layers leave `adapter.layers` and their
/// factors are lost: the file then holds the update, not the low-rank form. Returns the modules
/// turned into differences, in the file's order. Call it after [`replacements_to_diffs`].
///
/// `adapter convert --to lycoris --full-diff` calls it with the layers whose algorithm LyCORIS
/// has no layout for ([`crate::Algorithm::lycoris_names`]).
///
/// # Errors
/// As [`merge`] for a layer that does not fit its base weight; [`FileError::Inexpressible`]
/// when the file still holds whole-tensor replacements; [`FileError::NonFiniteMerge`] for a
/// non-finite difference. On error `adapter` is unchanged.
pub fn layers_to_diffs(
    adapter: &mut AdapterFile,
    base: &StateDict,
    base_file: &str,
    which: impl Fn(&LayerAdapter) -> bool,
) -> Result<Vec<String>> {
    if let Some(key) = adapter.replacements.keys().next() {
        return Err(FileError::Inexpressible {
            layer: key.clone(),
            algorithm: "whole-tensor replacement".to_string(),
            format: "lycoris".to_string(),
            why: "turn replacements into differences first (replacements_to_diffs), so that a \
                  module both replaced and adapted gets one difference"
                .to_string(),
        });
    }
    let mut diffs = adapter.diffs.clone();
    let mut moved = Vec::new();
    for layer in adapter.layers.iter().filter(|l| which(l)) {
        let key = format!("{}.weight", layer.module);
        if !base.tensors.contains_key(&key) {
            return Err(FileError::MissingKey {
                file: base_file.to_string(),
                key,
                why: format!("`{}` in {} adapts it", layer.key_prefix, adapter.source),
            });
        }
        let (shape, values) = base.f32(base_file, &key, "")?;
        let diff: Vec<f32> = if layer.magnitude.is_none() {
            // The update itself, so that LyCORIS's W + diff is this crate's merge bit for bit.
            let zero = vec![0f32; values.len()];
            layer.merged(&adapter.source, base_file, &key, &shape, &zero, 1.0)?
        } else {
            let merged = layer.merged(&adapter.source, base_file, &key, &shape, &values, 1.0)?;
            merged.iter().zip(&values).map(|(m, w)| m - w).collect()
        };
        // A module whose weight already differs (a replaced bias gives it a zero difference, a
        // replaced weight its own) gets the sum: W + d + scale·ΔW.
        let diff = match diffs.get(&key) {
            None => diff,
            Some(old) => {
                let old = old
                    .to_f32()
                    .filter(|o| o.len() == diff.len())
                    .ok_or_else(|| FileError::BaseMismatch {
                        base: base_file.to_string(),
                        key: key.clone(),
                        found: format!("has shape {shape:?}"),
                        adapter: format!(
                            "the difference on `{}` in {}",
                            layer.module, adapter.source
                        ),
                        expected: format!("shape {:?}", old.shape),
                    })?;
                old.iter().zip(&diff).map(|(a, b)| a + b).collect()
            }
        };
        if let Some(index) = diff.iter().position(|v| !v.is_finite()) {
            return Err(FileError::NonFiniteMerge { key, index });
        }
        diffs.insert(key, Stored::from_f32(shape, &diff));
        moved.push(layer.module.clone());
    }
    adapter.diffs = diffs;
    adapter.layers.retain(|l| !moved.contains(&l.module));
    Ok(moved)
}

/// Turn whole-tensor differences into replacements, `base + diff` in the base entry's dtype
/// (what the PEFT and native formats hold).
///
/// # Errors
/// As [`merge`] for the differences.
pub fn diffs_to_replacements(
    adapter: &mut AdapterFile,
    base: &StateDict,
    base_file: &str,
) -> Result<()> {
    for (key, diff) in std::mem::take(&mut adapter.diffs) {
        let (shape, values) = added(base, base_file, adapter, &key, &diff, 1.0)?;
        let dtype = base.tensors[&key].dtype;
        adapter
            .replacements
            .insert(key, Stored::from_f32_as(shape, &values, dtype));
    }
    Ok(())
}
