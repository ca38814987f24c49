//! PEFT LoRA adapter directories: `adapter_config.json` and `adapter_model.safetensors`, keys
//! `base_model.model.<module>.lora_A.weight` `[r, in, k..]`, `.lora_B.weight` `[out, r, 1..]`,
//! and with DoRA `.lora_magnitude_vector` (`[out]` linear, `[1, out, 1..]` conv).
//!
//! Scale: `lora_alpha / r`, or `/ sqrt(r)` with `use_rslora`; `rank_pattern` and
//! `alpha_pattern` keys apply to a module whose path matches `(.*\.)?KEY$`, as in PEFT (the
//! first matching key in sorted order). A config field that changes the maths and is not
//! implemented here is refused by name, and so is any unknown field that is set.
//!
//! A LoRA on a grouped conv has PEFT's grouped layout (`lora_B` `[out, R/groups, 1..]`); see
//! `peft_groups` for how it maps to a grouped LoCon and what is refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::adapter::{AdapterFile, Format, LayerAdapter, Magnitude, MagnitudeLayout};
use crate::algorithm::{Factor, Factors, LoCon, unsupported_algorithm};
use crate::error::{FileError, Result, io};
use crate::format::peft_config::{names_module, parse_config};
use crate::format::{peft_groups, refuse_inexpressible};
use crate::state_dict::{StateDict, Stored};

/// The config file's name.
pub const CONFIG: &str = "adapter_config.json";
/// The weights file's name.
pub const WEIGHTS: &str = "adapter_model.safetensors";
const PREFIX: &str = "base_model.model.";

/// Read a PEFT adapter directory.
///
/// # Errors
/// [`FileError::Io`] for missing or corrupt files; [`FileError::Config`] for an unsupported or
/// malformed config field; [`FileError::UnexpectedKey`] for a key that is neither a LoRA
/// factor nor a `modules_to_save` entry; [`FileError::Shape`] when a rank disagrees with the
/// config or the factors do not fit together; [`FileError::NonFinite`].
pub fn read(dir: &Path) -> Result<AdapterFile> {
    let config_path = dir.join(CONFIG);
    let config_file = config_path.display().to_string();
    let text = std::fs::read_to_string(&config_path).map_err(|e| io(&config_file, e))?;
    let config = parse_config(&config_file, &text)?;
    let weights = dir.join(WEIGHTS);
    if !weights.is_file() && dir.join("adapter_model.bin").is_file() {
        return Err(io(
            dir.join("adapter_model.bin").display(),
            "PyTorch pickle adapters are not read; save the adapter with safe_serialization",
        ));
    }
    let file = weights.display().to_string();
    let dict = StateDict::read(&weights)?;
    let mut layers: BTreeMap<String, (Factors, Option<Magnitude>)> = BTreeMap::new();
    let mut replacements = BTreeMap::new();
    for key in dict.tensors.keys() {
        let rest = key
            .strip_prefix(PREFIX)
            .ok_or_else(|| FileError::UnexpectedKey {
                file: file.clone(),
                key: key.clone(),
                why: format!("PEFT keys start with `{PREFIX}`"),
            })?;
        let factor = || -> Result<Factor> {
            let (shape, values) = dict.f32(&file, key, "")?;
            Ok(Factor { shape, values })
        };
        if let Some(module) = rest.strip_suffix(".lora_A.weight") {
            let f = factor()?;
            layers
                .entry(module.to_string())
                .or_default()
                .0
                .insert("lora_down.weight".to_string(), f);
        } else if let Some(module) = rest.strip_suffix(".lora_B.weight") {
            let f = factor()?;
            layers
                .entry(module.to_string())
                .or_default()
                .0
                .insert("lora_up.weight".to_string(), f);
        } else if let Some(module) = rest.strip_suffix(".lora_magnitude_vector") {
            let Factor {
                shape: values_shape,
                values,
            } = factor()?;
            if !config.dora {
                return Err(FileError::UnexpectedKey {
                    file: file.clone(),
                    key: key.clone(),
                    why: "a DoRA magnitude, but the config says use_dora = false".to_string(),
                });
            }
            layers.entry(module.to_string()).or_default().1 = Some(Magnitude {
                layout: MagnitudeLayout::PeftOut,
                values,
                shape: values_shape,
            });
        } else if config.modules_to_save.iter().any(|m| {
            rest.rsplit_once('.')
                .is_some_and(|(module, _)| names_module(m, module))
        }) {
            let stored = dict.tensors[key].clone();
            replacements.insert(rest.to_string(), stored);
        } else {
            let last = rest
                .rsplit('.')
                .find(|p| {
                    p.starts_with("lora_")
                        || p.starts_with("hada_")
                        || p.starts_with("lokr_")
                        || p.starts_with("oft_")
                        || p.starts_with("ia3_")
                })
                .unwrap_or(rest);
            if let Some(algorithm) = unsupported_algorithm(last) {
                return Err(FileError::UnsupportedAlgorithm {
                    file: file.clone(),
                    key: key.clone(),
                    algorithm: algorithm.to_string(),
                    why: "only LoRA and DoRA adapters are read from PEFT files".to_string(),
                });
            }
            return Err(FileError::UnexpectedKey {
                file: file.clone(),
                key: key.clone(),
                why: "neither a LoRA factor nor an entry of modules_to_save".to_string(),
            });
        }
    }
    let mut out = Vec::new();
    for (module, (factors, magnitude)) in layers {
        let key_prefix = format!("{PREFIX}{module}");
        let site = crate::algorithm::Site::new(&file, &key_prefix);
        for needed in ["lora_down.weight", "lora_up.weight"] {
            site.factor(&factors, needed)
                .map_err(|_| FileError::MissingKey {
                    file: file.clone(),
                    key: format!(
                        "{key_prefix}.{}",
                        if needed == "lora_down.weight" {
                            "lora_A.weight"
                        } else {
                            "lora_B.weight"
                        }
                    ),
                    why: "the layer's other LoRA factor is present".to_string(),
                })?;
        }
        let linear = factors
            .get("lora_down.weight")
            .is_some_and(|f| f.shape.len() == 2);
        if !config.targets.admits(&module, linear) {
            return Err(FileError::Config {
                file: config_file.clone(),
                field: "target_modules".to_string(),
                value: module.clone(),
                why: format!(
                    "{file} holds factors for this module, which target_modules does not name"
                ),
            });
        }
        if config.dora && magnitude.is_none() {
            return Err(FileError::MissingKey {
                file: file.clone(),
                key: format!("{key_prefix}.lora_magnitude_vector"),
                why: "the config says use_dora = true".to_string(),
            });
        }
        use crate::algorithm::Algorithm;
        let rank = LoCon.rank(site, &factors)?;
        let expected_rank = config
            .rank_pattern
            .iter()
            .find(|(re, _, _)| re.is_match(&module))
            .map_or(config.r, |(_, _, r)| *r);
        if rank != expected_rank {
            return Err(site.shape_error(
                "lora_A.weight",
                format!("rank {expected_rank} (r or rank_pattern in {config_file})"),
                &factors["lora_down.weight"].shape,
            ));
        }
        let alpha = config
            .alpha_pattern
            .iter()
            .find(|(re, _, _)| re.is_match(&module))
            .map_or(config.alpha, |(_, _, a)| *a);
        let scale = if config.rslora {
            alpha / (rank as f64).sqrt()
        } else {
            alpha / rank as f64
        };
        // A grouped conv's layout (lora_B narrower than lora_A's rank) becomes a grouped LoCon;
        // the scale stays the config's, alpha over the rank PEFT sees.
        let (factors, rank, groups) = peft_groups::from_peft(&file, &key_prefix, factors)?;
        if groups > 1 && magnitude.is_some() {
            return Err(FileError::UnexpectedKey {
                file: file.clone(),
                key: format!("{key_prefix}.lora_magnitude_vector"),
                why: format!("DoRA on a conv with groups = {groups} is not read"),
            });
        }
        let layer = LayerAdapter {
            module: module.clone(),
            key_prefix,
            algorithm: &LoCon,
            factors,
            rank,
            alpha: Some(alpha),
            scale,
            magnitude,
            base_shape: None,
            groups,
        };
        // Check the factors fit together now, so that a bad file fails on reading.
        layer.delta(&file)?;
        out.push(layer);
    }
    Ok(AdapterFile {
        source: dir.display().to_string(),
        format: Format::Peft,
        layers: out,
        replacements,
        rslora: config.rslora,
        diffs: Default::default(),
    })
}

/// Write a PEFT adapter directory (config and weights, each atomically).
///
/// # Errors
/// [`FileError::Inexpressible`] naming the first layer PEFT LoRA cannot hold (any algorithm
/// but LoRA/LoCon, a LyCORIS DoRA magnitude per input channel); [`FileError::Io`].
pub fn write(adapter: &AdapterFile, dir: &Path) -> Result<()> {
    let mut dict = StateDict::default();
    dict.metadata.insert("format".to_string(), "pt".to_string());
    let rank_of = peft_groups::peft_rank;
    let alpha_of = |l: &LayerAdapter| {
        if adapter.rslora {
            l.scale * (rank_of(l) as f64).sqrt()
        } else {
            l.scale * rank_of(l) as f64
        }
    };
    for layer in &adapter.layers {
        let Some(factors) = layer.algorithm.peft_factors(layer) else {
            return Err(refuse_inexpressible(
                layer,
                Format::Peft,
                "PEFT LoRA files hold LoRA/LoCon factors only (lora_A, lora_B)",
            ));
        };
        let (a, b) = factors?;
        let prefix = format!("{PREFIX}{}", layer.module);
        let axes = a.shape.len();
        for (theirs, f) in [("lora_A.weight", a), ("lora_B.weight", b)] {
            dict.tensors.insert(
                format!("{prefix}.{theirs}"),
                Stored::from_f32(f.shape, &f.values),
            );
        }
        if let Some(m) = &layer.magnitude {
            if m.layout == MagnitudeLayout::LycorisIn {
                return Err(refuse_inexpressible(
                    layer,
                    Format::Peft,
                    "PEFT's DoRA magnitude is per output channel; this one is per input channel",
                ));
            }
            // [out] beside a linear lora_A, [1, out, 1..] beside a conv's.
            let shape = if axes == 2 {
                vec![m.values.len()]
            } else {
                let mut s = vec![1, m.values.len()];
                s.extend(std::iter::repeat_n(1, axes.saturating_sub(2)));
                s
            };
            dict.tensors.insert(
                format!("{prefix}.lora_magnitude_vector"),
                Stored::from_f32(shape, &m.values),
            );
        }
    }
    for (key, stored) in &adapter.replacements {
        dict.tensors
            .insert(format!("{PREFIX}{key}"), stored.clone());
    }
    // The most common rank and alpha are the defaults; the others go to the patterns, keyed by
    // the escaped full module path (PEFT matches `(.*\.)?KEY$`).
    let most_common = |values: Vec<String>| -> Option<String> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for v in values {
            *counts.entry(v).or_default() += 1;
        }
        counts.into_iter().max_by_key(|(_, c)| *c).map(|(v, _)| v)
    };
    let r: usize = most_common(
        adapter
            .layers
            .iter()
            .map(|l| rank_of(l).to_string())
            .collect(),
    )
    .and_then(|s| s.parse().ok())
    .unwrap_or(8);
    let alpha: f64 = most_common(
        adapter
            .layers
            .iter()
            .map(|l| alpha_of(l).to_string())
            .collect(),
    )
    .and_then(|s| s.parse().ok())
    .unwrap_or(r as f64);
    let mut rank_pattern = Map::new();
    let mut alpha_pattern = Map::new();
    for l in &adapter.layers {
        let key = regex::escape(&l.module);
        if rank_of(l) != r {
            rank_pattern.insert(key.clone(), json!(rank_of(l)));
        }
        if alpha_of(l) != alpha {
            alpha_pattern.insert(key, json!(alpha_of(l)));
        }
    }
    let modules_to_save: Vec<String> = adapter
        .replacements
        .keys()
        .filter_map(|k| k.rsplit_once('.').map(|(m, _)| m.to_string()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let config = json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": null,
        "inference_mode": true,
        "r": r,
        "lora_alpha": alpha,
        "use_rslora": adapter.rslora,
        "use_dora": adapter.layers.iter().any(|l| l.magnitude.is_some()),
        "target_modules": adapter.layers.iter().map(|l| l.module.clone()).collect::<Vec<_>>(),
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "modules_to_save": if modules_to_save.is_empty() { Value::Null } else { json!(modules_to_save) },
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "init_lora_weights": true,
        "lora_bias": false,
    });
    if adapter.layers.iter().any(|l| l.magnitude.is_some())
        != adapter.layers.iter().all(|l| l.magnitude.is_some())
    {
        let layer = adapter.layers.iter().find(|l| l.magnitude.is_none());
        if let Some(layer) = layer {
            return Err(refuse_inexpressible(
                layer,
                Format::Peft,
                "PEFT's use_dora applies to every layer; this one has no magnitude while others do",
            ));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| io(dir.display(), e))?;
    let text =
        serde_json::to_string_pretty(&config).map_err(|e| io(dir.join(CONFIG).display(), e))?;
    let weights = dir.join(WEIGHTS);
    let bytes = dict.to_bytes(&weights.display().to_string())?;
    crate::atomic::write_atomic(&weights, &bytes)?;
    crate::atomic::write_atomic(&dir.join(CONFIG), text.as_bytes())
}
