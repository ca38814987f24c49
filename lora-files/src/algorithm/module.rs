//! Any adapter type registered with `lora_conv` (one from another crate included), stored in
//! native files by its module's own factor names (`down`, `up`, `spatial.0`, ...).
//!
//! Its update is computed by the module itself: an adapter of the type is built on the CPU for
//! the layer's recorded weight shape and rank, its factors are replaced by the file's, and
//! [`lora_core::Adapter::delta_weight`] gives `ΔW`. So a type written elsewhere is inspected,
//! merged, converted (to the native format) and loaded onto a model with no code here.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use burn::module::{Module as _, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use lora_conv::{AnyAdapter, ConvVariant};
use lora_core::{Adapter, AdapterSpec};

use super::modules::put;
use super::{Algorithm, Delta, Factors, ModuleFactors, ModuleLayer, Site, cpu};
use crate::error::{FileError, Result};

/// The file algorithm of a `lora_conv` adapter type.
#[derive(Debug, Clone, Copy)]
pub struct Module {
    variant: ConvVariant,
}

/// One leaked `Module` per registered type, so that [`Algorithm`]s stay `&'static` (bounded by
/// the number of adapter types, each leaked once).
static BY_NAME: LazyLock<Mutex<HashMap<&'static str, &'static Module>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

impl Module {
    /// The algorithm of the registered adapter type called `name`.
    pub fn by_name(name: &str) -> Option<&'static dyn Algorithm> {
        Self::by_name_typed(name).map(|m| m as &'static dyn Algorithm)
    }

    /// [`Module::by_name`], as this type.
    pub fn by_name_typed(name: &str) -> Option<&'static Module> {
        let variant: ConvVariant = name.parse().ok()?;
        let mut known = BY_NAME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let module: &'static Module = known
            .entry(variant.name())
            .or_insert_with(|| Box::leak(Box::new(Module { variant })));
        Some(module)
    }

    /// The rank whose parameter count on `shape` is `scalars`, if exactly one is.
    fn rank_from_count(&self, shape: &[usize], scalars: usize) -> Option<usize> {
        let mut ranks = (1..=self.variant.rank_limit(shape))
            .filter(|&r| self.variant.param_count(shape, r) == scalars);
        let first = ranks.next()?;
        // A count that several ranks share does not say which one the adapter has.
        ranks.next().is_none().then_some(first)
    }

    /// An adapter of this type on `shape` at `rank`, holding `factors` (by their path in the
    /// module), with `scale`.
    ///
    /// # Errors
    /// [`FileError::Shape`] naming the factor whose shape differs from the module's, or
    /// [`FileError::MissingKey`] for a factor the module has and the file does not.
    pub fn adapter(
        &self,
        site: Site<'_>,
        shape: &[usize],
        rank: usize,
        scale: f64,
        factors: &Factors,
        device: &Device,
    ) -> Result<AnyAdapter> {
        let spec = AdapterSpec::new(rank, scale * rank as f64);
        let built = self
            .variant
            .build(site.prefix, shape, &spec, device)
            .map_err(|e| FileError::Config {
                file: site.file.to_string(),
                field: format!("{}.rank", site.prefix),
                value: rank.to_string(),
                why: e.to_string(),
            })?;
        let mut fill = Fill {
            site,
            factors,
            device,
            at: Vec::new(),
            used: 0,
            error: None,
        };
        let filled = built.map(&mut fill);
        if let Some(e) = fill.error {
            return Err(e);
        }
        if fill.used != factors.len()
            && let Some(extra) = factors.keys().find(|k| !module_paths(&filled).contains(k))
        {
            return Err(FileError::UnexpectedKey {
                file: site.file.to_string(),
                key: format!("{}.{extra}", site.prefix),
                why: format!("a {} adapter has no such factor", self.variant),
            });
        }
        Ok(filled)
    }
}

/// The factor paths of an adapter module (below its type name).
fn module_paths(adapter: &AnyAdapter) -> Vec<String> {
    struct Paths {
        at: Vec<String>,
        out: Vec<String>,
    }
    impl burn::module::ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.at.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.at.pop();
        }
        fn visit_float<const D: usize>(&mut self, _: &Param<Tensor<D>>) {
            self.out.push(self.at[1..].join("."));
        }
    }
    let mut p = Paths {
        at: Vec::new(),
        out: Vec::new(),
    };
    adapter.visit(&mut p);
    p.out
}

/// Replaces each factor of a freshly built adapter by the file's.
struct Fill<'a> {
    site: Site<'a>,
    factors: &'a Factors,
    device: &'a Device,
    at: Vec<String>,
    used: usize,
    error: Option<FileError>,
}

impl ModuleMapper for Fill<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.at.push(name.to_string());
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.at.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // Below the adapter's type name.
        let name = self.at.get(1..).unwrap_or_default().join(".");
        let expected = param.lazy_shape().to_vec();
        let Some(factor) = self.factors.get(&name) else {
            self.error.get_or_insert(FileError::MissingKey {
                file: self.site.file.to_string(),
                key: format!("{}.{name}", self.site.prefix),
                why: "the adapter type has this factor".to_string(),
            });
            return param;
        };
        if factor.shape != expected {
            self.error.get_or_insert(self.site.shape_error(
                &name,
                format!("{expected:?}"),
                &factor.shape,
            ));
            return param;
        }
        self.used += 1;
        let device = self.device.clone();
        let values = factor.values.clone();
        param.map(move |t| {
            let require_grad = t.is_require_grad();
            Tensor::<D>::from_data(TensorData::new(values, expected), &device)
                .set_require_grad(require_grad)
        })
    }
}

impl Algorithm for Module {
    fn name(&self) -> &'static str {
        self.variant.name()
    }

    /// Never recognised from LyCORIS or PEFT keys: only native files name it.
    fn claims(&self, _names: &[&str]) -> bool {
        false
    }

    fn rank(&self, site: Site<'_>, factors: &Factors) -> Result<usize> {
        if let Some(rank) = site.rank {
            return Ok(rank);
        }
        let scalars = factors.values().map(|f| f.values.len()).sum();
        site.base_shape
            .and_then(|shape| self.rank_from_count(shape, scalars))
            .ok_or_else(|| FileError::Config {
                file: site.file.to_string(),
                field: format!("{}.rank", site.prefix),
                value: "null".to_string(),
                why: format!(
                    "a {} layer needs its rank or its base weight's shape",
                    self.variant
                ),
            })
    }

    fn delta(&self, site: Site<'_>, factors: &Factors) -> Result<Delta> {
        let shape = site.base_shape.ok_or_else(|| FileError::Config {
            file: site.file.to_string(),
            field: format!("{}.base_shape", site.prefix),
            value: "null".to_string(),
            why: format!("a {} layer needs its base weight's shape", self.variant),
        })?;
        let rank = self.rank(site, factors)?;
        let adapter = self.adapter(site, shape, rank, 1.0, factors, &cpu())?;
        if !adapter.additive() {
            return Err(FileError::Config {
                file: site.file.to_string(),
                field: format!("{}.algorithm", site.prefix),
                value: self.variant.to_string(),
                why: "a weight-decomposed type has no file-level update W + ΔW; load it onto the \
                      model (attach_file) and merge there"
                    .to_string(),
            });
        }
        let delta = match shape.len() {
            2 => flat(adapter.delta_weight::<2>()),
            3 => flat(adapter.delta_weight::<3>()),
            4 => flat(adapter.delta_weight::<4>()),
            5 => flat(adapter.delta_weight::<5>()),
            n => {
                return Err(site.shape_error("base_shape", "2 to 5 axes", &vec![0; n]));
            }
        };
        // Built at scale 1 (alpha = rank), so this is the raw update.
        let matrix = delta.div_scalar(adapter.scale());
        Ok(Delta {
            matrix,
            shape: Some(shape.to_vec()),
        })
    }

    fn lycoris_names(&self) -> bool {
        false
    }

    fn has_module(&self) -> bool {
        true
    }

    fn to_module(&self, layer: &ModuleLayer<'_>, device: &Device) -> lora_core::Result<AnyAdapter> {
        self.adapter(
            layer.site,
            layer.shape,
            layer.rank,
            layer.scale,
            layer.factors,
            device,
        )
        .map_err(|e| layer.wrong(e.to_string()))
    }

    /// The module's own factors, by name; the rank from their count.
    fn read_module(&self, parts: &ModuleFactors<'_>, shape: &[usize]) -> Option<(Factors, usize)> {
        let torch: Vec<usize> = match shape {
            [d_in, d_out] => vec![*d_out, *d_in],
            _ => shape.to_vec(),
        };
        let mut f = Factors::new();
        for (name, (d, v)) in parts {
            put(&mut f, name, (*d).clone(), (*v).clone());
        }
        let rank = self.rank_from_count(&torch, f.values().map(|x| x.values.len()).sum())?;
        Some((f, rank))
    }
}

/// `[out, rest]` of an update.
fn flat<const D: usize>(t: Tensor<D>) -> Tensor<2> {
    let dims = t.dims();
    let rows = dims.first().copied().unwrap_or(1);
    let rest = dims.iter().skip(1).product();
    t.reshape([rows, rest])
}
