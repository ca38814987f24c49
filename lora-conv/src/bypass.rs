//! `LoraConv`: a frozen Conv1d/2d/3d with a conv LoRA beside it, run in weight-space or bypass
//! form, or the cheaper of the two per call.

use burn::module::{Content, DisplaySettings, Module, ModuleDisplay};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::{Device, Shape, Tensor};
use lora_core::{Adapter, AdapterSpec, LoraError, Result};

use crate::adapter::ConvArgs;
use crate::carrier::AnyAdapter;
use crate::cost::{CostModel, Workload};
use crate::forward::ForwardMode;
use crate::functional::conv::conv_nd;
use crate::layer::ConvLayer;
use crate::variant::ConvVariant;

/// A frozen conv and a trainable conv adapter, computing `base(x) + branch(dropout(x))`.
///
/// The [`ForwardMode`] says how:
/// - bypass: the base conv, plus the adapter's conv chain (with the base's stride, padding
///   (symmetric, asymmetric or same) and dilation) on the input;
/// - weight-space: one conv with the recomposed kernel `W + scale·ΔW`;
/// - auto: per call, the cheaper of the two under the layer's [`CostModel`], from the input's
///   batch and spatial size and whether a backward pass follows.
///
/// The adapter modules are the ones the weight-space form attaches to a plain conv
/// (`lora_core::attach`), so every form computes the same function from the same parameters.
///
/// Grouped convolutions cannot run in bypass form: the update is a full `[t, s/g, k..]` kernel
/// applied with the base's groups, and a chain of group-wise convs would compute a
/// block-diagonal restriction of it instead. For them `Auto` always picks weight-space, and
/// `Bypass` is refused. Dropout on the branch input exists only in bypass form, so a non-zero
/// dropout refuses `WeightSpace`, and `Auto` then runs bypass while training.
///
/// # Shapes
/// - input: `[B, s, ..d]`
/// - output: `[B, t, ..d']`, as the base conv
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct LoraConv<C: ConvLayer> {
    /// The frozen base layer.
    base: C,
    /// The trainable update: a conv adapter whose update has the base kernel's shape (checked
    /// by every constructor).
    adapter: AnyAdapter,
    /// Dropout on the branch input.
    dropout: Dropout,
    /// How the output is computed (never `Bypass` on a grouped conv).
    #[module(skip)]
    mode: ForwardMode,
    /// The cost model `Auto` decides with.
    #[module(skip)]
    cost: CostModel,
}

impl<C: ConvLayer> LoraConv<C> {
    /// Wrap a (pretrained) conv layer in bypass form, freezing it.
    ///
    /// # Errors
    /// As [`LoraConv::new`] with [`ForwardMode::Bypass`].
    pub fn wrap(
        name: &str,
        base: C,
        variant: ConvVariant,
        spec: &AdapterSpec,
        dropout: f64,
        device: &Device,
    ) -> Result<Self> {
        Self::new(
            name,
            base,
            variant,
            spec,
            dropout,
            ForwardMode::Bypass,
            device,
        )
    }

    /// Wrap a (pretrained) conv layer, freezing it, with a fresh `variant` adapter run in
    /// `mode` (with the default [`CostModel`] for `Auto`).
    ///
    /// # Errors
    /// [`LoraError::UnsupportedGeometry`] for `Bypass` on a grouped conv, or `WeightSpace`
    /// with non-zero dropout, or a grouped conv with non-zero dropout; the adapter's own
    /// errors for a bad rank or alpha. `name` is used as the path in errors.
    pub fn new(
        name: &str,
        base: C,
        variant: ConvVariant,
        spec: &AdapterSpec,
        dropout: f64,
        mode: ForwardMode,
        device: &Device,
    ) -> Result<Self> {
        let geometry = base.geometry();
        check_mode(name, mode, geometry.groups, dropout)?;
        let adapter = variant.build(name, &geometry.weight_shape(), spec, device)?;
        // State that depends on the pretrained kernel (DoRA's magnitude).
        let adapter = match geometry.dims() {
            1 => adapter.with_base(&base.kernel::<3>()),
            2 => adapter.with_base(&base.kernel::<4>()),
            _ => adapter.with_base(&base.kernel::<5>()),
        };
        Ok(Self {
            base: base.no_grad(),
            adapter,
            dropout: DropoutConfig::new(dropout).init(),
            mode,
            cost: CostModel::default(),
        })
    }

    /// The same layer run in another mode.
    ///
    /// # Errors
    /// As [`LoraConv::new`], naming `name`.
    pub fn with_mode(self, name: &str, mode: ForwardMode) -> Result<Self> {
        check_mode(name, mode, self.base.geometry().groups, self.dropout.prob)?;
        Ok(Self { mode, ..self })
    }

    /// The same layer with another adapter (trained elsewhere, or with other factors).
    ///
    /// # Errors
    /// [`LoraError::UnsupportedGeometry`] naming `name` for a linear adapter (it has no conv
    /// branch); [`LoraError::ShapeMismatch`] when the adapter's kernel is not the base's.
    pub fn with_adapter(self, name: &str, adapter: AnyAdapter) -> Result<Self> {
        let expected = self.base.geometry().weight_shape();
        match adapter.kernel_shape() {
            None => Err(LoraError::UnsupportedGeometry {
                path: name.to_string(),
                reason: "a linear adapter has no conv bypass branch; use a conv variant".into(),
            }),
            Some(shape) if shape != expected.as_slice() => Err(LoraError::ShapeMismatch {
                path: format!("{name} (the adapter's kernel)"),
                expected,
                actual: shape.to_vec(),
            }),
            Some(_) => Ok(Self { adapter, ..self }),
        }
    }

    /// The frozen base layer.
    pub fn base(&self) -> &C {
        &self.base
    }

    /// The adapter.
    pub fn adapter(&self) -> &AnyAdapter {
        &self.adapter
    }

    /// The forward mode.
    pub fn mode(&self) -> ForwardMode {
        self.mode
    }

    /// The same layer deciding `Auto` with another cost model.
    pub fn with_cost(self, cost: CostModel) -> Self {
        Self { cost, ..self }
    }

    /// The form a call on an input of dims `[B, s, ..d]` runs: `training` when a backward
    /// pass follows, `input_grad` when the input itself needs a gradient.
    pub fn form(&self, input_dims: &[usize], training: bool, input_grad: bool) -> ForwardMode {
        match self.mode {
            ForwardMode::Auto => {
                let geometry = self.base.geometry();
                if self.dropout.prob > 0.0 && training && geometry.groups == 1 {
                    return ForwardMode::Bypass;
                }
                let Some(&batch) = input_dims.first() else {
                    return ForwardMode::WeightSpace;
                };
                let variant = self.adapter.variant();
                let work = Workload {
                    batch,
                    input: input_dims.get(2..).unwrap_or_default().to_vec(),
                    training,
                    input_grad,
                };
                self.cost
                    .choose(variant, &geometry, self.adapter.rank(), &work)
            }
            mode => mode,
        }
    }

    /// Forward pass, in the form [`LoraConv::form`] gives for this input.
    ///
    /// # Panics
    /// If `N` is not the base conv's rank (`d + 2`), or the channels do not match.
    pub fn forward<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        let training = x.is_autodiff();
        match self.form(&x.dims(), training, training && x.is_tracked()) {
            ForwardMode::WeightSpace => self.base.forward_with_delta(x, self.effective_delta()),
            _ => self.bypass(x),
        }
    }

    fn bypass<const N: usize>(&self, x: Tensor<N>) -> Tensor<N> {
        let geometry = self.base.geometry();
        let dims = x.dims();
        let padding = geometry.padding_for(&dims[2..]);
        let (stride, dilation) = (&geometry.stride, &geometry.dilation);
        let input = self.dropout.forward(x.clone());
        let conv = ConvArgs {
            stride,
            padding: &padding,
            dilation,
        };
        // A type without a cheaper branch convolves with its recomposed update (kept, so that
        // a weight-decomposed type below does not recompose it again).
        let mut delta = None;
        let branch = match self.adapter.branch(input.clone(), &conv) {
            Some(branch) => branch,
            None => {
                let update = self.adapter.delta_weight::<N>();
                delta = Some(update.clone());
                conv_nd(input, update, stride, &padding, dilation, 1)
            }
        };
        if self.adapter.additive() {
            return self.base.forward_nd(x) + branch;
        }
        // Weight-decomposed (DoRA): W' = s ⊙ V per output channel, so
        // y = s ⊙ (conv(x, W) + branch) + bias, with s from V = W + scale·ΔW.
        let delta = delta.unwrap_or_else(|| self.adapter.delta_weight::<N>());
        let v = self.base.kernel::<N>() + delta;
        let Some(s) = self.adapter.channel_scale(&v) else {
            return self.base.forward_nd(x) + branch;
        };
        let t = geometry.out_channels;
        let mut shape = vec![1usize; N];
        shape[1] = t;
        let s = s.reshape(Shape::from(shape.clone()));
        match self.base.bias_values() {
            Some(bias) => {
                let bias = bias.reshape(Shape::from(shape));
                (self.base.forward_nd(x) - bias.clone() + branch) * s + bias
            }
            None => (self.base.forward_nd(x) + branch) * s,
        }
    }

    /// What the weight-space form adds to the kernel: `scale·ΔW`, or `s ⊙ V − W` for a
    /// weight-decomposed type.
    fn effective_delta<const N: usize>(&self) -> Tensor<N> {
        let delta = self.adapter.delta_weight::<N>();
        if self.adapter.additive() {
            return delta;
        }
        let w = self.base.kernel::<N>();
        let v = w.clone() + delta;
        match self.adapter.channel_scale(&v) {
            Some(s) => v * s - w,
            None => v - w,
        }
    }

    /// Fold the update into the kernel and return the plain conv, with the same output.
    pub fn merge(self) -> C {
        match self.base.geometry().dims() {
            1 => {
                let delta = self.effective_delta::<3>().detach();
                self.base.add_delta(delta)
            }
            2 => {
                let delta = self.effective_delta::<4>().detach();
                self.base.add_delta(delta)
            }
            _ => {
                let delta = self.effective_delta::<5>().detach();
                self.base.add_delta(delta)
            }
        }
    }

    /// Trainable scalars in the adapter.
    pub fn trainable_params(&self) -> usize {
        self.adapter.trainable_params()
    }
}

fn check_mode(name: &str, mode: ForwardMode, groups: usize, dropout: f64) -> Result<()> {
    let refuse = |reason: String| {
        Err(LoraError::UnsupportedGeometry {
            path: name.to_string(),
            reason,
        })
    };
    if groups != 1 && mode == ForwardMode::Bypass {
        return refuse(format!(
            "the bypass form is not exact for grouped convs (groups = {groups}); use the \
             weight-space or auto form"
        ));
    }
    if dropout > 0.0 && (mode == ForwardMode::WeightSpace || groups != 1) {
        return refuse(format!(
            "dropout {dropout} on the adapter input needs the bypass form, which {}",
            if groups != 1 {
                format!("grouped convs (groups = {groups}) cannot use")
            } else {
                "the weight-space mode does not run".to_string()
            }
        ));
    }
    Ok(())
}

impl<C: ConvLayer> ModuleDisplay for LoraConv<C> {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        content
            .add_debug_attribute("type", &self.adapter.variant())
            .add("rank", &self.adapter.rank())
            .add("scale", &self.adapter.scale())
            .add_debug_attribute("mode", &self.mode)
            .add("dropout", &self.dropout.prob)
            .add_debug_attribute("kernel", &self.base.geometry().weight_shape())
            .optional()
    }
}
