//! Several named adapters for one model: add, activate one, disable all, delete, combine, and
//! hot-swap on a merged base.
//!
//! burn carries one reparameterization per parameter, so the model holds one adapter at a
//! time; the others wait here as [`AdapterFile`]s. [`AdapterSet`] keeps the pretrained base
//! untouched, so [`AdapterSet::activate`] and [`AdapterSet::disable`] always start from it and
//! give it back bit for bit (the exact-restore mode). [`swap_merged`] instead swaps on a merged
//! base in place, `W <- W - scale·ΔW_from + scale·ΔW_to`, which is cheaper in memory (no second
//! copy of the base) and drifts by f32 rounding: see the README for the drift measured after
//! 1,000 swaps.

use std::collections::BTreeMap;

use burn::module::Module;

use crate::adapter::{AdapterFile, Format, LayerAdapter};
use crate::algorithm::Part;
use crate::error::{FileError, Result};
use crate::model::{PathMap, attach_file};

/// Named adapters over one pristine base.
#[derive(Debug, Clone)]
pub struct AdapterSet<M: Module> {
    base: M,
    map: PathMap,
    trainable: Vec<String>,
    adapters: BTreeMap<String, AdapterFile>,
    active: Option<String>,
}

fn config(field: &str, value: &str, why: &str) -> FileError {
    FileError::Config {
        file: "adapter set".to_string(),
        field: field.to_string(),
        value: value.to_string(),
        why: why.to_string(),
    }
}

impl<M: Module> AdapterSet<M> {
    /// A set over `base` (which must carry no adapter); `map` takes file module paths to burn
    /// paths, `trainable` lists the extra burn parameters an activated model trains.
    ///
    /// # Errors
    /// [`FileError::Config`] when `base` already carries adapters.
    pub fn new(base: &M, map: PathMap, trainable: Vec<String>) -> Result<Self> {
        if lora_core::has_adapters(base) {
            return Err(config(
                "base",
                "adapted model",
                "give the set the base without adapters",
            ));
        }
        Ok(Self {
            base: base.clone(),
            map,
            trainable,
            adapters: BTreeMap::new(),
            active: None,
        })
    }

    /// Add `file` as `name`, after checking that it attaches to the base.
    ///
    /// # Errors
    /// [`FileError::Config`] for a name already taken; whatever [`attach_file`] returns.
    pub fn add(&mut self, name: &str, file: AdapterFile) -> Result<()> {
        if self.adapters.contains_key(name) {
            return Err(config(
                "name",
                name,
                "an adapter of this name is already in the set",
            ));
        }
        attach_file(&self.base, &file, &self.map, self.trainable.clone())?;
        self.adapters.insert(name.to_string(), file);
        Ok(())
    }

    /// The adapters' names.
    pub fn names(&self) -> Vec<&str> {
        self.adapters.keys().map(String::as_str).collect()
    }

    /// The adapter `name`.
    pub fn get(&self, name: &str) -> Option<&AdapterFile> {
        self.adapters.get(name)
    }

    /// The active adapter's name, if any.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    fn known(&self, name: &str) -> Result<&AdapterFile> {
        self.adapters.get(name).ok_or_else(|| {
            config(
                "name",
                name,
                &format!("no such adapter; the set holds {:?}", self.names()),
            )
        })
    }

    /// The pristine base with adapter `name` attached (unmerged, trainable).
    ///
    /// # Errors
    /// [`FileError::Config`] for an unknown name.
    pub fn activate(&mut self, name: &str) -> Result<M> {
        let file = self.known(name)?.clone();
        let model = attach_file(&self.base, &file, &self.map, self.trainable.clone())?;
        self.active = Some(name.to_string());
        Ok(model)
    }

    /// The pristine base, bit for bit, with no adapter.
    pub fn disable(&mut self) -> M {
        self.active = None;
        self.base.clone()
    }

    /// Remove adapter `name` (deactivating it if it is active).
    ///
    /// # Errors
    /// [`FileError::Config`] for an unknown name.
    pub fn delete(&mut self, name: &str) -> Result<AdapterFile> {
        let file = self.adapters.remove(name).ok_or_else(|| {
            config(
                "name",
                name,
                &format!("no such adapter; the set holds {:?}", self.names()),
            )
        })?;
        if self.active.as_deref() == Some(name) {
            self.active = None;
        }
        Ok(file)
    }

    /// Add `name`, the weighted sum `Σ w_i · scale_i · ΔW_i` of the listed adapters, written
    /// exactly as one adapter by concatenating ranks (PEFT's `cat` combination): LoRA/LoCon
    /// and CP factors are stacked, Tucker-2 cores placed block-diagonally; its scale is 1.
    ///
    /// # Errors
    /// [`FileError::Config`] for an unknown or repeated name, no inputs, or a layer whose
    /// adapters differ in algorithm or shape, carry a DoRA magnitude, or are LoHa/LoKr (their
    /// updates are products, which do not add by concatenation).
    pub fn combine(&mut self, name: &str, weights: &[(&str, f64)]) -> Result<()> {
        if weights.is_empty() {
            return Err(config("weights", "[]", "combine at least one adapter"));
        }
        let mut by_module: BTreeMap<String, Vec<(&LayerAdapter, f64)>> = BTreeMap::new();
        for (n, w) in weights {
            for layer in &self.known(n)?.layers {
                by_module
                    .entry(layer.module.clone())
                    .or_default()
                    .push((layer, *w));
            }
        }
        let mut layers = Vec::new();
        for (module, parts) in by_module {
            layers.push(concatenate(&module, &parts)?);
        }
        let file = AdapterFile {
            source: format!("combination of {weights:?}"),
            format: Format::Native,
            layers,
            replacements: BTreeMap::new(),
            rslora: false,
            diffs: Default::default(),
        };
        self.add(name, file)
    }
}

/// One layer of [`AdapterSet::combine`]: its algorithm concatenates the parts' factors.
fn concatenate(module: &str, parts: &[(&LayerAdapter, f64)]) -> Result<LayerAdapter> {
    let first = parts[0].0;
    let algorithm = first.algorithm;
    let refuse = |why: String| config("combine", module, &why);
    for (l, _) in parts {
        if l.algorithm.name() != algorithm.name() {
            return Err(refuse(format!(
                "its adapters are {} and {}; only one algorithm combines",
                algorithm.name(),
                l.algorithm.name()
            )));
        }
        if l.magnitude.is_some() {
            return Err(refuse(
                "a DoRA magnitude does not combine by concatenation".into(),
            ));
        }
    }
    let weighted: Vec<Part<'_>> = parts
        .iter()
        .map(|(l, w)| Part {
            factors: &l.factors,
            weight: w * l.scale,
        })
        .collect();
    let factors = algorithm.concatenate(&weighted).map_err(refuse)?;
    let total: usize = parts.iter().map(|(l, _)| l.rank).sum();
    Ok(LayerAdapter {
        module: module.to_string(),
        key_prefix: module.to_string(),
        algorithm,
        factors,
        rank: total,
        alpha: Some(total as f64),
        scale: 1.0,
        magnitude: None,
        base_shape: first.base_shape.clone(),
        groups: first.groups,
    })
}

/// Hot swap on a merged model: take the merged adapter out of the base and merge `to` in,
/// `W <- W - ΔW_from + ΔW_to`, with no second copy of the base. Each swap rounds in f32.
///
/// # Errors
/// [`FileError::Attach`] when `merged` carries no merged adapter, or `to` does not fit.
pub fn swap_merged<M: Module>(
    merged: &M,
    to: &AdapterFile,
    map: &PathMap,
    trainable: Vec<String>,
) -> Result<M> {
    let base = lora_core::strip(merged)?;
    let next = attach_file(&base, to, map, trainable)?;
    Ok(lora_core::merge(&next)?)
}
