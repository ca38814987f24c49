//! One adapter type for the whole workspace, and the factory that builds it.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use lora_core::{
    Adapter, AdapterFactory, AdapterSpec, LinearAdapter, LoraConfig, LoraError, Result,
};

use crate::adapters::{CpAdapter, HfAdapter, Tucker2Adapter};
use crate::variant::ConvVariant;

/// Every adapter type of the workspace, so that one reparameterizer can carry them all
/// (burn does not nest reparameterizations).
///
/// To add an adapter type: write its module in one file implementing [`Adapter`], then add one
/// arm here and one line in [`ConvFactory::build`].
#[derive(Module, Debug)]
pub enum AnyAdapter {
    /// Linear LoRA on a `[d_in, d_out]` weight.
    Linear(LinearAdapter),
    /// HF conv LoRA.
    Hf(HfAdapter),
    /// Tucker-2 conv LoRA.
    Tucker2(Tucker2Adapter),
    /// CP conv LoRA.
    Cp(CpAdapter),
}

macro_rules! dispatch {
    ($self:ident, $a:ident => $e:expr) => {
        match $self {
            AnyAdapter::Linear($a) => $e,
            AnyAdapter::Hf($a) => $e,
            AnyAdapter::Tucker2($a) => $e,
            AnyAdapter::Cp($a) => $e,
        }
    };
}

impl Adapter for AnyAdapter {
    fn rank(&self) -> usize {
        dispatch!(self, a => a.rank())
    }

    fn scale(&self) -> f64 {
        dispatch!(self, a => a.scale())
    }

    fn delta_weight<const D: usize>(&self) -> Tensor<D> {
        dispatch!(self, a => a.delta_weight::<D>())
    }

    fn trainable_params(&self) -> usize {
        dispatch!(self, a => a.trainable_params())
    }
}

impl AnyAdapter {
    /// The conv variant, or `None` for linear LoRA.
    pub fn variant(&self) -> Option<ConvVariant> {
        match self {
            AnyAdapter::Linear(_) => None,
            AnyAdapter::Hf(_) => Some(ConvVariant::Hf),
            AnyAdapter::Tucker2(_) => Some(ConvVariant::Tucker2),
            AnyAdapter::Cp(_) => Some(ConvVariant::Cp),
        }
    }

    /// The adapted kernel's shape `[t, s/g, k..]`, or `None` for linear LoRA.
    pub fn kernel_shape(&self) -> Option<&[usize]> {
        match self {
            AnyAdapter::Linear(_) => None,
            AnyAdapter::Hf(a) => Some(&a.kernel_shape),
            AnyAdapter::Tucker2(a) => Some(&a.kernel_shape),
            AnyAdapter::Cp(a) => Some(&a.kernel_shape),
        }
    }

    /// Build the `variant` adapter for a conv kernel of shape `[t, s/g, k..]`.
    ///
    /// # Errors
    /// As each adapter's constructor.
    pub fn conv(
        variant: ConvVariant,
        path: &str,
        shape: &[usize],
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<Self> {
        Ok(match variant {
            ConvVariant::Hf => AnyAdapter::Hf(HfAdapter::new(path, shape, spec, device)?),
            ConvVariant::Tucker2 => {
                AnyAdapter::Tucker2(Tucker2Adapter::new(path, shape, spec, device)?)
            }
            ConvVariant::Cp => AnyAdapter::Cp(CpAdapter::new(path, shape, spec, device)?),
        })
    }
}

/// Builds linear LoRA for 2-D weights and the chosen conv variant for 3-, 4- and 5-D kernels
/// (Conv1d/2d/3d).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvFactory {
    /// The conv variant.
    pub variant: ConvVariant,
}

impl ConvFactory {
    /// A factory for `variant`.
    pub fn new(variant: ConvVariant) -> Self {
        Self { variant }
    }
}

impl AdapterFactory for ConvFactory {
    type Adapter = AnyAdapter;

    fn build(
        &self,
        path: &str,
        shape: &[usize],
        spec: &AdapterSpec,
        device: &Device,
    ) -> Result<AnyAdapter> {
        match shape.len() {
            2 => Ok(AnyAdapter::Linear(LinearAdapter::new(
                path, shape[0], shape[1], spec, device,
            )?)),
            3..=5 => AnyAdapter::conv(self.variant, path, shape, spec, device),
            _ => Err(LoraError::UnsupportedGeometry {
                path: path.to_string(),
                reason: format!(
                    "no adapter for a {}-D weight {shape:?}: linear weights are 2-D, conv kernels \
                     3- to 5-D",
                    shape.len()
                ),
            }),
        }
    }
}

/// A [`LoraConfig`] that targets every weight of every Linear and Conv1d/2d/3d (tensor ranks 2
/// to 5); narrow it with `with_targets`.
pub fn conv_config(rank: usize, alpha: f64) -> LoraConfig {
    LoraConfig::new(rank, alpha).with_tensor_ranks(vec![2, 3, 4, 5])
}
