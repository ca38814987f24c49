//! The transfer study's backbone in the forms the benches time: dlib's ResNet-29
//! (`lora_backbones`) with fresh weights (time and memory do not depend on them) under a 4-class
//! head, and one training step of any model on a fixed batch.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor};
use lora_backbones::{Classifier, ResNet29};
use lora_conv::bounds::rank_limit;
use lora_conv::{ConvLayer, ConvVariant, ForwardMode, LoraConv};
use lora_core::{AdapterSpec, Result};

use crate::cnn;

/// Classes of the head (ELPV's four defect probabilities).
pub const CLASSES: usize = 4;

/// Full fine-tuning: everything trains but face-api's unused descriptor layer.
pub fn full(device: &Device) -> Classifier<Conv2d> {
    let mut backbone = ResNet29::<Conv2d>::init(device);
    backbone.fc = backbone.fc.no_grad();
    Classifier::new(backbone, CLASSES, device)
}

/// A linear probe: the backbone frozen, a fresh head.
pub fn head_only(device: &Device) -> Classifier<Conv2d> {
    Classifier::new(ResNet29::<Conv2d>::init(device).no_grad(), CLASSES, device)
}

/// Every conv wrapped in a `variant` adapter of rank `rank` (capped per layer at the type's
/// limit, `alpha = rank`) run in `mode`; convs and affine maps frozen, the head trainable. Up
/// factors are randomised so the update is not zero.
///
/// # Errors
/// As [`LoraConv::new`].
pub fn adapted(
    variant: ConvVariant,
    rank: usize,
    mode: ForwardMode,
    device: &Device,
) -> Result<Classifier<LoraConv<Conv2d>>> {
    let backbone = ResNet29::<Conv2d>::init(device).no_grad();
    let adapted = backbone.map_convs(|path, conv| {
        let r = rank.min(rank_limit(variant, &conv.geometry())).max(1);
        let spec = AdapterSpec::new(r, r as f64);
        LoraConv::new(path, conv, variant, &spec, 0.0, mode, device)
    })?;
    Ok(cnn::randomize_branch(
        Classifier::new(adapted, CLASSES, device),
        0.05,
    ))
}

/// A random `[batch, 3, size, size]` batch of 0..255 pixels and its labels.
pub fn batch(batch: usize, size: usize, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
    let x = Tensor::random(
        [batch, 3, size, size],
        Distribution::Uniform(0.0, 255.0),
        device,
    );
    let labels: Vec<i64> = (0..batch).map(|i| (i % CLASSES) as i64).collect();
    (x, Tensor::from_data(labels.as_slice(), device))
}

/// A model, its Adam state and one fixed batch: [`Stepper::step`] takes one training step.
pub struct Stepper<M, F> {
    model: Option<M>,
    forward: F,
    optim: burn::optim::ModuleOptimizer,
    x: Tensor<4>,
    y: Tensor<1, Int>,
}

impl<M: Module, F: Fn(&M, Tensor<4>) -> Tensor<2>> Stepper<M, F> {
    /// A stepper for `model` (on an autodiff device) with `forward` giving its logits.
    pub fn new(model: M, forward: F, x: Tensor<4>, y: Tensor<1, Int>) -> Self {
        Self {
            model: Some(model),
            forward,
            optim: AdamConfig::new().init(),
            x,
            y,
        }
    }

    /// One step: forward, cross-entropy, backward, Adam. Returns the loss (read back, so the
    /// step is done).
    pub fn step(&mut self) -> f32 {
        let Some(model) = self.model.take() else {
            return f32::NAN;
        };
        let loss = cnn::loss((self.forward)(&model, self.x.clone()), self.y.clone());
        let value = loss.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        self.model = Some(self.optim.step(1e-4, model, grads));
        value
    }

    /// The model, after the steps taken.
    pub fn model(&self) -> Option<&M> {
        self.model.as_ref()
    }
}
