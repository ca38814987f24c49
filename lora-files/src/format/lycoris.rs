//! LyCORIS and kohya `.safetensors` files: keys `<prefix>_<module path, dots as underscores>.
//! <factor>` plus a scalar `.alpha` and, with DoRA, `.dora_scale`.
//!
//! The path mapping loses information (`a.b_c` and `a_b.c` give the same key), so a key is
//! resolved by mapping the base's own module paths forward ([`resolve`]), as LyCORIS does,
//! never by parsing it. Until then each layer's `module` is its key stem.
//!
//! LyCORIS's `full` algorithm (`<stem>.diff`, the weight minus the base's, and optionally
//! `.diff_b` for the bias; LyCORIS 4.1.3 wraps Linear and Conv1d/2d/3d with it) is read into
//! [`AdapterFile::diffs`] and written from there.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::adapter::{AdapterFile, Format, LayerAdapter, Magnitude, MagnitudeLayout};
use crate::algorithm::{Factor, Factors, Site, unsupported_algorithm};
use crate::error::{FileError, Result};
use crate::format::{ReadOptions, refuse_inexpressible};
use crate::state_dict::{StateDict, Stored};

/// Read a LyCORIS/kohya file. Layers keep their key stem as `module` until [`resolve`].
///
/// # Errors
/// [`FileError::Io`] for a missing, truncated or corrupt file;
/// [`FileError::UnsupportedAlgorithm`] for keys of a known algorithm not implemented here;
/// [`FileError::UnexpectedKey`] for a key without a known prefix or of no known algorithm;
/// [`FileError::Shape`], [`FileError::NonFinite`].
pub fn read(path: &Path, options: &ReadOptions) -> Result<AdapterFile> {
    let file = path.display().to_string();
    let dict = StateDict::read(path)?;
    let mut prefixes = options.prefixes.clone();
    prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut stems: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for key in dict.tensors.keys() {
        let Some((stem, _)) = key.split_once('.') else {
            return Err(FileError::UnexpectedKey {
                file,
                key: key.clone(),
                why: "LyCORIS keys are `<prefix>_<module>.<factor>`".to_string(),
            });
        };
        if !prefixes.iter().any(|p| stem.starts_with(&format!("{p}_"))) {
            return Err(FileError::UnexpectedKey {
                file,
                key: key.clone(),
                why: format!("its prefix is none of {prefixes:?} (pass the file's prefix)"),
            });
        }
        stems.entry(stem.to_string()).or_default().push(key);
    }
    let mut layers = Vec::new();
    let mut diffs = BTreeMap::new();
    for (stem, keys) in stems {
        // LyCORIS's full algorithm: `diff` (the weight's difference) and optionally `diff_b`.
        let suffixes: Vec<&str> = keys.iter().map(|k| &k[stem.len() + 1..]).collect();
        if suffixes.contains(&"diff") && suffixes.iter().all(|s| ["diff", "diff_b"].contains(s)) {
            for (key, suffix) in keys.iter().zip(&suffixes) {
                dict.f32(&file, key, "")?;
                let base_key = if *suffix == "diff" { "weight" } else { "bias" };
                diffs.insert(format!("{stem}.{base_key}"), dict.tensors[*key].clone());
            }
            continue;
        }
        let mut factors = Factors::new();
        let mut alpha = None;
        let mut magnitude = None;
        for key in keys {
            let suffix = &key[stem.len() + 1..];
            let (shape, values) = dict.f32(&file, key, "")?;
            match suffix {
                "alpha" => {
                    if values.len() != 1 {
                        return Err(FileError::Shape {
                            file,
                            key: key.clone(),
                            expected: "a scalar".to_string(),
                            actual: shape,
                        });
                    }
                    alpha = Some(f64::from(values[0]));
                }
                "dora_scale" => {
                    // [out, 1, ..] (wd_on_out, LyCORIS's default) or [1, in, 1, ..].
                    let per_in = shape.len() >= 2 && shape[0] == 1 && shape[1] > 1;
                    magnitude = Some(Magnitude {
                        layout: if per_in {
                            MagnitudeLayout::LycorisIn
                        } else {
                            MagnitudeLayout::LycorisOut
                        },
                        values,
                        shape,
                    });
                }
                _ => {
                    factors.insert(suffix.to_string(), Factor { shape, values });
                }
            }
        }
        let names: Vec<&str> = factors.keys().map(String::as_str).collect();
        let Some(algorithm) = options.registry.recognise(&names) else {
            let key = names
                .first()
                .map_or(stem.clone(), |n| format!("{stem}.{n}"));
            if let Some(name) = names.iter().find_map(|n| unsupported_algorithm(n)) {
                return Err(FileError::UnsupportedAlgorithm {
                    file,
                    key,
                    algorithm: name.to_string(),
                    why: "no registered algorithm reads these keys".to_string(),
                });
            }
            return Err(FileError::UnexpectedKey {
                file,
                key,
                why: format!("no registered algorithm has exactly the factors {names:?}"),
            });
        };
        let site = Site::new(&file, &stem);
        let rank = algorithm.rank(site, &factors)?;
        let scale = algorithm.scale(alpha, rank, &factors);
        let layer = LayerAdapter {
            module: stem.clone(),
            key_prefix: stem,
            algorithm,
            factors,
            rank,
            alpha,
            scale,
            magnitude,
            base_shape: None,
            groups: 1,
        };
        layer.delta(&file)?;
        layers.push(layer);
    }
    Ok(AdapterFile {
        source: file,
        format: Format::Lycoris,
        layers,
        replacements: BTreeMap::new(),
        rslora: false,
        diffs,
    })
}

/// Map each layer's key stem to the base module whose path, with its dots as underscores and
/// a known prefix in front, is that stem. `modules` are the base's module paths.
///
/// # Errors
/// [`FileError::UnexpectedKey`] naming the stem when no module maps to it, or two do.
pub fn resolve(
    adapter: &mut AdapterFile,
    modules: &BTreeSet<String>,
    prefixes: &[String],
) -> Result<()> {
    if adapter.format != Format::Lycoris {
        return Ok(());
    }
    let mut forward: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for m in modules {
        for p in prefixes {
            forward
                .entry(format!("{p}_{}", m.replace('.', "_")))
                .or_default()
                .push(m);
        }
    }
    let source = adapter.source.clone();
    let find = |stem: &str| -> Result<String> {
        match forward.get(stem).map(Vec::as_slice) {
            Some([m]) => Ok((*m).clone()),
            Some(many) => Err(FileError::UnexpectedKey {
                file: source.clone(),
                key: stem.to_string(),
                why: format!("the base modules {many:?} all map to it"),
            }),
            None => Err(FileError::UnexpectedKey {
                file: source.clone(),
                key: stem.to_string(),
                why: "no module of the base maps to it; check that the base (--base) is the \
                      model the adapter was made for, and the key prefix (--prefix)"
                    .to_string(),
            }),
        }
    };
    let mut diffs = BTreeMap::new();
    for (key, stored) in &adapter.diffs {
        let (stem, what) = key.rsplit_once('.').unwrap_or((key, "weight"));
        let module = if modules.contains(stem) {
            stem.to_string() // already resolved
        } else {
            find(stem)?
        };
        diffs.insert(format!("{module}.{what}"), stored.clone());
    }
    adapter.diffs = diffs;
    for layer in &mut adapter.layers {
        layer.module = find(&layer.key_prefix)?;
    }
    Ok(())
}

/// Write a LyCORIS file with key prefix `prefix` (atomically).
///
/// # Errors
/// [`FileError::Inexpressible`] for an algorithm without a LyCORIS layout (CP), a LoKr
/// with two full matrices and a scale other than 1 (LyCORIS forces 1 there), whole-tensor
/// replacements (turn them into differences with [`crate::merge::replacements_to_diffs`]), or a
/// module both adapted and changed by a difference; [`FileError::Io`].
pub fn write(adapter: &AdapterFile, prefix: &str, path: &Path) -> Result<()> {
    let mut dict = StateDict::default();
    for layer in &adapter.layers {
        if !layer.algorithm.lycoris_names() {
            return Err(refuse_inexpressible(
                layer,
                Format::Lycoris,
                "LyCORIS has no layout for this algorithm's factors; use the native format, or \
                 write its update as a full diff (adapter convert --full-diff, \
                 merge::layers_to_diffs), losing the factors",
            ));
        }
        let forced_one = layer.algorithm.scale(Some(0.0), layer.rank, &layer.factors) == 1.0
            && layer
                .algorithm
                .scale(Some(2.0 * layer.rank as f64), layer.rank, &layer.factors)
                == 1.0;
        if forced_one && layer.scale != 1.0 {
            return Err(refuse_inexpressible(
                layer,
                Format::Lycoris,
                format!(
                    "LyCORIS reads this layout with scale 1, not {}",
                    layer.scale
                ),
            ));
        }
        let stem = format!("{prefix}_{}", layer.module.replace('.', "_"));
        for (name, f) in &layer.factors {
            dict.tensors.insert(
                format!("{stem}.{name}"),
                Stored::from_f32(f.shape.clone(), &f.values),
            );
        }
        let alpha = (layer.scale * layer.rank as f64) as f32;
        dict.tensors
            .insert(format!("{stem}.alpha"), Stored::from_f32(vec![], &[alpha]));
        if let Some(m) = &layer.magnitude {
            let n = m.values.len();
            let shape = match m.layout {
                MagnitudeLayout::PeftOut if m.shape.len() <= 1 => vec![n, 1],
                MagnitudeLayout::PeftOut => {
                    let mut s = vec![n];
                    s.extend(std::iter::repeat_n(1, m.shape.len() - 1));
                    s
                }
                _ => m.shape.clone(),
            };
            dict.tensors.insert(
                format!("{stem}.dora_scale"),
                Stored::from_f32(shape, &m.values),
            );
        }
    }
    if let Some(key) = adapter.replacements.keys().next() {
        return Err(FileError::Inexpressible {
            layer: key.clone(),
            algorithm: "whole-tensor replacement".to_string(),
            format: "lycoris".to_string(),
            why: "LyCORIS holds a replaced Linear or conv as a difference from the base, so a \
                  base is needed: convert with --base (adapter convert does this) or call \
                  merge::replacements_to_diffs first"
                .to_string(),
        });
    }
    for (key, stored) in &adapter.diffs {
        let (module, what) = key.rsplit_once('.').unwrap_or((key, ""));
        let suffix = match what {
            "weight" => "diff",
            "bias" => "diff_b",
            _ => {
                return Err(FileError::Inexpressible {
                    layer: key.clone(),
                    algorithm: "full (diff)".to_string(),
                    format: "lycoris".to_string(),
                    why: "LyCORIS's full module holds a weight and a bias only".to_string(),
                });
            }
        };
        if adapter.layers.iter().any(|l| l.module == module) {
            return Err(FileError::Inexpressible {
                layer: module.to_string(),
                algorithm: "full (diff)".to_string(),
                format: "lycoris".to_string(),
                why: "the module is both adapted and replaced; LyCORIS holds one module per layer"
                    .to_string(),
            });
        }
        let stem = format!("{prefix}_{}", module.replace('.', "_"));
        dict.tensors
            .insert(format!("{stem}.{suffix}"), stored.clone());
    }
    dict.write(path)
}
