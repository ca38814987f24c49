//! `LoraLinear`: a `Linear` with a LoRA branch beside it (the bypass form).

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::adapter::{Adapter, AdapterSpec, FactorInit, Scaling};
use crate::linear::LinearAdapter;

/// Configuration of a [`LoraLinear`].
#[derive(Config, Debug)]
pub struct LoraLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Rank `r`, in `1..=min(d_input, d_output)`.
    pub rank: usize,
    /// Scaling numerator.
    pub alpha: f64,
    /// `alpha/r` or `alpha/sqrt(r)`.
    #[config(default = "Scaling::Standard")]
    pub scaling: Scaling,
    /// Init of `down` (`up` is always zero).
    #[config(default = "FactorInit::KaimingUniform")]
    pub init: FactorInit,
    /// Dropout on the adapter branch's input only, as in PEFT.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Whether the base layer has a bias.
    #[config(default = true)]
    pub bias: bool,
}

impl LoraLinearConfig {
    /// The adapter spec this configuration describes.
    pub fn spec(&self) -> AdapterSpec {
        AdapterSpec {
            rank: self.rank,
            alpha: self.alpha,
            scaling: self.scaling,
            init: self.init,
        }
    }

    /// A `LoraLinear` around a freshly initialized base layer.
    ///
    /// # Errors
    /// [`crate::LoraError::InvalidRank`] / [`crate::LoraError::InvalidAlpha`].
    pub fn init(&self, device: &Device) -> crate::Result<LoraLinear> {
        let base = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .init(device);
        self.wrap(base, device)
    }

    /// A `LoraLinear` around an existing (pretrained) layer, which is frozen.
    ///
    /// The layer's own shape wins over `d_input`/`d_output`.
    ///
    /// # Errors
    /// [`crate::LoraError::InvalidRank`] / [`crate::LoraError::InvalidAlpha`].
    pub fn wrap(&self, base: Linear, device: &Device) -> crate::Result<LoraLinear> {
        let [d_in, d_out] = base.weight.lazy_shape().dims();
        let adapter = LinearAdapter::new("linear", d_in, d_out, &self.spec(), device)?;
        Ok(LoraLinear {
            base: base.no_grad(),
            adapter,
            dropout: DropoutConfig::new(self.dropout).init(),
        })
    }
}

/// A frozen `Linear` plus a trainable low-rank branch:
/// `y = base(x) + scale · up(down(dropout(x)))`.
///
/// It holds the same [`LinearAdapter`] that the weight-space form attaches to a plain `Linear`,
/// so the two forms compute the same function from the same parameters (with dropout off).
/// Use this form when you want dropout on the adapter input, or to avoid composing the full
/// weight each step when `d_in·d_out` is much larger than the batch.
///
/// # Shapes
/// - input: `[..., d_input]`
/// - output: `[..., d_output]`
#[derive(Module, Debug)]
pub struct LoraLinear {
    /// The frozen base layer; its weight is `[d_input, d_output]` (burn layout).
    pub base: Linear,
    /// The trainable update.
    pub adapter: LinearAdapter,
    /// Dropout on the branch input.
    pub dropout: Dropout,
}

impl LoraLinear {
    /// Forward pass.
    ///
    /// # Panics
    /// If the last input dimension is not `d_input`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let branch = self.adapter.forward(self.dropout.forward(x.clone()));
        self.base.forward(x) + branch
    }

    /// Fold the update into the weight and return a plain `Linear` with the same output.
    pub fn merge(self) -> Linear {
        let delta = self.adapter.delta_weight::<2>();
        let weight = self.base.weight.map(|w| (w + delta).detach());
        Linear {
            weight,
            bias: self.base.bias,
        }
    }
}
