//! What the algorithm files share to turn a file's layer into a trainable `lora_conv` module
//! ([`super::Algorithm::to_module`]) and a trained module back into a layer's factors
//! ([`super::Algorithm::read_module`]).

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use lora_core::LoraError;

use super::{Factor, Factors, Site};

/// A layer of a file on its way onto a model.
#[derive(Debug, Clone, Copy)]
pub struct ModuleLayer<'a> {
    /// The burn path of the adapted weight (what errors name).
    pub path: &'a str,
    /// The file and key prefix the layer came from.
    pub site: Site<'a>,
    /// Its factors, by the algorithm's names.
    pub factors: &'a Factors,
    /// Its rank.
    pub rank: usize,
    /// The scale multiplying its update.
    pub scale: f64,
    /// The adapted weight's shape in PyTorch layout (`[out, in]` for a linear layer).
    pub shape: &'a [usize],
}

impl ModuleLayer<'_> {
    /// The factor `name`, or an error naming it.
    ///
    /// # Errors
    /// [`LoraError::UnsupportedGeometry`] when the layer lacks it.
    pub fn factor(&self, name: &str) -> lora_core::Result<&Factor> {
        self.factors
            .get(name)
            .ok_or_else(|| self.wrong(format!("the factor {name} is missing")))
    }

    /// Why this layer cannot become the module it asks for.
    pub fn wrong(&self, reason: impl Into<String>) -> LoraError {
        LoraError::UnsupportedGeometry {
            path: self.path.to_string(),
            reason: reason.into(),
        }
    }

    /// The factor `name` as a trainable `[first axis, second axis]` matrix.
    ///
    /// # Errors
    /// As [`ModuleLayer::factor`].
    pub fn param(&self, name: &str, device: &Device) -> lora_core::Result<Param<Tensor<2>>> {
        Ok(Param::from_tensor(tensor::<2>(self.factor(name)?, device)))
    }

    /// The factor `name` as the matrix `[first axis, the rest]`.
    ///
    /// # Errors
    /// As [`ModuleLayer::factor`].
    pub fn matrix(&self, name: &str, device: &Device) -> lora_core::Result<Tensor<2>> {
        let f = self.factor(name)?;
        Ok(f.matrix_on(f.shape.first().copied().unwrap_or(1), device))
    }

    /// The factor `name` as an `N`-axis tensor (missing trailing axes of size 1).
    ///
    /// # Errors
    /// As [`ModuleLayer::factor`].
    pub fn tensor<const N: usize>(
        &self,
        name: &str,
        device: &Device,
    ) -> lora_core::Result<Tensor<N>> {
        Ok(tensor::<N>(self.factor(name)?, device))
    }

    /// How many axes the factor `name` has (0 when it is missing).
    pub fn axes(&self, name: &str) -> usize {
        self.factors.get(name).map_or(0, |f| f.shape.len())
    }
}

/// A trained module's factors by their path below the module type's name (`down`, `up`,
/// `spatial.0`, `lora.down` for DoRA's inner LoCon), with their shapes.
pub type ModuleFactors<'a> = BTreeMap<String, (&'a Vec<usize>, &'a Vec<f32>)>;

/// The factor `name` of a trained module, when it has one.
pub(crate) fn part<'a>(
    parts: &ModuleFactors<'a>,
    name: &str,
) -> Option<(&'a Vec<usize>, &'a Vec<f32>)> {
    parts.get(name).copied()
}

/// Add the factor `name` to `factors`.
pub(crate) fn put(factors: &mut Factors, name: &str, shape: Vec<usize>, values: Vec<f32>) {
    factors.insert(name.to_string(), Factor { shape, values });
}

/// `n` ones (the pointwise axes of a factor).
pub(crate) fn ones(n: usize) -> impl Iterator<Item = usize> {
    std::iter::repeat_n(1, n)
}

/// A factor as an `N`-axis tensor (its shape's first `N` axes, missing ones of size 1).
fn tensor<const N: usize>(f: &Factor, device: &Device) -> Tensor<N> {
    let mut shape = [1usize; N];
    for (s, d) in shape.iter_mut().zip(&f.shape) {
        *s = *d;
    }
    Tensor::from_data(TensorData::new(f.values.clone(), shape), device)
}

/// Run `$e` with the const `$d` set to a conv factor's axis count `$n` (3 to 5), or return
/// the layer's error.
macro_rules! by_rank {
    ($layer:expr, $n:expr, $d:ident => $e:expr) => {
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
            other => Err($layer.wrong(format!(
                "a conv factor has 3 to 5 axes, this one {other}"
            ))),
        }
    };
}
pub(crate) use by_rank;
