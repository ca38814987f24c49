//! Attaching adapters to any burn module through one reparameterizer.

use std::collections::HashMap;

use burn::module::{Module, ModuleVisitor, Param, ParamId, Reparameterizer};
use burn::tensor::{Device, Tensor};

use crate::adapter::{Adapter, AdapterSpec, LoraParam};
use crate::config::{CompiledConfig, LoraConfig};
use crate::linear::LinearAdapter;
use crate::merge::MAX_MERGE_RANK;
use crate::{LoraError, Result};

/// Builds the adapter for one targeted weight.
///
/// One [`attach()`] call uses one factory, whose `Adapter` type may be a single adapter type or
/// an enum of several (a factory picks the arm from the weight's shape and its own settings).
/// burn does not nest reparameterizations, so a model carries one factory's adapters.
pub trait AdapterFactory {
    /// The adapter type this factory builds.
    type Adapter: Adapter;

    /// Build the adapter for the weight at `path` whose shape (burn layout) is `shape`.
    ///
    /// # Errors
    /// Any [`LoraError`] that says why this weight cannot take this spec; it must name `path`.
    fn build(
        &self,
        path: &str,
        shape: &[usize],
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<Self::Adapter>;

    /// Whether the adapters it builds are fresh, so that `attach` lets each one read its
    /// pretrained weight ([`Adapter::with_base`], DoRA's magnitude `‖W‖`). A factory that hands
    /// out trained adapters (read from a file) returns `false`, and their state is kept.
    fn fresh(&self) -> bool {
        true
    }
}

/// The factory for linear LoRA alone: every targeted weight must be a `[d_in, d_out]` matrix.
///
/// The same update as `lora_conv::ConvFactory::linear(ConvVariant::LoCon)` (tested equal in
/// outputs, gradients and adapter files in `lora-files/tests/one_linear.rs`) and as burn's own
/// `Module::apply_lora`, kept for models that need lora-core alone. `lora-files` saves this
/// factory's [`LinearAdapter`] as a LoCon layer, and loads a file back onto the lora-conv
/// carrier; prefer the lora-conv factory, whose adapters are the carrier every other type uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinearFactory;

impl AdapterFactory for LinearFactory {
    type Adapter = LinearAdapter;

    fn build(
        &self,
        path: &str,
        shape: &[usize],
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<LinearAdapter> {
        match shape {
            [d_in, d_out] => LinearAdapter::new(path, *d_in, *d_out, spec, device),
            _ => Err(LoraError::UnsupportedGeometry {
                path: path.to_string(),
                reason: format!("linear LoRA adapts 2-D weights, this one is {shape:?}"),
            }),
        }
    }
}

/// One float parameter of a module, as seen by [`scan`].
#[derive(Debug, Clone)]
pub struct ParamInfo {
    /// Full path, e.g. `blocks.0.conv.weight`.
    pub path: String,
    /// Shape (burn layout).
    pub shape: Vec<usize>,
    /// Whether a reparameterization is attached to it.
    pub reparameterized: bool,
    /// The parameter's id (kept by `map`, `materialize` and records).
    pub id: ParamId,
    device: Device,
}

/// List every float parameter of a module with its path and shape, without initializing lazy
/// parameters. Parameters that belong to a reparameterization (adapter factors) are not listed;
/// their base is, with `reparameterized` set.
pub fn scan<M: Module>(module: &M) -> Vec<ParamInfo> {
    let mut scanner = Scanner::default();
    module.visit(&mut scanner);
    scanner.params
}

#[derive(Default)]
struct Scanner {
    at: crate::Position,
    params: Vec<ParamInfo>,
}

impl ModuleVisitor for Scanner {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        if self.at.enter(name, container_type)
            && let Some(last) = self.params.last_mut()
        {
            last.reparameterized = true;
        }
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if self.at.outside() {
            self.params.push(ParamInfo {
                path: self.at.path(),
                shape: param.lazy_shape().to_vec(),
                reparameterized: false,
                id: param.id,
                device: param.lazy_device(),
            });
        }
    }
}

/// Attach adapters to `model` as `config` says, building each with `factory`.
///
/// Targeted weights are frozen and carry a [`LoraParam`]; their effective value becomes
/// `W + scale·ΔW`, so the model code does not change. Parameters matched by
/// `config.trainable` stay trainable; every other parameter is frozen. Module-owned control
/// flags (dropout, batch-norm running statistics) are left as they are.
///
/// Everything is checked before anything is attached: on error `model` is untouched (it is
/// borrowed; the adapted model is a new value sharing the frozen tensors).
///
/// # Errors
/// - [`LoraError::InvalidPattern`] for a pattern that does not compile;
/// - [`LoraError::UnmatchedPattern`] for a pattern that matches nothing;
/// - [`LoraError::ExcludedByTensorRank`] when the target patterns match only parameters whose
///   tensor rank is not in `tensor_ranks` (e.g. conv kernels with the linear default `[2]`);
/// - [`LoraError::AlreadyAdapted`] if the model is already reparameterized;
/// - [`LoraError::ShapeMismatch`] when an adapter's update `ΔW` does not have its weight's
///   exact shape (`W + ΔW` would otherwise broadcast);
/// - whatever the factory returns for a targeted weight (bad rank, unsupported geometry).
pub fn attach<M, F>(model: &M, config: &LoraConfig, factory: &F) -> Result<M>
where
    M: Module,
    F: AdapterFactory,
{
    let config = CompiledConfig::new(config)?;
    let params = scan(model);
    if let Some(p) = params.iter().find(|p| p.reparameterized) {
        return Err(LoraError::AlreadyAdapted {
            path: p.path.clone(),
        });
    }
    let targets: Vec<&ParamInfo> = params
        .iter()
        .filter(|p| config.is_target(&p.path, p.shape.len()))
        .collect();
    let all: Vec<&ParamInfo> = params.iter().collect();
    for pattern in config.all_patterns() {
        // Overrides must hit an adapted weight; targets and trainable may hit any parameter.
        let pool = match pattern.field {
            "rank_pattern" | "alpha_pattern" => &targets,
            _ => &all,
        };
        if !pool.iter().any(|p| pattern.matches(&p.path)) {
            return Err(LoraError::UnmatchedPattern {
                field: pattern.field.to_string(),
                pattern: pattern.text.clone(),
                known: known_paths(&params),
            });
        }
    }
    if targets.is_empty() {
        // Patterns that did match, on tensors of another rank: say that, not "matched nothing".
        let by_pattern: Vec<&ParamInfo> = params
            .iter()
            .filter(|p| config.targets.iter().any(|t| t.matches(&p.path)))
            .collect();
        if !by_pattern.is_empty() {
            let mut ranks: Vec<usize> = by_pattern.iter().map(|p| p.shape.len()).collect();
            ranks.sort_unstable();
            ranks.dedup();
            let mut matched: Vec<String> = by_pattern
                .iter()
                .take(6)
                .map(|p| format!("{} {:?}", p.path, p.shape))
                .collect();
            if by_pattern.len() > 6 {
                matched.push(format!("and {} more", by_pattern.len() - 6));
            }
            return Err(LoraError::ExcludedByTensorRank {
                matched: matched.join(", "),
                ranks,
                allowed: config.tensor_ranks().to_vec(),
            });
        }
        return Err(LoraError::UnmatchedPattern {
            field: "targets".into(),
            pattern: config
                .targets
                .iter()
                .map(|p| p.text.as_str())
                .collect::<Vec<_>>()
                .join("|"),
            known: known_paths(&params),
        });
    }
    let mut adapters = HashMap::with_capacity(targets.len());
    for p in targets {
        if p.shape.len() > MAX_MERGE_RANK {
            return Err(LoraError::UnsupportedGeometry {
                path: p.path.clone(),
                reason: format!(
                    "adapters handle weights of tensor rank 1 to {MAX_MERGE_RANK} (merge and \
                     unmerge are written for those); this one has shape {:?}",
                    p.shape
                ),
            });
        }
        let adapter = factory.build(&p.path, &p.shape, &config.spec(&p.path), &p.device)?;
        // `W + ΔW` would broadcast a ΔW of another shape silently: check it once here.
        let update = update_shape(&adapter, p.shape.len());
        if update.as_deref() != Some(p.shape.as_slice()) {
            return Err(LoraError::ShapeMismatch {
                path: format!("{} (the adapter's update)", p.path),
                expected: p.shape.clone(),
                actual: update.unwrap_or_default(),
            });
        }
        adapters.insert(p.path.clone(), (adapter, p.device.clone()));
    }
    Ok(model.clone().apply_reparameterization(Injector {
        adapters,
        config,
        fresh: factory.fresh(),
    }))
}

/// The shape of `adapter.delta_weight()` at tensor rank `rank` (1 to 6; `None` beyond).
fn update_shape<A: Adapter>(adapter: &A, rank: usize) -> Option<Vec<usize>> {
    macro_rules! at_rank {
        ($($d:literal),*) => {
            match rank {
                $($d => Some(adapter.delta_weight::<$d>().dims().to_vec()),)*
                _ => None,
            }
        };
    }
    at_rank!(1, 2, 3, 4, 5, 6)
}

fn known_paths(params: &[ParamInfo]) -> String {
    let mut list: Vec<&str> = params.iter().take(12).map(|p| p.path.as_str()).collect();
    if params.len() > 12 {
        list.push("...");
    }
    list.join(", ")
}

/// The reparameterizer: places pre-built adapters and sets trainability.
struct Injector<A: Adapter> {
    adapters: HashMap<String, (A, Device)>,
    config: CompiledConfig,
    fresh: bool,
}

impl<A: Adapter> Reparameterizer for Injector<A> {
    type Reparam = LoraParam<A>;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<Self::Reparam>) {
        match self.adapters.remove(path) {
            Some((adapter, device)) => {
                // State that depends on the pretrained weight (DoRA's magnitude).
                let adapter = if self.fresh {
                    adapter.with_base(&param.val())
                } else {
                    adapter
                };
                (
                    param.set_require_grad(false),
                    Some(LoraParam::new(adapter, &device)),
                )
            }
            None => {
                let trainable = self.config.is_trainable(path);
                (param.set_require_grad(trainable), None)
            }
        }
    }
}
