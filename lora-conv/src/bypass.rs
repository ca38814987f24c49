//! `LoraConv`: a frozen Conv1d/2d/3d with a conv LoRA branch beside it (the bypass form).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Tensor};
use lora_core::{Adapter, AdapterSpec, LoraError, Result};

use crate::any::AnyAdapter;
use crate::layer::ConvLayer;
use crate::variant::ConvVariant;

/// `y = base(x) + branch(dropout(x))`, where the branch is the adapter's conv chain with the
/// base's stride, padding (symmetric, asymmetric or same) and dilation.
///
/// It holds the same adapter modules that the weight-space form attaches to a plain conv, so
/// both forms compute the same function from the same parameters (with dropout off).
///
/// Grouped convolutions are refused: the update is a full `[t, s/g, k..]` kernel applied with
/// the base's groups, and a chain of group-wise convs would compute a block-diagonal restriction
/// of it instead. Use the weight-space form (`lora_core::attach`) for them, which is exact.
///
/// # Shapes
/// - input: `[B, s, ..d]`
/// - output: `[B, t, ..d']`, as the base conv
#[derive(Module, Debug)]
pub struct LoraConv<C: ConvLayer> {
    /// The frozen base layer.
    pub base: C,
    /// The trainable update (a conv arm of [`AnyAdapter`]).
    pub adapter: AnyAdapter,
    /// Dropout on the branch input.
    pub dropout: Dropout,
}

impl<C: ConvLayer> LoraConv<C> {
    /// Wrap a (pretrained) conv layer, freezing it.
    ///
    /// # Errors
    /// [`LoraError::UnsupportedGeometry`] for grouped convs; the adapter's own errors for a bad
    /// rank or alpha. `name` is used as the path in errors.
    pub fn wrap(
        name: &str,
        base: C,
        variant: ConvVariant,
        spec: &AdapterSpec,
        dropout: f64,
        device: &Device,
    ) -> Result<Self> {
        let geometry = base.geometry();
        if geometry.groups != 1 {
            return Err(LoraError::UnsupportedGeometry {
                path: name.to_string(),
                reason: format!(
                    "the bypass form is not exact for grouped convs (groups = {}); use the \
                     weight-space form",
                    geometry.groups
                ),
            });
        }
        let adapter = AnyAdapter::conv(variant, name, &geometry.weight_shape(), spec, device)?;
        Ok(Self {
            base: base.no_grad(),
            adapter,
            dropout: DropoutConfig::new(dropout).init(),
        })
    }

    /// Forward pass.
    ///
    /// # Panics
    /// If `N` is not the base conv's rank (`d + 2`), or the channels do not match.
    pub fn forward<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        let geometry = self.base.geometry();
        let dims = x.dims();
        let padding = geometry.padding_for(&dims[2..]);
        let (stride, dilation) = (&geometry.stride, &geometry.dilation);
        let input = self.dropout.forward(x.clone());
        let branch = match &self.adapter {
            AnyAdapter::Hf(a) => a.branch(input, stride, &padding, dilation),
            AnyAdapter::Tucker2(a) => a.branch(input, stride, &padding, dilation),
            AnyAdapter::Cp(a) => a.branch(input, stride, &padding, dilation),
            AnyAdapter::Linear(_) => unreachable!("LoraConv::wrap only builds conv adapters"),
        };
        self.base.forward_nd(x) + branch
    }

    /// Fold the update into the kernel and return the plain conv, with the same output.
    pub fn merge(self) -> C {
        self.base.add_delta(&self.adapter)
    }

    /// Trainable scalars in the adapter.
    pub fn trainable_params(&self) -> usize {
        self.adapter.trainable_params()
    }
}
