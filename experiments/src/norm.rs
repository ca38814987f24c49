//! Batch norm in training mode, computed in fewer passes than burn's generic
//! `batch_norm_train`.
//!
//! burn 0.22's `BatchNorm::forward` in training mode calls the backend's `batch_norm_train`
//! op. `flex` does not implement it, so it runs burn-backend's default: the statistics are
//! taken after swapping the batch and channel axes (two strided copies of the activation),
//! and the backward makes about a dozen passes more. [`batch_norm`] computes the same function
//! from plain tensor ops on a `[B, C, positions]` view: one reduction for the mean, one for
//! the variance, and `centered · (γ/σ) + β`, and lets autodiff differentiate it. On the bench
//! CNN's shapes (batch 64) forward and backward together took 2–3x less time than burn's op;
//! see the Performance section of the README for the step it is part of.
//!
//! Only the training path is replaced; in inference (no autodiff, or the layer's `training`
//! flag off) it is `BatchNorm::forward` itself.

use burn::nn::BatchNorm;
use burn::tensor::Tensor;

/// `norm.forward(x)`: the same output, the same gradients (up to float rounding) and the same
/// update of the running statistics (momentum, biased batch variance), in fewer passes while
/// training.
///
/// # Shapes
/// - `x`: `[B, C, ..d]` -> `[B, C, ..d]`
///
/// # Panics
/// As `BatchNorm::forward`: if `x` has fewer than 2 axes or its second axis is not the
/// layer's feature count (callers in this crate build both from one config).
pub fn batch_norm<const D: usize>(norm: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let [features] = norm.gamma.shape().dims();
    if dims.get(1) != Some(&features) || !(x.is_autodiff() && norm.training.is_enabled()) {
        // Inference, and shapes burn refuses (it panics on them, as it always has).
        return norm.forward(x);
    }
    let (b, c) = (dims[0], dims[1]);
    let positions: usize = dims[2..].iter().product();
    let n = (b * positions) as f64;
    let x = x.reshape([b, c, positions]);
    // Statistics over the batch and every position: reduce the contiguous last axis first.
    let mean = x.clone().sum_dim(2).sum_dim(0).div_scalar(n);
    let centered = x - mean.clone();
    let variance = centered
        .clone()
        .powi_scalar(2)
        .sum_dim(2)
        .sum_dim(0)
        .div_scalar(n);
    let scale = norm.gamma.val().reshape([1, c, 1])
        * variance.clone().add_scalar(norm.epsilon).sqrt().recip();
    let y = centered * scale + norm.beta.val().reshape([1, c, 1]);

    // The running statistics, updated by BatchNorm::forward_train's formula (to rounding:
    // the batch statistics above are summed, then divided).
    let device = y.device();
    let momentum = norm.momentum;
    let blend = |running: Tensor<1>, batch: Tensor<3>| {
        running
            .to_device(&device)
            .mul_scalar(1.0 - momentum)
            .add(batch.detach().reshape([c]).mul_scalar(momentum))
            .detach()
    };
    norm.running_mean
        .update(blend(norm.running_mean.value_sync(), mean));
    norm.running_var
        .update(blend(norm.running_var.value_sync(), variance));
    y.reshape(dims)
}
