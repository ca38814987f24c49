//! Tests of `crate::train`.

use super::*;

#[test]
fn metrics() {
    let labels = [0, 0, 0, 1];
    let pred = [0, 0, 0, 0];
    assert_eq!(accuracy(&pred, &labels), 0.75);
    assert_eq!(balanced_accuracy(&pred, &labels), 0.5);
    assert_eq!(balanced_accuracy(&labels, &labels), 1.0);
}

#[test]
fn batches_are_full_seeded_and_cover_each_epoch() {
    let mut a = Batches::new(10, 4, 7);
    let mut b = Batches::new(10, 4, 7);
    let first: Vec<Vec<usize>> = (0..2).map(|_| a.next_batch().to_vec()).collect();
    let again: Vec<Vec<usize>> = (0..2).map(|_| b.next_batch().to_vec()).collect();
    assert_eq!(first, again, "same seed, same order");
    let mut seen: Vec<usize> = first.concat();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 8, "no repeat within an epoch");
    // The third batch starts a new epoch (2 left over are dropped): still full.
    assert_eq!(a.next_batch().len(), 4);
    assert_ne!(Batches::new(10, 4, 8).next_batch(), &first[0][..]);
    assert_eq!(Batches::new(3, 64, 0).next_batch().len(), 3);
}

fn tiny_set(n: usize, value: f32) -> Images {
    Images {
        pixels: (0..n * 64).map(|i| value * (i % 7) as f32).collect(),
        dims: vec![8, 8],
        labels: (0..n).map(|i| i % 3).collect(),
    }
}

/// The returned checkpoint scores on the validation set exactly what it scored when it was
/// kept, also when training went on after it: its batch norm running statistics are its
/// own, not shared with the model that kept training (they were, through `clone`, and a
/// default `compare` run tested early checkpoints with the last step's statistics: test
/// accuracy 0.32 at validation accuracy 0.96).
#[test]
fn the_best_checkpoint_keeps_its_own_batch_norm_statistics() {
    let device = Device::flex().autodiff();
    let cnn = crate::model::CnnConfig::vgg([4, 4, 4, 4, 4], 3);
    let train_set = Images {
        pixels: (0..24 * 64)
            .map(|i| ((i * 37 % 11) as f32) / 11.0)
            .collect(),
        dims: vec![8, 8],
        labels: (0..24).map(|i| i % 3).collect(),
    };
    let val_set = tiny_set(9, 0.3);
    let mut early = 0;
    for seed in 0..8 {
        device.seed(seed);
        let config = TrainConfig {
            steps: 12,
            batch_size: 4,
            lr: 3e-2,
            seed,
            evals: 6,
            schedule: Schedule::Constant,
            augment: Augment::None,
        };
        let out = train::<4, _>(
            cnn.init(&device),
            &train_set,
            Some((&val_set, Metric::Accuracy)),
            &config,
            &device,
            "checkpoint",
        )
        .unwrap();
        let again = Metric::Accuracy.score(
            &predict::<4, _>(&out.model, &val_set, &device),
            &val_set.labels,
        );
        assert_eq!(
            again, out.val_score,
            "seed {seed}: best step {}",
            out.best_step
        );
        if out.best_step < out.steps_done {
            early += 1;
        }
    }
    assert!(
        early > 0,
        "no run kept an early checkpoint; the check above proved nothing"
    );
}

/// NaN data and a NaN (or non-positive) learning rate are refused before the first step,
/// naming the run and the value; a run that diverges from finite inputs (a huge rate) stops
/// at the end of the first evaluation period, marked diverged; a sane run takes its whole
/// budget.
#[test]
fn bad_inputs_are_refused_and_divergence_stops_the_run() {
    let device = Device::flex().autodiff();
    device.seed(1);
    let cnn = crate::model::CnnConfig::vgg([2, 2, 2, 2, 2], 3);
    let config = TrainConfig {
        steps: 6,
        batch_size: 4,
        lr: 1e-2,
        seed: 0,
        evals: 3,
        schedule: Schedule::Constant,
        augment: Augment::None,
    };
    let val = tiny_set(6, 0.1);
    let val = Some((&val, Metric::Accuracy));
    let Err(e) = train::<4, _>(
        cnn.init(&device),
        &tiny_set(8, f32::NAN),
        val,
        &config,
        &device,
        "nan-data",
    ) else {
        panic!("NaN data was accepted");
    };
    assert!(
        e.to_string().contains("nan-data") && e.to_string().contains("NaN"),
        "{e}"
    );
    for lr in [f64::NAN, f64::INFINITY, 0.0, -1e-3] {
        let Err(e) = train::<4, _>(
            cnn.init(&device),
            &tiny_set(8, 0.1),
            val,
            &TrainConfig { lr, ..config },
            &device,
            "bad-lr",
        ) else {
            panic!("learning rate {lr} was accepted");
        };
        assert!(
            e.to_string().contains(&format!("learning rate {lr}")),
            "{e}"
        );
    }
    let bad = train::<4, _>(
        cnn.init(&device),
        &tiny_set(8, 0.1),
        val,
        &TrainConfig { lr: 1e30, ..config },
        &device,
        "t",
    )
    .unwrap();
    assert!(bad.diverged, "loss curve {:?}", bad.loss_curve);
    assert_eq!(bad.steps_done, 2);
    assert_eq!(bad.loss_curve.len(), 1);
    assert!(!bad.loss_curve[0].is_finite());
    let good = train::<4, _>(
        cnn.init(&device),
        &tiny_set(8, 0.1),
        val,
        &config,
        &device,
        "t",
    )
    .unwrap();
    assert!(!good.diverged);
    assert_eq!(good.steps_done, 6);
    assert_eq!(good.eval_steps, vec![2, 4, 6]);
    assert!(good.loss_curve.iter().all(|l| l.is_finite()));
    // The returned checkpoint is the best on validation (the first best on ties).
    let best = good
        .val_curve
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let at = good.val_curve.iter().position(|&v| v == best).unwrap();
    assert_eq!(good.best_step, good.eval_steps[at]);
    assert_eq!(good.val_score, best);
    assert!(good.seconds > 0.0);
}

#[test]
fn confusion_and_recall() {
    let (recall, m) = confusion(&[0, 1, 1, 2], &[0, 1, 2, 2], 4);
    assert_eq!(m[2], vec![0, 1, 1, 0]);
    assert_eq!(m[0][0], 1);
    assert_eq!(&recall[..3], &[1.0, 1.0, 0.5]);
    assert!(recall[3].is_nan());
}

#[test]
fn cross_entropy_matches_the_formula() {
    let device = Device::flex();
    let logits = Tensor::<2>::from_data([[1.0f32, 2.0, 3.0], [0.0, 0.0, 0.0]], &device);
    let labels = Tensor::<1, Int>::from_data([2i64, 0], &device);
    let got = cross_entropy(logits, labels).into_scalar::<f32>();
    let a = -(3.0f32.exp() / (1.0f32.exp() + 2.0f32.exp() + 3.0f32.exp())).ln();
    let b = 3.0f32.ln();
    assert!((got - (a + b) / 2.0).abs() < 1e-6);
}
