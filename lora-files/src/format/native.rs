//! This workspace's adapter file: one `.safetensors` file whose tensors are the factors
//! (`<module>.<factor>`), DoRA magnitudes (`<module>.magnitude`) and whole replaced entries
//! (`extra.<base key>`), and whose metadata entry `lora_files` is a JSON document:
//!
//! ```json
//! {"format": "lora-files", "version": 3, "rslora": false,
//!  "layers": [{"module": "block.0", "algorithm": "tucker2", "rank": 4, "alpha": 2.0,
//!              "scale": 0.5, "factors": ["lora_down.weight", "lora_mid.weight", "lora_up.weight"],
//!              "magnitude": null, "base_shape": [16, 8, 3, 3]}],
//!  "extras": ["head.weight"]}
//! ```
//!
//! A native file always holds unmerged factors (a merged model is refused on save). Every
//! algorithm is expressible here, CP included, and any adapter type registered with
//! `lora_conv` (under its module's factor names).
//!
//! Each layer's `algorithm` is the name of its `lora_conv` adapter type. Version 3 renamed two
//! algorithms to match: LoCon was `lora` and LoHa-Tucker was `loha` (with `hada_t1` among its
//! factors); both old names are still read, the factor names telling LoHa-Tucker from LoHa.
//! Version 2 stores CP's `cp_down` as `[r, in/groups]`, like Tucker-2's down factor; version 1
//! stored it as `[in/groups, r]`, and is still read (the factor is transposed on reading).
//! Reading checks the version, that the metadata and the tensors name the same keys, shapes,
//! dtypes and finiteness, before anything is returned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::adapter::{AdapterFile, Format, LayerAdapter, Magnitude, MagnitudeLayout};
use crate::algorithm::{Factor, Factors, Registry};
use crate::error::{FileError, Result, io};
use crate::state_dict::{StateDict, Stored};

/// The metadata key that marks a native file.
pub const METADATA_KEY: &str = "lora_files";
/// The format version this crate writes (it reads versions 1 to this one).
pub const VERSION: u32 = 3;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    format: String,
    version: u32,
    rslora: bool,
    layers: Vec<LayerMeta>,
    extras: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerMeta {
    module: String,
    algorithm: String,
    rank: usize,
    alpha: Option<f64>,
    scale: f64,
    factors: Vec<String>,
    magnitude: Option<String>,
    base_shape: Option<Vec<usize>>,
    /// The conv's groups; written only when above 1 (files without it read as 1).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    groups: usize,
}

fn one() -> usize {
    1
}

fn is_one(g: &usize) -> bool {
    *g == 1
}

fn layout_name(l: MagnitudeLayout) -> &'static str {
    match l {
        MagnitudeLayout::PeftOut => "peft_out",
        MagnitudeLayout::LycorisOut => "lycoris_out",
        MagnitudeLayout::LycorisIn => "lycoris_in",
    }
}

fn layout_from(file: &str, module: &str, s: &str) -> Result<MagnitudeLayout> {
    match s {
        "peft_out" => Ok(MagnitudeLayout::PeftOut),
        "lycoris_out" => Ok(MagnitudeLayout::LycorisOut),
        "lycoris_in" => Ok(MagnitudeLayout::LycorisIn),
        other => Err(FileError::Config {
            file: file.to_string(),
            field: format!("layers[{module}].magnitude"),
            value: format!("{other:?}"),
            why: "expected peft_out, lycoris_out or lycoris_in".to_string(),
        }),
    }
}

/// Read a native adapter file.
///
/// # Errors
/// [`FileError::Io`] (unreadable, truncated, corrupt); [`FileError::Config`] for missing or
/// malformed metadata, another format version, an unknown algorithm or a scale that is not
/// finite; [`FileError::MissingKey`] / [`FileError::UnexpectedKey`] when the metadata and the
/// tensors disagree; [`FileError::Shape`], [`FileError::Dtype`], [`FileError::NonFinite`].
pub fn read(path: &Path, registry: &Registry) -> Result<AdapterFile> {
    let file = path.display().to_string();
    let dict = StateDict::read(path)?;
    let text = dict
        .metadata
        .get(METADATA_KEY)
        .ok_or_else(|| FileError::Config {
            file: file.clone(),
            field: METADATA_KEY.to_string(),
            value: "null".to_string(),
            why: "not a native adapter file (no metadata)".to_string(),
        })?;
    let meta: Meta = serde_json::from_str(text).map_err(|e| FileError::Config {
        file: file.clone(),
        field: METADATA_KEY.to_string(),
        value: text.chars().take(80).collect(),
        why: format!("malformed: {e}"),
    })?;
    if meta.format != "lora-files" || !(1..=VERSION).contains(&meta.version) {
        return Err(FileError::Config {
            file,
            field: "version".to_string(),
            value: format!("{} {}", meta.format, meta.version),
            why: format!("this build reads lora-files versions 1 to {VERSION}"),
        });
    }
    let mut expected_keys = BTreeSet::new();
    let mut layers = Vec::new();
    for lm in &meta.layers {
        // Versions 1 and 2 called LoCon `lora` and LoHa-Tucker `loha`: aliases, told apart by
        // the layer's factors.
        let names: Vec<&str> = lm.factors.iter().map(String::as_str).collect();
        let algorithm =
            registry
                .named(&lm.algorithm, Some(&names))
                .ok_or_else(|| FileError::Config {
                    file: file.clone(),
                    field: format!("layers[{}].algorithm", lm.module),
                    value: format!("{:?}", lm.algorithm),
                    why: format!("no registered algorithm has this name ({registry:?})"),
                })?;
        if !lm.scale.is_finite() {
            return Err(FileError::Config {
                file,
                field: format!("layers[{}].scale", lm.module),
                value: lm.scale.to_string(),
                why: "must be finite".to_string(),
            });
        }
        let mut factors = Factors::new();
        for name in &lm.factors {
            let key = format!("{}.{name}", lm.module);
            let (shape, values) = dict.f32(&file, &key, "the metadata lists it")?;
            let factor = Factor { shape, values };
            // Version 1 stored CP's down factor as [in, r].
            let factor = if meta.version == 1 && lm.algorithm == "cp" && name == "cp_down" {
                factor.transposed()
            } else {
                factor
            };
            factors.insert(name.clone(), factor);
            expected_keys.insert(key);
        }
        let magnitude = match &lm.magnitude {
            None => None,
            Some(layout) => {
                let key = format!("{}.magnitude", lm.module);
                let (shape, values) = dict.f32(&file, &key, "the metadata lists a magnitude")?;
                expected_keys.insert(key);
                Some(Magnitude {
                    layout: layout_from(&file, &lm.module, layout)?,
                    values,
                    shape,
                })
            }
        };
        if lm.groups == 0 {
            return Err(FileError::Config {
                file,
                field: format!("layers[{}].groups", lm.module),
                value: "0".to_string(),
                why: "groups must be at least 1".to_string(),
            });
        }
        let layer = LayerAdapter {
            module: lm.module.clone(),
            key_prefix: lm.module.clone(),
            algorithm,
            factors,
            rank: lm.rank,
            alpha: lm.alpha,
            scale: lm.scale,
            magnitude,
            base_shape: lm.base_shape.clone(),
            groups: lm.groups,
        };
        layer.delta(&file)?;
        layers.push(layer);
    }
    let mut replacements = BTreeMap::new();
    for key in &meta.extras {
        let stored_key = format!("extra.{key}");
        let stored = dict
            .tensors
            .get(&stored_key)
            .ok_or_else(|| FileError::MissingKey {
                file: file.clone(),
                key: stored_key.clone(),
                why: "the metadata lists it as an extra".to_string(),
            })?;
        if stored.is_float() {
            dict.f32(&file, &stored_key, "")?;
        }
        replacements.insert(key.clone(), stored.clone());
        expected_keys.insert(stored_key);
    }
    if let Some(extra) = dict.tensors.keys().find(|k| !expected_keys.contains(*k)) {
        return Err(FileError::UnexpectedKey {
            file,
            key: extra.clone(),
            why: "the metadata does not list it".to_string(),
        });
    }
    Ok(AdapterFile {
        source: file,
        format: Format::Native,
        layers,
        replacements,
        rslora: meta.rslora,
        diffs: Default::default(),
    })
}

/// Write a native adapter file (atomically). Every algorithm can be written.
///
/// # Errors
/// [`FileError::Io`]; the old file, if any, is left as it was.
pub fn write(adapter: &AdapterFile, path: &Path) -> Result<()> {
    let mut dict = StateDict::default();
    let mut layers = Vec::new();
    for l in &adapter.layers {
        for (name, f) in &l.factors {
            dict.tensors.insert(
                format!("{}.{name}", l.module),
                Stored::from_f32(f.shape.clone(), &f.values),
            );
        }
        if let Some(m) = &l.magnitude {
            dict.tensors.insert(
                format!("{}.magnitude", l.module),
                Stored::from_f32(m.shape.clone(), &m.values),
            );
        }
        layers.push(LayerMeta {
            module: l.module.clone(),
            algorithm: l.algorithm.name().to_string(),
            rank: l.rank,
            alpha: l.alpha,
            scale: l.scale,
            factors: l.factors.keys().cloned().collect(),
            magnitude: l
                .magnitude
                .as_ref()
                .map(|m| layout_name(m.layout).to_string()),
            base_shape: l.base_shape.clone(),
            groups: l.groups,
        });
    }
    for (key, stored) in &adapter.replacements {
        dict.tensors.insert(format!("extra.{key}"), stored.clone());
    }
    let meta = Meta {
        format: "lora-files".to_string(),
        version: VERSION,
        rslora: adapter.rslora,
        layers,
        extras: adapter.replacements.keys().cloned().collect(),
    };
    let text = serde_json::to_string(&meta).map_err(|e| io(path.display(), e))?;
    dict.metadata.insert(METADATA_KEY.to_string(), text);
    dict.write(path)
}
