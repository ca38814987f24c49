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
//! any other. LoRA/LoCon, Tucker-2, CP, LoHa (with or without Tucker cores), LoKr, DoRA (per
//! output channel) and any type registered with `lora_conv` have trainable module types; LoKr
//! with a Tucker core and LyCORIS's per-input-channel DoRA do not, and a file holding them is refused
//! by layer (merge them into the base with [`crate::merge::merge`] instead).

use std::collections::{BTreeMap, HashMap};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor, TensorData};
use lora_conv::{
    AnyAdapter, ConvAdapter, CpAdapter, DoraAdapter, LoConAdapter, LoHaAdapter, LoHaTuckerAdapter,
    LoKrAdapter, Tucker2Adapter, conv_config,
};
use lora_core::{AdapterFactory, AdapterSpec, LoraError};
use regex::Regex;

use crate::adapter::{AdapterFile, Format, LayerAdapter, MagnitudeLayout};
use crate::algorithm::{Cp, Factor, Factors, LoCon, LoHa, LoKr, Tucker2};
use crate::error::{FileError, Result};
use crate::state_dict::StateDict;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};

mod extras;
mod foreign;
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

/// Why a layer could not become a trainable adapter: the algorithm or DoRA has no module type.
fn no_module(layer: &LayerAdapter, why: &str) -> FileError {
    FileError::Inexpressible {
        layer: layer.module.clone(),
        algorithm: layer.algorithm.name().to_string(),
        format: "a burn model".to_string(),
        why: why.to_string(),
    }
}

fn tensor<const N: usize>(f: &Factor, device: &Device) -> Tensor<N> {
    let mut shape = [1usize; N];
    for (s, d) in shape.iter_mut().zip(&f.shape) {
        *s = *d;
    }
    Tensor::from_data(TensorData::new(f.values.clone(), shape), device)
}

/// A factor as the matrix `[first axis, the rest]`.
fn matrix(f: &Factor, device: &Device) -> Tensor<2> {
    let rows = f.shape.first().copied().unwrap_or(1).max(1);
    Tensor::from_data(
        TensorData::new(f.values.clone(), [rows, f.values.len() / rows]),
        device,
    )
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
    let f = |n: &str| &layer.factors[n];
    let rank = |n: &str| layer.factors[n].shape.len();
    let wrong = |reason: String| LoraError::UnsupportedGeometry {
        path: path.to_string(),
        reason,
    };
    macro_rules! by_rank {
        ($n:expr, $d:ident => $e:expr) => {
            match $n {
                3 => {
                    const $d: usize = 3;
                    $e
                }
                4 => {
                    const $d: usize = 4;
                    $e
                }
                5 => {
                    const $d: usize = 5;
                    $e
                }
                other => Err(wrong(format!("a conv factor has 3 to 5 axes, this one {other}"))),
            }
        };
    }
    let param = |n: &str| Param::from_tensor(tensor::<2>(f(n), device));
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
        if layer.algorithm.name() != "lora" {
            return Err(wrong(format!(
                "DoRA on {} has no trainable module type (DoRA here wraps LoRA/LoCon)",
                layer.algorithm.name()
            )));
        }
        let plain = LayerAdapter {
            magnitude: None,
            ..layer.clone()
        };
        let lora = build_torch(&plain, source, path, shape, device)?
            .into_inner::<LoConAdapter>()
            .ok_or_else(|| wrong("the LoRA factors did not build a LoCon adapter".into()))?;
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
    match layer.algorithm.name() {
        "lora" if rank("lora_down.weight") == 2 => {
            // PEFT's layout is LoCon's on the PyTorch layout [out, in]; the carrier transposes
            // the update into burn's [in, out].
            let (down, up) = (f("lora_down.weight"), f("lora_up.weight"));
            if down.shape[0] != up.shape[1] {
                return Err(LoraError::ShapeMismatch {
                    path: format!("{path} (lora_up)"),
                    expected: vec![up.shape[0], down.shape[0]],
                    actual: up.shape.clone(),
                });
            }
            Ok(AnyAdapter::new(LoConAdapter {
                down: param("lora_down.weight"),
                up: param("lora_up.weight"),
                scale: layer.scale,
                shape: vec![up.shape[0], down.shape[1]],
            }))
        }
        "lora" => {
            by_rank!(rank("lora_down.weight"), D => Ok(AnyAdapter::new(LoConAdapter::from_peft::<D>(
            path,
            tensor::<D>(f("lora_down.weight"), device),
            tensor::<D>(f("lora_up.weight"), device),
            layer.scale,
        )?)))
        }
        "tucker2" => {
            by_rank!(rank("lora_mid.weight"), D => Ok(AnyAdapter::new(Tucker2Adapter::from_lycoris::<D>(
            path,
            tensor::<D>(f("lora_down.weight"), device),
            tensor::<D>(f("lora_mid.weight"), device),
            tensor::<D>(f("lora_up.weight"), device),
            layer.scale,
        )?)))
        }
        "cp" => {
            let (up, down) = (f("cp_up"), f("cp_down"));
            let spatial: Vec<&Factor> = (0..layer.factors.len() - 2)
                .map(|j| f(&format!("cp_spatial_{j}")))
                .collect();
            let mut shape = vec![up.shape[0], down.shape[1]];
            shape.extend(spatial.iter().map(|s| s.shape[0]));
            Ok(AnyAdapter::new(CpAdapter {
                up: param("cp_up"),
                down: param("cp_down"),
                spatial: spatial
                    .iter()
                    .map(|s| Param::from_tensor(tensor::<2>(s, device)))
                    .collect(),
                scale: layer.scale,
                shape,
            }))
        }
        "loha" if layer.factors.contains_key("hada_t1") => {
            // LyCORIS's Tucker form: hada_w{1,2}_a [r, out], hada_w{1,2}_b [r, in],
            // hada_t{1,2} [r, r, k..].
            let a = f("hada_w1_a");
            let r = a.shape.first().copied().unwrap_or(0);
            let flat = |n: &str| matrix(f(n), device);
            let adapter = LoHaTuckerAdapter {
                w1_a: Param::from_tensor(flat("hada_w1_a").transpose()),
                w1_b: Param::from_tensor(flat("hada_w1_b")),
                t1: Param::from_tensor(flat("hada_t1")),
                w2_a: Param::from_tensor(flat("hada_w2_a").transpose()),
                w2_b: Param::from_tensor(flat("hada_w2_b")),
                t2: Param::from_tensor(flat("hada_t2")),
                scale: layer.scale,
                shape: shape.to_vec(),
            };
            let expected = LoHaTuckerAdapter::param_count(shape, r);
            if lora_core::Adapter::trainable_params(&adapter) != expected {
                return Err(wrong(format!(
                    "LoHa Tucker factors of rank {r} do not fit a weight of shape {shape:?}"
                )));
            }
            Ok(AnyAdapter::new(adapter))
        }
        "loha" => {
            let (a, b) = (f("hada_w1_a"), f("hada_w1_b"));
            if shape.first() != a.shape.first()
                || shape[1..].iter().product::<usize>() != b.shape[1]
            {
                return Err(LoraError::ShapeMismatch {
                    path: format!("{path} (hada_w1_a · hada_w1_b)"),
                    expected: shape.to_vec(),
                    actual: vec![a.shape[0], b.shape[1]],
                });
            }
            let shape = shape.to_vec();
            Ok(AnyAdapter::new(LoHaAdapter {
                w1_a: param("hada_w1_a"),
                w1_b: param("hada_w1_b"),
                w2_a: param("hada_w2_a"),
                w2_b: param("hada_w2_b"),
                scale: layer.scale,
                shape,
            }))
        }
        "lokr" if layer.factors.contains_key("lokr_t2") => Err(wrong(
            "LoKr with a Tucker core (lokr_t2) has no trainable module type; merge it into the \
             base instead"
                .into(),
        )),
        "lokr" => {
            let mat = |n: &str| matrix(f(n), device);
            let w1 = if layer.factors.contains_key("lokr_w1") {
                mat("lokr_w1")
            } else {
                mat("lokr_w1_a").matmul(mat("lokr_w1_b"))
            };
            let w2 = if layer.factors.contains_key("lokr_w2") {
                Err(mat("lokr_w2"))
            } else {
                Ok((mat("lokr_w2_a"), mat("lokr_w2_b")))
            };
            Ok(AnyAdapter::new(LoKrAdapter::from_factors(
                path,
                shape,
                w1,
                w2,
                layer.scale,
            )?))
        }
        other => match crate::algorithm::Module::by_name_typed(other) {
            Some(module) => {
                let site = crate::algorithm::Site::new(source, &layer.key_prefix);
                module
                    .adapter(site, shape, layer.rank, layer.scale, &layer.factors, device)
                    .map_err(|e| wrong(e.to_string()))
            }
            None => Err(wrong(format!("no trainable module type for {other}"))),
        },
    }
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
    let foreign = foreign::burn_lora_paths(model);
    if !foreign.is_empty() {
        return Err(foreign::refuse_burn_lora(
            &foreign,
            "attaching an adapter file",
        ));
    }
    let mut layers = HashMap::new();
    for layer in &file.layers {
        let name = layer.algorithm.name();
        let known = ["lora", "tucker2", "cp", "loha", "lokr"].contains(&name)
            || crate::algorithm::Module::by_name_typed(name).is_some();
        if !known {
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

fn ones(n: usize) -> impl Iterator<Item = usize> {
    std::iter::repeat_n(1, n)
}

/// The file-level view of one adapted weight: algorithm, PyTorch-layout factors and rank.
fn export(seen: &Seen) -> Option<(&'static dyn crate::Algorithm, Factors, usize)> {
    // Below the reparameterization: `adapter`, then the adapter type's name, then the factor.
    let mut parts: BTreeMap<String, (&Vec<usize>, &Vec<f32>)> = BTreeMap::new();
    let mut variant = String::new();
    for (path, dims, values) in &seen.factors {
        let rest: Vec<&str> = path
            .iter()
            .skip_while(|p| *p != "adapter")
            .skip(1)
            .map(String::as_str)
            .collect();
        if let [name, factor @ ..] = rest.as_slice() {
            variant = name.to_string();
            parts.insert(factor.join("."), (dims, values));
        }
    }
    // DoRA: LoRA factors below `lora`, and the magnitude beside them.
    if variant == "dora" {
        parts = parts
            .into_iter()
            .filter_map(|(n, v)| n.strip_prefix("lora.").map(|n| (n.to_string(), v)))
            .collect();
        variant = "locon".to_string();
    }
    let k = &seen.shape;
    let get = |n: &str| parts.get(n).copied();
    let mut f = Factors::new();
    let put = |f: &mut Factors, name: &str, shape: Vec<usize>, values: Vec<f32>| {
        f.insert(name.to_string(), Factor { shape, values });
    };
    match variant.as_str() {
        // A linear LoCon is PEFT's LoRA, already in PyTorch layout.
        "locon" if k.len() == 2 => {
            let ((dd, dv), (ud, uv)) = (get("down")?, get("up")?);
            put(&mut f, "lora_down.weight", dd.clone(), dv.clone());
            put(&mut f, "lora_up.weight", ud.clone(), uv.clone());
            Some((&LoCon, f, dd[0]))
        }
        "locon" => {
            let ((dd, dv), (_, uv)) = (get("down")?, get("up")?);
            let r = dd[0];
            put(
                &mut f,
                "lora_down.weight",
                [r].into_iter().chain(k[1..].iter().copied()).collect(),
                dv.clone(),
            );
            put(
                &mut f,
                "lora_up.weight",
                [k[0], r].into_iter().chain(ones(k.len() - 2)).collect(),
                uv.clone(),
            );
            Some((&LoCon, f, r))
        }
        "tucker2" => {
            let ((dd, dv), (_, mv), (_, uv)) = (get("down")?, get("mid")?, get("up")?);
            let r = dd[0];
            put(
                &mut f,
                "lora_down.weight",
                [r, dd[1]].into_iter().chain(ones(k.len() - 2)).collect(),
                dv.clone(),
            );
            put(
                &mut f,
                "lora_mid.weight",
                [r, r].into_iter().chain(k[2..].iter().copied()).collect(),
                mv.clone(),
            );
            put(
                &mut f,
                "lora_up.weight",
                [k[0], r].into_iter().chain(ones(k.len() - 2)).collect(),
                uv.clone(),
            );
            Some((&Tucker2, f, r))
        }
        "cp" => {
            let ((ud, uv), (dd, dv)) = (get("up")?, get("down")?);
            put(&mut f, "cp_up", ud.clone(), uv.clone());
            put(&mut f, "cp_down", dd.clone(), dv.clone());
            for j in 0..k.len().saturating_sub(2) {
                let (sd, sv) = get(&format!("spatial.{j}"))?;
                put(&mut f, &format!("cp_spatial_{j}"), sd.clone(), sv.clone());
            }
            Some((&Cp, f, dd[0]))
        }
        "loha" => {
            for name in ["w1_a", "w1_b", "w2_a", "w2_b"] {
                let (d, v) = get(name)?;
                put(&mut f, &format!("hada_{name}"), d.clone(), v.clone());
            }
            let rank = get("w1_a")?.0[1];
            Some((&LoHa, f, rank))
        }
        "loha-tucker" => {
            // LyCORIS's Tucker layout: the output sides transposed, the cores unflattened.
            for which in ["1", "2"] {
                let (da, va) = get(&format!("w{which}_a"))?;
                let a = Factor {
                    shape: da.clone(),
                    values: va.clone(),
                }
                .transposed();
                f.insert(format!("hada_w{which}_a"), a);
                let (db, vb) = get(&format!("w{which}_b"))?;
                put(&mut f, &format!("hada_w{which}_b"), db.clone(), vb.clone());
                let (dt, vt) = get(&format!("t{which}"))?;
                let core = [dt[0], dt[0]].into_iter().chain(k.iter().skip(2).copied());
                put(
                    &mut f,
                    &format!("hada_t{which}"),
                    core.collect(),
                    vt.clone(),
                );
            }
            let rank = get("w1_a")?.0[1];
            Some((&LoHa, f, rank))
        }
        "lokr" => {
            let (d1, v1) = get("w1")?;
            put(&mut f, "lokr_w1", d1.clone(), v1.clone());
            let rank = match (get("w2"), get("w2_a"), get("w2_b")) {
                (Some((d, v)), _, _) => {
                    // LyCORIS stores a full w2 as [b, c2, k..].
                    // In PyTorch layout: burn's Linear weight is [in, out].
                    let c = if k.len() == 2 {
                        k[0]
                    } else {
                        k.get(1).copied().unwrap_or(1)
                    };
                    let c2 = c / d1[1].max(1);
                    let shape = [d[0], c2].into_iter().chain(k.iter().skip(2).copied());
                    put(&mut f, "lokr_w2", shape.collect(), v.clone());
                    1
                }
                (None, Some((da, va)), Some((db, vb))) => {
                    put(&mut f, "lokr_w2_a", da.clone(), va.clone());
                    put(&mut f, "lokr_w2_b", db.clone(), vb.clone());
                    da[1]
                }
                _ => return None,
            };
            Some((&LoKr, f, rank))
        }
        // Any other type registered with lora_conv: its module's factors, by name.
        other => {
            let algorithm = crate::algorithm::Module::by_name(other)?;
            let module = crate::algorithm::Module::by_name_typed(other)?;
            let torch: Vec<usize> = match k.as_slice() {
                [d_in, d_out] => vec![*d_out, *d_in],
                _ => k.clone(),
            };
            for (name, (d, v)) in &parts {
                put(&mut f, name, (*d).clone(), (*v).clone());
            }
            let rank = module.exported_rank(&torch, &f)?;
            Some((algorithm, f, rank))
        }
    }
}

/// The adapters of `model` as an adapter file (native, unless written in another format),
/// the layer at burn path `p.weight` named `back(p)`, with whatever else training may have
/// changed as whole-tensor replacements in PyTorch names and layouts: the model's other
/// trainable parameters (a new head, BatchNorm affine) and every BatchNorm's running
/// statistics ([`RunningStats::All`]), so that [`attach_file`] on the base gives back this
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
    let foreign = foreign::burn_lora_paths(model);
    if !foreign.is_empty() {
        return Err(foreign::refuse_burn_lora(
            &foreign,
            "saving an adapter file",
        ));
    }
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
                        .chain(ones(seen.shape.len() - 2))
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
