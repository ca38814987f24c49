//! Adapter algorithms, recognised from the factor names of one layer (as LyCORIS does), each
//! in its own file, each computing its raw update `ΔW` in the adapted weight's PyTorch layout.
//!
//! To add an algorithm: implement [`Algorithm`] in one file, then register it with one line,
//! [`Registry::with`] (from any crate). Recognition, inspection, merging, the DoRA magnitude and
//! the native format then work for it; the LyCORIS writer takes it when its
//! [`Algorithm::lycoris_names`] says it has a LyCORIS layout, and the PEFT writer when
//! [`Algorithm::peft_factors`] gives its layers as PEFT's `lora_A`/`lora_B`. An algorithm whose
//! layers can train also says how a layer becomes a `lora_conv` module
//! ([`Algorithm::to_module`]) and how a trained module becomes its factors
//! ([`Algorithm::read_module`]), and one whose updates add up by concatenating factors says how
//! ([`Algorithm::concatenate`]); `crate::model`, `crate::set` and `crate::format` call them and
//! hold no per-type code.
//!
//! Each algorithm has one name, the same as its `lora_conv` adapter type's (`locon`, `tucker2`,
//! `cp`, `loha`, `loha-tucker`, `lokr`), and may answer to older names
//! ([`Algorithm::aliases`]): native files before version 3 called LoCon `lora` and LoHa-Tucker
//! `loha`.

use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use lora_conv::AnyAdapter;

use crate::error::{FileError, Result};

mod concat;
mod cp;
mod locon;
mod loha;
mod loha_tucker;
mod lokr;
mod module;
mod modules;
mod tucker;

pub use concat::Part;
pub use cp::Cp;
pub use locon::LoCon;
pub use loha::LoHa;
pub use loha_tucker::LoHaTucker;
pub use lokr::LoKr;
pub use module::Module;
pub use modules::{ModuleFactors, ModuleLayer};
pub use tucker::Tucker2;

/// One factor tensor: its shape as the file stores it (PyTorch layout) and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// The factors of one layer, by the algorithm's factor name (e.g. `lora_down.weight`).
pub type Factors = BTreeMap<String, Factor>;

/// A raw update `ΔW` (unscaled), flattened as `[out, rest]` in PyTorch layout.
#[derive(Debug, Clone)]
pub struct Delta {
    /// `ΔW` as `[out, in/groups · K]` (or `[out, in]` for a linear layer).
    pub matrix: Tensor<2>,
    /// The full shape, when the factors determine it (LoHa and flattened LoKr factors only fix
    /// `[out, rest]`; the base weight then gives the rest).
    pub shape: Option<Vec<usize>>,
}

/// Where an algorithm's errors point: the file and the key prefix of the layer; and what the
/// file says of the layer besides its factors.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// The file.
    pub file: &'a str,
    /// The layer's key prefix in that file (e.g. `lycoris_block_0`).
    pub prefix: &'a str,
    /// The adapted weight's shape (PyTorch layout), when the file records it (native files).
    pub base_shape: Option<&'a [usize]>,
    /// The rank the file declares, when it does (native files).
    pub rank: Option<usize>,
}

impl<'a> Site<'a> {
    /// A layer at `prefix` in `file`, with nothing else known.
    pub fn new(file: &'a str, prefix: &'a str) -> Self {
        Self {
            file,
            prefix,
            base_shape: None,
            rank: None,
        }
    }

    /// A [`FileError::Shape`] for the factor `name` of this layer.
    pub fn shape_error(
        &self,
        name: &str,
        expected: impl Into<String>,
        actual: &[usize],
    ) -> FileError {
        FileError::Shape {
            file: self.file.to_string(),
            key: format!("{}.{name}", self.prefix),
            expected: expected.into(),
            actual: actual.to_vec(),
        }
    }

    /// The factor `name`, or a [`FileError::MissingKey`].
    pub fn factor<'f>(&self, factors: &'f Factors, name: &str) -> Result<&'f Factor> {
        factors.get(name).ok_or_else(|| FileError::MissingKey {
            file: self.file.to_string(),
            key: format!("{}.{name}", self.prefix),
            why: "the layer's other keys need it".to_string(),
        })
    }
}

/// One adapter algorithm.
pub trait Algorithm: Send + Sync + 'static {
    /// Its name, as `adapter inspect` prints it and the native format stores it: the name of
    /// its `lora_conv` adapter type, when it has one.
    fn name(&self) -> &'static str;

    /// Older names it answers to in [`Registry::by_name`] (native files before version 3).
    /// Two algorithms may share an alias; the layer's factor names then decide
    /// ([`Registry::named`]).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whether a layer with exactly these factor names (without `alpha` and the DoRA magnitude)
    /// is this algorithm's.
    fn claims(&self, names: &[&str]) -> bool;

    /// The rank that `alpha` is divided by.
    ///
    /// # Errors
    /// [`FileError::Shape`] when the factors do not fit together.
    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize>;

    /// The scale of the update: `alpha / rank`, with a missing `alpha` meaning `alpha = rank`
    /// (old kohya files).
    fn scale(&self, alpha: Option<f64>, rank: usize, _factors: &Factors) -> f64 {
        alpha.unwrap_or(rank as f64) / rank.max(1) as f64
    }

    /// The raw update `ΔW` (not scaled).
    ///
    /// # Errors
    /// [`FileError::Shape`] or [`FileError::MissingKey`] naming the factor.
    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta>;

    /// Whether LyCORIS/kohya files can hold it (its factor names are LyCORIS's key suffixes).
    fn lycoris_names(&self) -> bool {
        true
    }

    /// The layer as PEFT's `lora_A` and `lora_B` factors (PyTorch layout), or `None` when PEFT
    /// LoRA files cannot hold this algorithm (only LoRA/LoCon fit them).
    fn peft_factors(&self, layer: &crate::LayerAdapter) -> Option<Result<(Factor, Factor)>> {
        let _ = layer;
        None
    }

    /// The factors of one layer whose update is the sum of the parts' updates, each scaled by
    /// its [`Part::weight`], at rank `Σ rank` and scale 1; `Err(why)` when this algorithm's
    /// updates do not add up by concatenating factors (products such as LoHa and LoKr), or the
    /// parts' shapes differ. The parts have no DoRA magnitude.
    ///
    /// # Errors
    /// The reason, for [`crate::set::AdapterSet::combine`]'s error.
    fn concatenate(&self, parts: &[Part<'_>]) -> std::result::Result<Factors, String> {
        let _ = parts;
        Err(format!(
            "{} updates do not add up by concatenating factors",
            self.name()
        ))
    }

    /// Trainable scalars in the factors.
    fn param_count(&self, factors: &Factors) -> usize {
        factors.values().map(|f| f.values.len()).sum()
    }

    /// Whether a layer of this algorithm can become a trainable `lora_conv` module
    /// ([`Algorithm::to_module`]), so that `attach_file` takes it.
    fn has_module(&self) -> bool {
        false
    }

    /// The trainable module of a layer of this algorithm, carrying the layer's factors and
    /// scale, on the layer's PyTorch-layout weight shape.
    ///
    /// # Errors
    /// [`lora_core::LoraError`] naming the layer's path when its factors do not fit the shape,
    /// or when this algorithm (or this form of it) has no module type.
    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        let _ = device;
        Err(layer.wrong(format!("no trainable module type for {}", self.name())))
    }

    /// This algorithm's factors and rank for a trained `lora_conv` module of the adapter type
    /// of the same name (its factors `parts`, by their path below the type's name) on a burn
    /// weight of shape `shape` (burn layout: `[d_in, d_out]` for a linear weight); `None` when
    /// a factor is missing.
    fn read_module(&self, parts: &ModuleFactors<'_>, shape: &[usize]) -> Option<(Factors, usize)> {
        let _ = (parts, shape);
        None
    }
}

/// The algorithms a reader recognises, tried in order.
#[derive(Clone)]
pub struct Registry {
    algorithms: Vec<&'static dyn Algorithm>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.algorithms.iter().map(|a| a.name()))
            .finish()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// LoCon (LoRA), Tucker-2, LoHa, LoHa-Tucker, LoKr and CP.
    pub fn builtin() -> Self {
        Self {
            algorithms: vec![&LoCon, &Tucker2, &LoHa, &LoHaTucker, &LoKr, &Cp],
        }
    }

    /// Add an algorithm (tried after those already registered).
    pub fn with(mut self, algorithm: &'static dyn Algorithm) -> Self {
        self.algorithms.push(algorithm);
        self
    }

    /// The registered algorithms, in the order they are tried.
    pub fn algorithms(&self) -> impl Iterator<Item = &'static dyn Algorithm> + '_ {
        self.algorithms.iter().copied()
    }

    /// The algorithm that claims these factor names.
    pub fn recognise(&self, names: &[&str]) -> Option<&'static dyn Algorithm> {
        self.algorithms.iter().copied().find(|a| a.claims(names))
    }

    /// The algorithm called `name` (or that has it as an alias): a registered one, or else any
    /// adapter type registered with `lora_conv` (its module's factors are the file's, see
    /// [`Module`]).
    pub fn by_name(&self, name: &str) -> Option<&'static dyn Algorithm> {
        self.named(name, None)
    }

    /// [`Registry::by_name`] for a layer with the factor names `factors`: of the registered
    /// algorithms that answer to `name`, the one that claims these factors (an alias two
    /// algorithms share, such as `loha`, resolves by the layer's factors). When none claims
    /// them, a type registered with `lora_conv` under that name and not built in (whose native
    /// layers hold its module's factor names, whatever algorithm reads its other layouts), else
    /// the first that answers (whose checks then name what is wrong).
    pub fn named(&self, name: &str, factors: Option<&[&str]>) -> Option<&'static dyn Algorithm> {
        let answers = |a: &&'static dyn Algorithm| a.name() == name || a.aliases().contains(&name);
        let mut named = self.algorithms.iter().copied().filter(answers).peekable();
        let first = named.peek().copied();
        let Some(factors) = factors else {
            return first.or_else(|| Module::by_name(name));
        };
        if let Some(claiming) = named.find(|a| a.claims(factors)) {
            return Some(claiming);
        }
        let built_in = Self::builtin().algorithms.iter().any(answers);
        let module = (!built_in).then(|| Module::by_name(name)).flatten();
        module.or(first)
    }
}

/// Known algorithms this crate does not implement, by a key suffix they use, for the error
/// that names them.
pub fn unsupported_algorithm(name: &str) -> Option<&'static str> {
    const KNOWN: [(&str, &str); 8] = [
        ("oft_", "OFT"),
        ("boft", "BOFT"),
        ("a1.weight", "GLoRA"),
        ("b1.weight", "GLoRA"),
        ("w_norm", "norm"),
        ("on_input", "IA3"),
        ("lora_embedding_", "PEFT embedding LoRA"),
        ("ia3_l", "IA3"),
    ];
    KNOWN
        .iter()
        .find(|(p, _)| name.starts_with(p))
        .map(|(_, a)| *a)
}

/// The CPU device the file-level maths runs on.
pub(crate) fn cpu() -> Device {
    Device::flex()
}

impl Factor {
    /// The factor as a `[rows, len/rows]` matrix on the CPU.
    pub fn matrix(&self, rows: usize) -> Tensor<2> {
        self.matrix_on(rows, &cpu())
    }

    /// The factor as a `[rows, len/rows]` matrix on `device`.
    pub fn matrix_on(&self, rows: usize, device: &Device) -> Tensor<2> {
        let rows = rows.max(1);
        let cols = self.values.len() / rows;
        Tensor::from_data(TensorData::new(self.values.clone(), [rows, cols]), device)
    }

    /// A 2-D factor transposed (`[rows, cols]` -> `[cols, rows]`); any other factor as it is.
    pub fn transposed(&self) -> Factor {
        match self.shape[..] {
            [rows, cols] => {
                let mut values = vec![0f32; self.values.len()];
                for i in 0..rows {
                    for j in 0..cols {
                        values[j * rows + i] = self.values[i * cols + j];
                    }
                }
                Factor {
                    shape: vec![cols, rows],
                    values,
                }
            }
            _ => self.clone(),
        }
    }

    /// Whether every axis from `from` on has size 1.
    pub fn ones_from(&self, from: usize) -> bool {
        self.shape.iter().skip(from).all(|&k| k == 1)
    }
}

/// `[a, b, 1..]` read as `[a, b]` (a pointwise factor), or a shape error naming it.
pub(crate) fn pointwise(site: Site<'_>, name: &str, f: &Factor) -> Result<(usize, usize)> {
    if f.shape.len() < 2 || !f.ones_from(2) {
        return Err(site.shape_error(name, "[a, b] or [a, b, 1, ..]", &f.shape));
    }
    Ok((f.shape[0], f.shape[1]))
}

/// Whether `names` is exactly the set `expected`.
pub(crate) fn exactly(names: &[&str], expected: &[&str]) -> bool {
    names.len() == expected.len() && expected.iter().all(|e| names.contains(e))
}
