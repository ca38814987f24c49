//! [`ConvFactory`], which builds the carrier for every targeted weight, and [`conv_config`].

use burn::tensor::Device;
use lora_core::{AdapterFactory, AdapterSpec, LoraConfig, LoraError, Result};

use crate::carrier::AnyAdapter;
use crate::variant::ConvVariant;

/// Builds the chosen adapter type for every targeted conv kernel (3-, 4- and 5-D weights) and,
/// for 2-D `Linear` weights, the same type when it adapts linear weights
/// ([`ConvVariant::adapts_linear`]) or plain LoRA otherwise.
///
/// [`ConvFactory::linear`] is the same factory limited to 2-D weights: with LoCon it is linear
/// LoRA (PEFT's `lora_A`/`lora_B`), the same update as burn's own `Module::apply_lora` and as
/// `lora_core::LinearFactory`, on the carrier every other adapter uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvFactory {
    /// The adapter type.
    pub variant: ConvVariant,
    /// Whether only 2-D (`Linear`) weights are adapted; any other targeted weight is refused.
    linear_only: bool,
}

impl ConvFactory {
    /// A factory for `variant`.
    pub fn new(variant: ConvVariant) -> Self {
        Self {
            variant,
            linear_only: false,
        }
    }

    /// A factory for `variant` on `Linear` weights (`[d_in, d_out]`) only, the one linear LoRA
    /// of the workspace with [`ConvVariant::LoCon`]. A type that does not adapt linear weights
    /// gives LoCon, as in [`ConvFactory::new`].
    pub fn linear(variant: ConvVariant) -> Self {
        Self {
            variant,
            linear_only: true,
        }
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
        match shape {
            // burn stores a Linear weight as [d_in, d_out]; the adapter sees PyTorch's [out, in].
            [d_in, d_out] => {
                let variant = if self.variant.adapts_linear() {
                    self.variant
                } else {
                    ConvVariant::LoCon
                };
                Ok(variant
                    .build(path, &[*d_out, *d_in], spec, device)?
                    .into_linear())
            }
            _ if self.linear_only => Err(LoraError::UnsupportedGeometry {
                path: path.to_string(),
                reason: format!(
                    "this factory adapts linear weights [d_in, d_out] only, this one is {shape:?}"
                ),
            }),
            _ if (3..=5).contains(&shape.len()) => self.variant.build(path, shape, spec, device),
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
