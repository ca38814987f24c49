//! Which parameters get adapters, with which rank and alpha.

use burn::config::Config;
use regex::Regex;

use crate::LoraError;
use crate::adapter::{AdapterSpec, FactorInit, Scaling};

/// Where to put adapters and how to build them, for a whole model.
///
/// Patterns are regular expressions matched against the **full** parameter path as burn's
/// module traversal spells it (`fc1.weight`, `blocks.0.conv.weight`, ...): a pattern `fc\d\.weight`
/// matches `fc1.weight` but not `fc1.weight_extra`. For every override list the first matching
/// entry wins, like PEFT's `rank_pattern`/`alpha_pattern`. Every pattern must match at least one
/// parameter, so that a typo is an error instead of a silent no-op.
#[derive(Config, Debug)]
pub struct LoraConfig {
    /// Default rank `r`.
    pub rank: usize,
    /// Default scaling numerator.
    pub alpha: f64,
    /// `alpha/r` or `alpha/sqrt(r)` (rsLoRA).
    #[config(default = "Scaling::Standard")]
    pub scaling: Scaling,
    /// Init of the input-side factor(s).
    #[config(default = "FactorInit::KaimingUniform")]
    pub init: FactorInit,
    /// Parameters to adapt: a parameter is a target if any pattern matches its path and its
    /// tensor rank is in `tensor_ranks`.
    #[config(default = "vec![String::from(r\".*weight\")]")]
    pub targets: Vec<String>,
    /// Tensor ranks eligible for adaptation: 2 for `Linear`, 3/4/5 for Conv1d/2d/3d kernels.
    #[config(default = "vec![2]")]
    pub tensor_ranks: Vec<usize>,
    /// Per-path rank overrides, `(pattern, rank)`; first match wins.
    #[config(default = "Vec::new()")]
    pub rank_pattern: Vec<(String, usize)>,
    /// Per-path alpha overrides, `(pattern, alpha)`; first match wins.
    #[config(default = "Vec::new()")]
    pub alpha_pattern: Vec<(String, f64)>,
    /// Parameters that are not adapted but stay trainable (a new head, norm layers...).
    /// Every other non-adapter parameter is frozen.
    #[config(default = "Vec::new()")]
    pub trainable: Vec<String>,
}

/// A full-match regex together with the text and config field it came from.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    pub(crate) field: &'static str,
    pub(crate) text: String,
    regex: Regex,
}

impl Pattern {
    pub(crate) fn new(field: &'static str, text: &str) -> crate::Result<Self> {
        Regex::new(&format!("^(?:{text})$"))
            .map(|regex| Self {
                field,
                text: text.to_string(),
                regex,
            })
            .map_err(|e| LoraError::InvalidPattern {
                field: field.to_string(),
                pattern: text.to_string(),
                reason: e.to_string(),
            })
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        self.regex.is_match(path)
    }
}

/// A [`LoraConfig`] with its patterns compiled.
#[derive(Debug, Clone)]
pub(crate) struct CompiledConfig {
    pub(crate) targets: Vec<Pattern>,
    pub(crate) ranks: Vec<(Pattern, usize)>,
    pub(crate) alphas: Vec<(Pattern, f64)>,
    pub(crate) trainable: Vec<Pattern>,
    defaults: AdapterSpec,
    tensor_ranks: Vec<usize>,
}

impl CompiledConfig {
    pub(crate) fn new(config: &LoraConfig) -> crate::Result<Self> {
        let compile = |field, list: &[String]| -> crate::Result<Vec<Pattern>> {
            list.iter().map(|p| Pattern::new(field, p)).collect()
        };
        Ok(Self {
            targets: compile("targets", &config.targets)?,
            ranks: config
                .rank_pattern
                .iter()
                .map(|(p, r)| Ok((Pattern::new("rank_pattern", p)?, *r)))
                .collect::<crate::Result<_>>()?,
            alphas: config
                .alpha_pattern
                .iter()
                .map(|(p, a)| Ok((Pattern::new("alpha_pattern", p)?, *a)))
                .collect::<crate::Result<_>>()?,
            trainable: compile("trainable", &config.trainable)?,
            defaults: AdapterSpec {
                rank: config.rank,
                alpha: config.alpha,
                scaling: config.scaling,
                init: config.init,
            },
            tensor_ranks: config.tensor_ranks.clone(),
        })
    }

    /// Whether the parameter at `path` with `tensor_rank` dimensions gets an adapter.
    pub(crate) fn is_target(&self, path: &str, tensor_rank: usize) -> bool {
        self.tensor_ranks.contains(&tensor_rank) && self.targets.iter().any(|p| p.matches(path))
    }

    /// `tensor_ranks` of the config.
    pub(crate) fn tensor_ranks(&self) -> &[usize] {
        &self.tensor_ranks
    }

    /// Whether the non-adapted parameter at `path` stays trainable.
    pub(crate) fn is_trainable(&self, path: &str) -> bool {
        self.trainable.iter().any(|p| p.matches(path))
    }

    /// The spec for the target at `path`, with overrides applied.
    pub(crate) fn spec(&self, path: &str) -> AdapterSpec {
        AdapterSpec {
            rank: self
                .ranks
                .iter()
                .find(|(p, _)| p.matches(path))
                .map_or(self.defaults.rank, |x| x.1),
            alpha: self
                .alphas
                .iter()
                .find(|(p, _)| p.matches(path))
                .map_or(self.defaults.alpha, |x| x.1),
            ..self.defaults
        }
    }

    /// Every pattern, for the check that each one matched something.
    pub(crate) fn all_patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.targets
            .iter()
            .chain(self.ranks.iter().map(|x| &x.0))
            .chain(self.alphas.iter().map(|x| &x.0))
            .chain(self.trainable.iter())
    }
}

impl LoraConfig {
    /// The rank, alpha, scaling and init this config gives the weight at `path`, after
    /// `rank_pattern` and `alpha_pattern` (the first matching pattern wins). It does not check
    /// that `path` is a target.
    ///
    /// # Errors
    /// [`crate::LoraError::InvalidPattern`] for a bad regex.
    pub fn spec_for(&self, path: &str) -> crate::Result<AdapterSpec> {
        Ok(CompiledConfig::new(self)?.spec(path))
    }
}
