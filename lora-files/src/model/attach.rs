//! A file's adapters onto a burn model: each layer becomes the trainable module its algorithm
//! builds ([`crate::Algorithm::to_module`]); DoRA wraps the LoCon module; the file's
//! whole-tensor replacements load through burn-store.

use std::collections::{BTreeMap, HashMap};

use burn::module::Module;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use lora_conv::{AnyAdapter, DoraAdapter, LoConAdapter, conv_config};
use lora_core::{AdapterFactory, AdapterSpec, LoraError};

use super::{PathMap, extras, foreign, rename_modules, store_error};
use crate::adapter::{AdapterFile, LayerAdapter, MagnitudeLayout};
use crate::algorithm::{ModuleLayer, Site};
use crate::error::{FileError, Result};
use crate::state_dict::StateDict;

/// Why a layer could not become a trainable adapter: the algorithm or DoRA has no module type.
fn no_module(layer: &LayerAdapter, why: &str) -> FileError {
    FileError::Inexpressible {
        layer: layer.module.clone(),
        algorithm: layer.algorithm.name().to_string(),
        format: "a burn model".to_string(),
        why: why.to_string(),
    }
}

/// Build the adapter of `layer` for the burn weight at `path` of (burn) shape `shape` on
/// `device`.
fn build(
    layer: &LayerAdapter,
    source: &str,
    path: &str,
    shape: &[usize],
    device: &Device,
) -> lora_core::Result<AnyAdapter> {
    // The adapted weight in PyTorch layout, and how the update reaches burn's.
    let (torch_shape, carry): (Vec<usize>, fn(AnyAdapter) -> AnyAdapter) = match shape {
        [d_in, d_out] => (vec![*d_out, *d_in], |a| a.into_linear()),
        _ => (shape.to_vec(), |a| a),
    };
    build_torch(layer, source, path, &torch_shape, device).map(carry)
}

/// The adapter of `layer` on the PyTorch-layout weight shape `shape`.
fn build_torch(
    layer: &LayerAdapter,
    source: &str,
    path: &str,
    shape: &[usize],
    device: &Device,
) -> lora_core::Result<AnyAdapter> {
    let wrong = |reason: String| LoraError::UnsupportedGeometry {
        path: path.to_string(),
        reason,
    };
    if let Some(m) = &layer.magnitude {
        let epsilon = match m.layout {
            MagnitudeLayout::PeftOut => 0.0,
            MagnitudeLayout::LycorisOut => f64::from(f32::EPSILON),
            MagnitudeLayout::LycorisIn => {
                return Err(wrong(
                    "a DoRA magnitude per input channel (LyCORIS without wd_on_out) has no \
                     trainable module type; merge it into the base instead"
                        .into(),
                ));
            }
        };
        // DoRA here wraps a LoCon: the layer's algorithm must build one.
        let not_locon = || {
            wrong(format!(
                "DoRA on {} has no trainable module type (DoRA here wraps LoRA/LoCon)",
                layer.algorithm.name()
            ))
        };
        let plain = LayerAdapter {
            magnitude: None,
            ..layer.clone()
        };
        let lora = build_torch(&plain, source, path, shape, device)?
            .into_inner::<LoConAdapter>()
            .ok_or_else(not_locon)?;
        let t = shape.first().copied().unwrap_or(0);
        if m.values.len() != t {
            return Err(LoraError::ShapeMismatch {
                path: format!("{path} (DoRA magnitude)"),
                expected: vec![t],
                actual: m.shape.clone(),
            });
        }
        let magnitude = Tensor::<1>::from_data(TensorData::new(m.values.clone(), [t]), device);
        return Ok(AnyAdapter::new(DoraAdapter {
            epsilon,
            ..DoraAdapter::from_parts(lora, magnitude)
        }));
    }
    let module = ModuleLayer {
        path,
        site: Site::new(source, &layer.key_prefix),
        factors: &layer.factors,
        rank: layer.rank,
        scale: layer.scale,
        shape,
    };
    layer.algorithm.to_module(&module, device)
}

/// The factory that hands out the file's adapters by burn path.
struct FileFactory<'a> {
    layers: HashMap<String, &'a LayerAdapter>,
    source: &'a str,
}

impl AdapterFactory for FileFactory<'_> {
    type Adapter = AnyAdapter;

    fn build(
        &self,
        path: &str,
        shape: &[usize],
        _spec: &AdapterSpec,
        device: &Device,
    ) -> lora_core::Result<AnyAdapter> {
        let Some(layer) = self.layers.get(path) else {
            return Err(LoraError::UnsupportedGeometry {
                path: path.to_string(),
                reason: "no layer of the adapter file maps to this weight".to_string(),
            });
        };
        let adapter = build(layer, self.source, path, shape, device)?;
        // The layer's own weight shape (PyTorch layout) must be this weight's: a wrong path map
        // can put a 2D layer on a Conv1d or a Linear.
        let torch: Vec<usize> = match shape {
            [d_in, d_out] => vec![*d_out, *d_in],
            _ => shape.to_vec(),
        };
        if adapter.shape() != torch.as_slice() {
            return Err(LoraError::ShapeMismatch {
                path: format!("{path} (layer `{}` of {})", layer.module, self.source),
                expected: torch,
                actual: adapter.shape().to_vec(),
            });
        }
        Ok(adapter)
    }

    /// The file's adapters are trained: their state (DoRA's magnitude) is the file's.
    fn fresh(&self) -> bool {
        false
    }
}

/// Put the adapters of `file` on `model`: the layer at PyTorch module path `m` adapts burn's
/// `map(m).weight`. The file's whole-tensor replacements (PEFT `modules_to_save`, the native
/// format's extras, BatchNorm running statistics among them) are loaded first, through
/// burn-store with PyTorch layouts converted, into a copy that shares no running statistics
/// with `model`; the replaced parameters stay trainable. `trainable` lists further burn parameter patterns that stay
/// trainable (a head, BatchNorm affine); every other non-adapter parameter is frozen.
///
/// # Errors
/// [`FileError::Inexpressible`] naming a layer whose algorithm or DoRA magnitude has no
/// trainable module type yet; [`FileError::UnexpectedKey`] for file replacements (apply those
/// to the base state dict first); [`FileError::Attach`] when the model has no weight at a
/// mapped path, its shape differs from the update's, or the model already carries adapters;
/// [`FileError::Config`] naming the weights when the model carries burn's own LoRA
/// (`Module::apply_lora`), which burn cannot nest under another adapter;
/// [`FileError::UnexpectedKey`] for a replacement no parameter takes. The model is untouched
/// on error.
pub fn attach_file<M: Module>(
    model: &M,
    file: &AdapterFile,
    map: &PathMap,
    trainable: Vec<String>,
) -> Result<M> {
    foreign::refuse_burn_lora(model, "attaching an adapter file")?;
    let mut layers = HashMap::new();
    for layer in &file.layers {
        if !layer.algorithm.has_module() {
            return Err(no_module(
                layer,
                "this algorithm has no trainable module type yet",
            ));
        }
        layers.insert(format!("{}.weight", map.apply(&layer.module)), layer);
    }
    if let Some(key) = file.diffs.keys().next() {
        return Err(FileError::UnexpectedKey {
            file: file.source.clone(),
            key: key.clone(),
            why: "a whole-tensor difference (LyCORIS full) needs the base's values: merge it \
                  into the base state dict first (adapter merge), or turn it into a replacement \
                  with merge::diffs_to_replacements"
                .to_string(),
        });
    }
    let mut trainable = trainable;
    let model = if file.replacements.is_empty() {
        model.clone()
    } else {
        let (loaded, paths) = replace(model, file, map)?;
        trainable.extend(paths.iter().map(|p| regex::escape(p)));
        loaded
    };
    let targets: Vec<String> = layers.keys().map(|p| regex::escape(p)).collect();
    let config = conv_config(1, 1.0)
        .with_targets(targets)
        .with_trainable(trainable);
    Ok(lora_core::attach(
        &model,
        &config,
        &FileFactory {
            layers,
            source: &file.source,
        },
    )?)
}

/// `model` with the file's whole-tensor replacements (PEFT `modules_to_save`, native extras)
/// loaded through burn-store (PyTorch names and layouts converted), and their burn paths.
/// The copy shares no BatchNorm running statistics with `model`, which stays as it was.
/// BatchNorm's `num_batches_tracked` has no burn counterpart and is not loaded.
fn replace<M: Module>(model: &M, file: &AdapterFile, map: &PathMap) -> Result<(M, Vec<String>)> {
    let tensors = file
        .replacements
        .iter()
        .filter(|(k, _)| !k.ends_with(".num_batches_tracked"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let dict = rename_modules(
        StateDict {
            tensors,
            metadata: BTreeMap::new(),
        },
        map,
    );
    let bytes = dict.to_bytes(&file.source)?;
    let mut store = SafetensorsStore::from_bytes(Some(bytes))
        .with_from_adapter(PyTorchToBurnAdapter)
        .allow_partial(true);
    let mut loaded = extras::unshared(model);
    let result = loaded
        .load_from(&mut store)
        .map_err(|e| store_error("loading modules_to_save", e))?;
    if let Some(key) = result.unused.first() {
        return Err(FileError::UnexpectedKey {
            file: file.source.clone(),
            key: key.clone(),
            why: "a whole-tensor replacement that no parameter of the model takes (check the path map)"
                .to_string(),
        });
    }
    if let Some(e) = result.errors.first() {
        return Err(store_error("loading modules_to_save", e));
    }
    Ok((loaded, result.applied))
}
