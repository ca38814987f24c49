//! Adapter types by name: [`ConvVariant`], a handle on one registered [`ConvAdapter`] type, and
//! the registry that parses names into it.

use core::fmt;
use core::hash::{Hash, Hasher};
use core::str::FromStr;
use std::sync::{LazyLock, RwLock};

use burn::tensor::Device;
use lora_core::{AdapterSpec, LoraError, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::adapter::{BranchOp, ConvAdapter};
use crate::adapters::{
    CpAdapter, DoraAdapter, LoConAdapter, LoHaAdapter, LoHaTuckerAdapter, LoKrAdapter,
    Tucker2Adapter,
};
use crate::erased::{self, Erased};
use crate::geometry::ConvGeometry;

/// One adapter type, by name: what the rest of the workspace needs to know about a
/// [`ConvAdapter`] without naming the Rust type (build one, count its parameters, bound its
/// rank, cost its forms).
///
/// Made with [`ConvVariant::of`]; parsed from its name or an alias once registered
/// ([`register`]; the built-ins always are). Two variants are equal when their names are.
#[derive(Clone, Copy)]
pub struct ConvVariant {
    name: &'static str,
    aliases: &'static [&'static str],
    count: &'static str,
    linear: bool,
    bypass_recomposes: bool,
    type_name: fn() -> &'static str,
    build: erased::Build,
    param_count: fn(&[usize], usize) -> usize,
    rank_limit: fn(&[usize]) -> usize,
    recompose_flops: fn(&[usize], usize) -> f64,
    branch_ops: fn(&ConvGeometry, usize, (f64, f64)) -> Vec<BranchOp>,
}

#[allow(non_upper_case_globals)]
impl ConvVariant {
    /// LoCon (PEFT, diffusers, kohya, LyCORIS `locon`): a kxk down conv then a 1x1 up conv.
    /// Parsed from `locon`, `hf` or `lora`.
    pub const LoCon: ConvVariant = ConvVariant::of::<LoConAdapter>();
    /// Tucker-2 (LyCORIS `use_tucker`; the design document's "CP").
    pub const Tucker2: ConvVariant = ConvVariant::of::<Tucker2Adapter>();
    /// CP (Lebedev et al. 2014): one factor per mode of the kernel.
    pub const Cp: ConvVariant = ConvVariant::of::<CpAdapter>();
    /// LoHa (LyCORIS): the Hadamard product of two low-rank updates.
    pub const LoHa: ConvVariant = ConvVariant::of::<LoHaAdapter>();
    /// LoHa with Tucker cores (LyCORIS `use_tucker`), conv kernels only.
    pub const LoHaTucker: ConvVariant = ConvVariant::of::<LoHaTuckerAdapter>();
    /// LoKr (LyCORIS): a Kronecker product of a small matrix and a low-rank one.
    pub const LoKr: ConvVariant = ConvVariant::of::<LoKrAdapter>();

    /// DoRA (Liu et al. 2024): LoCon/LoRA with a per-channel magnitude, `m ⊙ V / ‖V‖`.
    pub const Dora: ConvVariant = ConvVariant::of::<DoraAdapter>();

    /// The built-in types, in a stable order.
    pub const BUILTIN: [ConvVariant; 7] = [
        ConvVariant::LoCon,
        ConvVariant::Tucker2,
        ConvVariant::Cp,
        ConvVariant::LoHa,
        ConvVariant::LoHaTucker,
        ConvVariant::LoKr,
        ConvVariant::Dora,
    ];

    /// The low-rank decompositions of one kernel that the experiments compare by default
    /// (LoCon, Tucker-2, CP).
    pub const DECOMPOSITIONS: [ConvVariant; 3] =
        [ConvVariant::LoCon, ConvVariant::Tucker2, ConvVariant::Cp];

    /// The handle of adapter type `A`.
    pub const fn of<A: ConvAdapter>() -> Self {
        Self {
            name: A::NAME,
            aliases: A::ALIASES,
            count: A::COUNT,
            linear: A::LINEAR,
            bypass_recomposes: A::BYPASS_RECOMPOSES,
            type_name: core::any::type_name::<A>,
            build: erased::build::<A>,
            param_count: A::param_count,
            rank_limit: A::rank_limit,
            recompose_flops: A::recompose_flops,
            branch_ops: A::branch_ops,
        }
    }

    /// Every registered type: the built-ins, then those added with [`register`], in order.
    pub fn all() -> Vec<ConvVariant> {
        read_registry().clone()
    }

    /// The name, as parsed and saved.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// Other names it parses from.
    pub fn aliases(self) -> &'static [&'static str] {
        self.aliases
    }

    /// Its parameter count as a formula.
    pub fn count_formula(self) -> &'static str {
        self.count
    }

    /// Whether it adapts linear weights itself (otherwise they get plain LoRA).
    pub fn adapts_linear(self) -> bool {
        self.linear
    }

    /// Whether its bypass form also recomposes the update (cost model).
    pub fn bypass_recomposes(self) -> bool {
        self.bypass_recomposes
    }

    /// A fresh adapter of this type, boxed ([`ConvVariant::build`] wraps it in the carrier).
    pub(crate) fn build_erased(
        self,
        path: &str,
        shape: &[usize],
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<Box<dyn Erased>> {
        (self.build)(path, shape, spec, device)
    }

    /// Trainable scalars at `rank` on a weight of shape `[t, c, k..]`.
    pub fn param_count(self, shape: &[usize], rank: usize) -> usize {
        (self.param_count)(shape, rank)
    }

    /// The largest rank accepted on a weight of shape `[t, c, k..]`.
    pub fn rank_limit(self, shape: &[usize]) -> usize {
        (self.rank_limit)(shape)
    }

    /// FLOP of recomposing the update (cost model).
    pub fn recompose_flops(self, shape: &[usize], rank: usize) -> f64 {
        (self.recompose_flops)(shape, rank)
    }

    /// The bypass branch's convolutions (cost model); empty when it has no bypass form.
    pub fn branch_ops(
        self,
        geometry: &ConvGeometry,
        rank: usize,
        positions: (f64, f64),
    ) -> Vec<BranchOp> {
        (self.branch_ops)(geometry, rank, positions)
    }

    /// Whether `name` is this type's name or one of its aliases (case, `-` and `_` ignored).
    fn answers_to(self, name: &str) -> bool {
        let wanted = normalise(name);
        normalise(self.name) == wanted || self.aliases.iter().any(|a| normalise(a) == wanted)
    }
}

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '_'], "")
}

static REGISTRY: LazyLock<RwLock<Vec<ConvVariant>>> =
    LazyLock::new(|| RwLock::new(ConvVariant::BUILTIN.to_vec()));

fn read_registry() -> std::sync::RwLockReadGuard<'static, Vec<ConvVariant>> {
    // A panic while holding the lock cannot leave the list half-written (pushes are atomic
    // from a reader's view), so a poisoned lock is still usable.
    REGISTRY
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Register an adapter type, so that its name parses as a [`ConvVariant`] everywhere (command
/// lines, configs, native files). Registering the same type again is a no-op.
///
/// # Errors
/// [`LoraError::DuplicateName`] when its name or an alias is already taken by another type;
/// nothing is registered then.
pub fn register(variant: ConvVariant) -> Result<()> {
    let mut registry = REGISTRY
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let names = std::iter::once(variant.name).chain(variant.aliases.iter().copied());
    for name in names {
        if let Some(taken) = registry.iter().find(|v| v.answers_to(name)) {
            if (taken.type_name)() == (variant.type_name)() {
                return Ok(());
            }
            return Err(LoraError::DuplicateName {
                name: name.to_string(),
                taken_by: (taken.type_name)().to_string(),
                refused: (variant.type_name)().to_string(),
            });
        }
    }
    registry.push(variant);
    Ok(())
}

impl PartialEq for ConvVariant {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ConvVariant {}

impl Hash for ConvVariant {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl fmt::Debug for ConvVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl fmt::Display for ConvVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl FromStr for ConvVariant {
    type Err = LoraError;

    /// A registered name or alias; case, `-` and `_` are ignored.
    ///
    /// # Errors
    /// [`LoraError::UnknownVariant`] naming the string and listing the registered names.
    fn from_str(s: &str) -> Result<Self> {
        let registry = read_registry();
        registry
            .iter()
            .find(|v| v.answers_to(s))
            .copied()
            .ok_or_else(|| LoraError::UnknownVariant {
                name: s.to_string(),
                known: registry
                    .iter()
                    .map(|v| v.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl Serialize for ConvVariant {
    fn serialize<S: Serializer>(&self, serializer: S) -> core::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name)
    }
}

impl<'de> Deserialize<'de> for ConvVariant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> core::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
