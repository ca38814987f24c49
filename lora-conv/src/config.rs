//! [`LoraConvConfig`]: a conv adapter layer described in burn-nn style, then `init` on a base
//! conv.

use burn::config::Config;
use burn::tensor::Device;
use lora_core::{AdapterSpec, FactorInit, Scaling};

use crate::bypass::LoraConv;
use crate::forward::ForwardMode;
use crate::layer::ConvLayer;
use crate::variant::ConvVariant;

/// Configuration of a [`LoraConv`]: which adapter type, its rank and alpha, and how the layer
/// runs.
///
/// ```
/// use burn::nn::conv::Conv2dConfig;
/// use burn::tensor::Device;
/// use lora_conv::{ConvVariant, ForwardMode, LoraConvConfig};
///
/// let device = Device::flex();
/// let conv = Conv2dConfig::new([16, 32], [3, 3]).init(&device);
/// let layer = LoraConvConfig::new(ConvVariant::Tucker2, 4, 8.0)
///     .with_mode(ForwardMode::Bypass)
///     .init("blocks.0.conv", conv, &device)
///     .unwrap();
/// assert_eq!(layer.trainable_params(), 4 * (16 + 32) + 16 * 9);
/// ```
#[derive(Config, Debug)]
pub struct LoraConvConfig {
    /// The adapter type (any registered one).
    pub variant: ConvVariant,
    /// Rank `r`.
    pub rank: usize,
    /// Scaling numerator.
    pub alpha: f64,
    /// `alpha/r` or `alpha/sqrt(r)`.
    #[config(default = "Scaling::Standard")]
    pub scaling: Scaling,
    /// Init of the input-side factors (the output side is always zero).
    #[config(default = "FactorInit::KaimingUniform")]
    pub init: FactorInit,
    /// Dropout on the adapter branch's input (bypass form only).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Weight-space, bypass, or the cheaper of the two per call.
    #[config(default = "ForwardMode::Auto")]
    pub mode: ForwardMode,
}

impl LoraConvConfig {
    /// The adapter spec this configuration describes.
    pub fn spec(&self) -> AdapterSpec {
        AdapterSpec {
            rank: self.rank,
            alpha: self.alpha,
            scaling: self.scaling,
            init: self.init,
        }
    }

    /// Wrap a (pretrained) conv layer, freezing it; `name` names it in errors.
    ///
    /// # Errors
    /// As [`LoraConv::new`].
    pub fn init<C: ConvLayer>(
        &self,
        name: &str,
        base: C,
        device: &Device,
    ) -> lora_core::Result<LoraConv<C>> {
        LoraConv::new(
            name,
            base,
            self.variant,
            &self.spec(),
            self.dropout,
            self.mode,
            device,
        )
    }
}
