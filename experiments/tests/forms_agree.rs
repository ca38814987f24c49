//! The compare CNN with conv adapters in weight-space form (`lora_core::attach`) and in
//! `LoraConv` form (bypass and auto) from the same initial factors: the same logits and the same
//! gradients (1e-4), and close logits after training steps, so that the bypass and auto rows of
//! `compare` differ from the weight-space rows only in the form.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use experiments::methods::{plan_ranks, with_adapters, with_bypass};
use experiments::model::{CnnConfig, Conv2dLike};
use experiments::train::{Classifier, cross_entropy};
use lora_conv::{ConvVariant, ForwardMode};
use lora_core::testing::{Tol, assert_close};

fn train<M: Classifier<4>>(mut model: M, x: &Tensor<4>, y: &Tensor<1, Int>, steps: usize) -> M {
    let mut optim = AdamConfig::new().init();
    for _ in 0..steps {
        let loss = cross_entropy(model.logits(x.clone()), y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    model
}

/// Compare the gradient of every trainable float parameter of `a` with the gradient of the
/// parameter of the same id in `b`, for the same loss; returns how many were compared.
fn grads_agree<A: Classifier<4>, B: Classifier<4>>(
    a: &A,
    b: &B,
    x: &Tensor<4>,
    y: &Tensor<1, Int>,
    tol: Tol,
    what: &str,
) -> usize {
    struct Compare<'a> {
        ga: &'a GradientsParams,
        gb: &'a GradientsParams,
        tol: Tol,
        what: &'a str,
        count: usize,
    }
    impl burn::module::ModuleVisitor for Compare<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            if let Some(g) = self.ga.get::<D>(param.id) {
                let h = self.gb.get::<D>(param.id).unwrap_or_else(|| {
                    panic!(
                        "{}: {} has no gradient in the other form",
                        self.what, param.id
                    )
                });
                assert_close(
                    g,
                    h,
                    self.tol,
                    &format!("{}: gradient of {}", self.what, param.id),
                );
                self.count += 1;
            }
        }
    }
    let ga =
        GradientsParams::from_grads(cross_entropy(a.logits(x.clone()), y.clone()).backward(), a);
    let gb =
        GradientsParams::from_grads(cross_entropy(b.logits(x.clone()), y.clone()).backward(), b);
    let mut c = Compare {
        ga: &ga,
        gb: &gb,
        tol,
        what,
        count: 0,
    };
    a.visit(&mut c);
    c.count
}

fn logits<C: Conv2dLike>(model: &experiments::model::Cnn<C>, x: &Tensor<4>) -> Tensor<2> {
    model.forward(x.clone())
}

#[test]
fn weight_space_bypass_and_auto_agree_on_the_cnn() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let cnn = CnnConfig {
        pool_after: vec![0, 2],
        ..CnnConfig::vgg([8, 8, 16, 16, 32], 10)
    };
    let base = cnn.init(&device);
    let x = Tensor::<4>::random([16, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..16).map(|i| i % 10).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [16]), &device);
    for variant in ConvVariant::BUILTIN {
        let layers = plan_ranks(variant, 4, &cnn.geometries(), "blocks.");
        let weight = with_adapters(&base, variant, &layers, false).unwrap();
        for mode in [ForwardMode::Bypass, ForwardMode::Auto] {
            let other = with_bypass(base.clone(), &weight, variant, mode, &device).unwrap();
            let tol = Tol {
                rel: 1e-4,
                abs: 1e-5,
            };
            let what = format!("{variant:?} {mode}");
            assert_eq!(
                lora_core::param_counts(&weight).trainable,
                lora_core::param_counts(&other).trainable,
                "{what}"
            );
            assert_close(
                logits(&weight, &x),
                logits(&other, &x),
                tol,
                &format!("{what}: at init"),
            );
            // The same gradient for every trainable parameter (they share ids), from one
            // backward pass each: the precise form of "they train the same".
            let checked = grads_agree(&weight, &other, &x, &y, tol, &what);
            assert!(checked > 0, "{what}: no trainable parameter compared");
            // And after a few Adam steps. Training amplifies rounding: a max-pool or ReLU that
            // switches on a near tie routes a gradient elsewhere, and Adam normalises each
            // element's step, so the logits drift apart by more than at init. With the
            // experiments' batch norm (experiments::norm, whose backward rounds differently
            // from burn's fused op) the drift reached 2.5e-3 of their magnitude (DoRA and LoKr
            // bypass, 3 runs in 38 over 1e-3); the bound is 1e-2. A form that trains
            // differently fails the gradient check above at 1e-4 first (a 10% scale error in
            // Tucker-2's branch does).
            let (w, o) = (train(weight.clone(), &x, &y, 3), train(other, &x, &y, 3));
            assert_close(
                logits(&w, &x),
                logits(&o, &x),
                Tol {
                    rel: 1e-2,
                    abs: 1e-5,
                },
                &format!("{what}: after 3 Adam steps"),
            );
            let _ = (w.valid(), o.valid());
        }
    }
}

/// The same through the experiments' training loop: seeded batches of a data set, evaluation
/// periods, checkpoint selection.
#[test]
fn training_loop_gives_the_same_curves() {
    use experiments::data::Images;
    use experiments::train::{Augment, Metric, Schedule, TrainConfig, train as fit};
    let device = Device::flex().autodiff();
    device.seed(6);
    let cnn = CnnConfig {
        pool_after: vec![0, 2],
        ..CnnConfig::vgg([8, 8, 16, 16, 32], 10)
    };
    let base = cnn.init(&device);
    let n = 200;
    let data = Images {
        pixels: (0..n * 784)
            .map(|i| ((i * 7919) % 257) as f32 / 128.0 - 1.0 + (i / 784 % 10) as f32 * 0.1)
            .collect(),
        dims: vec![28, 28],
        labels: (0..n).map(|i| i % 10).collect(),
    };
    let config = TrainConfig {
        steps: 20,
        batch_size: 32,
        lr: 1e-2,
        seed: 3,
        evals: 2,
        schedule: Schedule::Constant,
        augment: Augment::None,
    };
    for variant in [ConvVariant::Tucker2, ConvVariant::Cp] {
        let layers = plan_ranks(variant, 4, &cnn.geometries(), "blocks.");
        let weight = with_adapters(&base, variant, &layers, false).unwrap();
        let other =
            with_bypass(base.clone(), &weight, variant, ForwardMode::Auto, &device).unwrap();
        let a = fit::<4, _>(
            weight,
            &data,
            Some((&data, Metric::Accuracy)),
            &config,
            &device,
            "w",
        )
        .unwrap();
        let b = fit::<4, _>(
            other,
            &data,
            Some((&data, Metric::Accuracy)),
            &config,
            &device,
            "a",
        )
        .unwrap();
        // The forms sum in different orders (one conv with the recomposed kernel against a
        // conv chain and matmuls), and 20 Adam steps at lr 1e-2 amplify the rounding: the
        // curves agree to about 1e-4 relative, so the bound is 1e-3. A wrong branch (a dropped
        // scale, a transposed factor) moves the loss by far more.
        for (x, y) in a.loss_curve.iter().zip(&b.loss_curve) {
            assert!(
                (x - y).abs() < 1e-3 * x.abs().max(1.0),
                "{variant:?}: {:?} vs {:?}",
                a.loss_curve,
                b.loss_curve
            );
        }
    }
}
