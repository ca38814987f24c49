//! `experiments::norm::batch_norm` against burn's `BatchNorm::forward`, on a grid of 1D, 2D
//! and 3D activations: the output, the gradients of the input, γ and β, and the running
//! statistics after the call, in training mode (γ, β trainable or frozen) and in inference.
//!
//! Tolerances: outputs and running statistics 1e-5 of the largest magnitude (floor 1e-6);
//! gradients 1e-4 (floor 1e-5), since the two sum in different orders.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::module::{Module, Param, RunningState};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::{Device, Distribution, Shape, Tensor};
use experiments::norm::batch_norm;
use lora_core::testing::{Tol, assert_close};

const OUT: Tol = Tol {
    rel: 1e-5,
    abs: 1e-6,
};
const GRAD: Tol = Tol {
    rel: 1e-4,
    abs: 1e-5,
};

/// A batch norm with random γ, β and running statistics, and a given momentum.
fn layer(c: usize, momentum: f64, device: &Device) -> BatchNorm {
    let mut norm = BatchNormConfig::new(c)
        .with_momentum(momentum)
        .with_epsilon(1e-3)
        .init(device);
    let random = |mean: f64| Tensor::<1>::random([c], Distribution::Normal(mean, 0.5), device);
    norm.gamma = Param::from_tensor(random(1.0));
    norm.beta = Param::from_tensor(random(0.0));
    norm.running_mean = RunningState::new(random(0.3));
    norm.running_var = RunningState::new(random(2.0).abs());
    norm
}

fn check<const D: usize>(dims: [usize; D], frozen: bool, device: &Device) {
    let what = format!("{dims:?}{}", if frozen { " frozen" } else { "" });
    let c = dims[1];
    let theirs = layer(c, 0.3, device);
    let theirs = if frozen { theirs.no_grad() } else { theirs };
    // A clone shares its running statistics with the original (burn's RunningState is
    // shared state), so `ours` gets its own copies.
    let ours = BatchNorm {
        running_mean: RunningState::new(theirs.running_mean.value_sync()),
        running_var: RunningState::new(theirs.running_var.value_sync()),
        ..theirs.clone()
    };
    // An input with a per-channel offset and spread, so the statistics matter.
    let x = Tensor::<D>::random(Shape::from(dims), Distribution::Normal(0.0, 1.0), device);
    let mut per_channel = [1; D];
    per_channel[1] = c;
    let offset = Tensor::<D>::random(
        Shape::from(per_channel),
        Distribution::Normal(2.0, 1.0),
        device,
    );
    let x = (x * offset.clone().abs() + offset).detach().require_grad();
    let weights = Tensor::<D>::random(Shape::from(dims), Distribution::Normal(0.0, 1.0), device);

    let y_theirs = theirs.forward(x.clone());
    let y_ours = batch_norm(&ours, x.clone());
    assert_close(
        y_ours.clone(),
        y_theirs.clone(),
        OUT,
        &format!("{what}: output"),
    );

    let g_theirs = (y_theirs * weights.clone()).sum().backward();
    let g_ours = (y_ours * weights).sum().backward();
    assert_close(
        x.grad(&g_ours).unwrap(),
        x.grad(&g_theirs).unwrap(),
        GRAD,
        &format!("{what}: input gradient"),
    );
    if frozen {
        assert!(
            ours.gamma.val().grad(&g_ours).is_none(),
            "{what}: frozen γ got a gradient"
        );
    } else {
        for (name, a, b) in [
            ("γ", &ours.gamma, &theirs.gamma),
            ("β", &ours.beta, &theirs.beta),
        ] {
            assert_close(
                a.val().grad(&g_ours).expect("a gradient"),
                b.val().grad(&g_theirs).expect("a gradient"),
                GRAD,
                &format!("{what}: {name} gradient"),
            );
        }
    }
    assert_close(
        ours.running_mean.value_sync(),
        theirs.running_mean.value_sync(),
        OUT,
        &format!("{what}: running mean"),
    );
    assert_close(
        ours.running_var.value_sync(),
        theirs.running_var.value_sync(),
        OUT,
        &format!("{what}: running variance"),
    );

    // Inference (no autodiff): burn's own path, bit for bit, on the same layer.
    let plain = x.clone().inner();
    let eval = theirs.valid();
    let eval_theirs = eval.forward(plain.clone());
    let eval_ours = batch_norm(&eval, plain);
    assert_close(
        eval_ours,
        eval_theirs,
        Tol { rel: 0.0, abs: 0.0 },
        &format!("{what}: inference"),
    );
}

#[test]
fn matches_burn_on_1d_2d_and_3d_activations() {
    let device = Device::flex().autodiff();
    device.seed(21);
    for frozen in [false, true] {
        check([1, 3, 5], frozen, &device);
        check([6, 4, 17], frozen, &device);
        check([4, 8, 7, 7], frozen, &device);
        check([2, 5, 3, 9], frozen, &device);
        check([2, 3, 3, 4, 6], frozen, &device);
    }
}

/// The running statistics move by the momentum toward the batch's mean and biased variance
/// (as burn does): with momentum 1 they become exactly those.
#[test]
fn running_statistics_take_the_batch_mean_and_biased_variance() {
    let device = Device::flex().autodiff();
    device.seed(22);
    let norm = layer(3, 1.0, &device);
    let x = Tensor::<3>::random([4, 3, 10], Distribution::Normal(1.0, 2.0), &device);
    let _ = batch_norm(&norm, x.clone());
    let x = x.inner().swap_dims(0, 1).reshape([3, 40]);
    let mean = x.clone().mean_dim(1).reshape([3]);
    let var = (x - mean.clone().reshape([3, 1]))
        .powi_scalar(2)
        .mean_dim(1)
        .reshape([3]);
    assert_close(
        norm.running_mean.value_sync().inner(),
        mean,
        OUT,
        "running mean",
    );
    assert_close(
        norm.running_var.value_sync().inner(),
        var,
        OUT,
        "running variance",
    );
}
