//! A model's adapters back into an adapter file: each adapted weight's module is read back from
//! its parameters, and the algorithm that writes that module type
//! ([`crate::Algorithm::read_module`]) gives the file's factors.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

use super::{PathMap, RunningStats, extras, foreign};
use crate::adapter::{AdapterFile, Format, LayerAdapter};
use crate::algorithm::{Factors, ModuleFactors, Registry};
use crate::error::{FileError, Result};

/// One adapted weight as a visitor sees it: the base's path and shape, and the factor
/// tensors inside its reparameterization by their path below it (`adapter.locon.down`).
#[derive(Default)]
struct Seen {
    path: String,
    shape: Vec<usize>,
    factors: Vec<(Vec<String>, Vec<usize>, Vec<f32>)>,
    merged: bool,
    scale: Option<f64>,
}

/// Collects the adapted weights of a model. burn hands visitors the base without its
/// reparameterization, so the adapter is read back from its parameters (factors, and the
/// `merged` and `scale` integers of [`lora_core::LoraParam`]), not downcast.
#[derive(Default)]
struct Collector {
    at: lora_core::Position,
    below: usize,
    last: Option<(String, Vec<usize>)>,
    seen: Vec<Seen>,
    /// Trainable parameters outside any reparameterization (a head, BatchNorm affine).
    trainable: Vec<String>,
}

impl ModuleVisitor for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if self.at.enter(name, container_type)
            && let Some((path, shape)) = self.last.take()
        {
            self.below = self.at.names().len();
            self.seen.push(Seen {
                path,
                shape,
                ..Seen::default()
            });
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.at.outside() {
            if param.is_require_grad() {
                self.trainable.push(self.at.path());
            }
            self.last = Some((self.at.path(), param.lazy_shape().to_vec()));
        } else if let Some(seen) = self.seen.last_mut() {
            let value = param.val();
            let dims = value.dims().to_vec();
            let values = value.into_data().try_to_vec::<f32>().unwrap_or_default();
            seen.factors
                .push((self.at.names()[self.below..].to_vec(), dims, values));
        }
    }

    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, burn::tensor::Int>>) {
        if self.at.depth() != 1 {
            return;
        }
        let Some(seen) = self.seen.last_mut() else {
            return;
        };
        let first = param.val().into_data().iter::<i64>().next();
        match self.at.last() {
            Some("merged") => seen.merged = first.is_some_and(|v| v != 0),
            Some("scale") => seen.scale = first.map(lora_core::scale_from_bits),
            _ => {}
        }
    }
}

/// The file-level view of one adapted weight: algorithm, PyTorch-layout factors and rank.
fn export(seen: &Seen) -> Option<(&'static dyn crate::Algorithm, Factors, usize)> {
    // Below the reparameterization: `adapter`, then the adapter type's name, then the factor.
    // lora-core's own linear LoRA (`LinearAdapter`, the carrier-free `LinearFactory`) has no
    // type level: `adapter.down [d_in, r]` and `adapter.up [r, d_out]`, burn layout. It is LoCon
    // on a linear weight, its factors transposed into PyTorch's (`[r, d_in]`, `[d_out, r]`),
    // so both linear LoRAs give the same file.
    let mut transposed = Vec::new();
    let mut variant = String::new();
    let mut nested = Vec::new();
    for (path, dims, values) in &seen.factors {
        let rest: Vec<&str> = path
            .iter()
            .skip_while(|p| *p != "adapter")
            .skip(1)
            .map(String::as_str)
            .collect();
        match rest.as_slice() {
            [factor @ ("down" | "up")] if dims.len() == 2 && seen.shape.len() == 2 => {
                variant = "locon".to_string();
                let t = crate::algorithm::Factor {
                    shape: dims.clone(),
                    values: values.clone(),
                }
                .transposed();
                transposed.push((factor.to_string(), t));
            }
            [name, factor @ ..] => {
                variant = name.to_string();
                nested.push((factor.join("."), (dims, values)));
            }
            [] => {}
        }
    }
    let mut parts: ModuleFactors<'_> = nested.into_iter().collect();
    for (name, f) in &transposed {
        parts.insert(name.clone(), (&f.shape, &f.values));
    }
    // DoRA: LoRA factors below `lora`, and the magnitude beside them.
    if variant == "dora" {
        parts = parts
            .into_iter()
            .filter_map(|(n, v)| n.strip_prefix("lora.").map(|n| (n.to_string(), v)))
            .collect();
        variant = "locon".to_string();
    }
    // The built-in algorithm of that name, else any other type registered with lora_conv (its
    // module's factors, by name).
    let algorithm = Registry::builtin().by_name(&variant)?;
    let (factors, rank) = algorithm.read_module(&parts, &seen.shape)?;
    Some((algorithm, factors, rank))
}

/// The adapters of `model` as an adapter file (native, unless written in another format),
/// the layer at burn path `p.weight` named `back(p)`, with whatever else training may have
/// changed as whole-tensor replacements in PyTorch names and layouts: the model's other
/// trainable parameters (a new head, BatchNorm affine) and every BatchNorm's running
/// statistics ([`RunningStats::All`]), so that [`super::attach_file`] on the base gives back this
/// model's outputs bit for bit. [`file_from_model_with`] saves fewer statistics.
///
/// # Errors
/// [`FileError::Inexpressible`] naming the first merged weight (unmerge before saving: the
/// factors of a merged adapter no longer say what the base holds); [`FileError::Config`] when
/// the model carries no adapter, carries burn's own LoRA (`Module::apply_lora`, which
/// the file could not hold), or a burn path does not end in `.weight`;
/// [`FileError::Io`] when burn-store cannot save the model's state.
pub fn file_from_model<M: Module>(model: &M, back: &PathMap) -> Result<AdapterFile> {
    file_from_model_with(model, back, RunningStats::All)
}

/// [`file_from_model`], saving the BatchNorm running statistics `stats` selects: all of them,
/// those that differ from a base state dict's, or none (a file that reproduces the model only
/// if its statistics are the base's, and that LyCORIS can hold if nothing else is replaced).
///
/// # Errors
/// As [`file_from_model`]; also [`FileError::MissingKey`] when [`RunningStats::ChangedFrom`]'s
/// state dict lacks a running statistic the model has (check the path map).
pub fn file_from_model_with<M: Module>(
    model: &M,
    back: &PathMap,
    stats: RunningStats<'_>,
) -> Result<AdapterFile> {
    foreign::refuse_burn_lora(model, "saving an adapter file")?;
    let mut c = Collector::default();
    model.visit(&mut c);
    // Only this workspace's adapters: they carry the `scale` integer (burn's own LoRA does not).
    let ours: Vec<&Seen> = c.seen.iter().filter(|s| s.scale.is_some()).collect();
    if let Some(seen) = ours.iter().find(|s| s.merged) {
        return Err(FileError::Inexpressible {
            layer: seen.path.clone(),
            algorithm: "merged adapter".to_string(),
            format: "an adapter file".to_string(),
            why: "the weight is merged; unmerge before saving".to_string(),
        });
    }
    if ours.is_empty() {
        return Err(FileError::Config {
            file: "model".to_string(),
            field: "adapters".to_string(),
            value: "[]".to_string(),
            why: "the model carries no adapter of this workspace".to_string(),
        });
    }
    let mut layers = BTreeMap::new();
    for seen in ours {
        let config = |why: &str| FileError::Config {
            file: "model".to_string(),
            field: "adapted parameter".to_string(),
            value: seen.path.clone(),
            why: why.to_string(),
        };
        let (algorithm, factors, rank) =
            export(seen).ok_or_else(|| config("its adapter's parameters are not a known type"))?;
        // A DoRA magnitude, in PEFT's layout: [out] for a linear weight, [1, out, 1..] for a
        // kernel.
        let is_dora = seen
            .factors
            .iter()
            .any(|(path, _, _)| path.iter().any(|p| p == "dora"));
        let magnitude = seen
            .factors
            .iter()
            .filter(|_| is_dora)
            .find(|(path, _, _)| path.last().map(String::as_str) == Some("magnitude"))
            .map(|(_, dims, values)| {
                let out = dims.first().copied().unwrap_or(0);
                let shape = if seen.shape.len() == 2 {
                    vec![out]
                } else {
                    [1, out]
                        .into_iter()
                        .chain(std::iter::repeat_n(1, seen.shape.len() - 2))
                        .collect()
                };
                crate::adapter::Magnitude {
                    layout: crate::adapter::MagnitudeLayout::PeftOut,
                    values: values.clone(),
                    shape,
                }
            });
        let module = seen.path.strip_suffix(".weight").ok_or_else(|| {
            config("adapter files name modules; the parameter must be a `.weight`")
        })?;
        let module = back.apply(module);
        let scale = seen.scale.unwrap_or(1.0);
        layers.insert(
            module.clone(),
            LayerAdapter {
                key_prefix: module.clone(),
                module,
                algorithm,
                factors,
                rank,
                alpha: Some(scale * rank as f64),
                scale,
                magnitude,
                // PyTorch layout: burn's Linear is [d_in, d_out].
                base_shape: Some(if seen.shape.len() == 2 {
                    vec![seen.shape[1], seen.shape[0]]
                } else {
                    seen.shape.clone()
                }),
                // burn's visitor does not see a conv's groups; a caller writing PEFT for a
                // grouped conv sets it.
                groups: 1,
            },
        );
    }
    let replacements = extras::extras(model, &c.trainable, back, stats)?;
    Ok(AdapterFile {
        source: "model".to_string(),
        format: Format::Native,
        layers: layers.into_values().collect(),
        replacements,
        rslora: false,
        diffs: Default::default(),
    })
}
