//! Training and evaluation loops, shared by the binaries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Shape, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use crate::data::Images;
use crate::error::{ExpError, Result};
use crate::model::{Cnn, Cnn3d, Conv2dLike};

/// A classifier on inputs of rank `N` (`[B, 1, H, W]` or `[B, 1, D, H, W]`).
pub trait Classifier<const N: usize>: Module {
    /// Logits `[B, classes]`.
    fn logits(&self, x: Tensor<N>) -> Tensor<2>;
}

impl<C: Conv2dLike> Classifier<4> for Cnn<C> {
    fn logits(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward(x)
    }
}

impl Classifier<5> for Cnn3d {
    fn logits(&self, x: Tensor<5>) -> Tensor<2> {
        self.forward(x)
    }
}

/// A batch of examples as `[B, 1, dims..]` and their labels.
///
/// # Panics
/// If `N` is not the example rank + 2 (a programmer error).
pub fn batch<const N: usize>(
    data: &Images,
    idx: &[usize],
    device: &Device,
) -> (Tensor<N>, Tensor<1, Int>) {
    let part = data.select(idx);
    let mut shape = vec![idx.len(), 1];
    shape.extend_from_slice(&data.dims);
    let x = Tensor::<N>::from_data(TensorData::new(part.pixels, Shape::from(shape)), device);
    let labels: Vec<i64> = part.labels.iter().map(|&l| l as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [idx.len()]), device);
    (x, y)
}

/// Mean cross-entropy of logits `[B, K]` against labels `[B]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([b, 1]));
    picked.mean().neg()
}

/// A progress bar with ETA for `steps` steps (hidden when stderr is not a terminal).
pub fn progress(steps: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(steps);
    let style = ProgressStyle::with_template(
        "{msg:40} [{bar:30}] {pos}/{len} steps  {elapsed_precise}  eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_string());
    bar
}

/// Optimisation settings of one run, counted in optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step (capped at the training-set size).
    pub batch_size: usize,
    /// Adam learning rate (constant).
    pub lr: f64,
    /// Seed of the data order.
    pub seed: u64,
    /// Evaluation periods: the training loss is averaged and the validation accuracy measured
    /// at the end of each of `evals` equal slices of the steps.
    pub evals: usize,
}

/// How validation is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Fraction correct.
    Accuracy,
    /// Mean per-class recall.
    Balanced,
}

impl Metric {
    /// Score predictions.
    pub fn score(self, pred: &[usize], labels: &[usize]) -> f64 {
        match self {
            Metric::Accuracy => accuracy(pred, labels),
            Metric::Balanced => balanced_accuracy(pred, labels),
        }
    }
}

/// Batches of a fixed size from seeded epochs: each epoch is a fresh permutation of the
/// examples, and a remainder smaller than a batch is dropped, so every step sees a full batch.
/// The same seed gives the same sequence, whatever model it feeds.
#[derive(Debug)]
pub struct Batches {
    order: Vec<usize>,
    pos: usize,
    batch: usize,
    rng: StdRng,
}

impl Batches {
    /// Batches of `batch` (at most `n`) indices out of `0..n`.
    pub fn new(n: usize, batch: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        Self {
            order,
            pos: 0,
            batch: batch.min(n).max(1),
            rng,
        }
    }

    /// The next batch.
    pub fn next_batch(&mut self) -> &[usize] {
        if self.pos + self.batch > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.pos = 0;
        }
        let out = &self.order[self.pos..self.pos + self.batch];
        self.pos += self.batch;
        out
    }
}

/// What [`train`] returns.
#[derive(Debug)]
pub struct Trained<M> {
    /// The checkpoint with the best validation score (the last one without validation data).
    pub model: M,
    /// Mean training loss of each evaluation period.
    pub loss_curve: Vec<f64>,
    /// Validation score at the end of each period (empty without validation data).
    pub val_curve: Vec<f64>,
    /// The step at the end of each period.
    pub eval_steps: Vec<usize>,
    /// Validation score of the returned checkpoint (`NaN` without validation data).
    pub val_score: f64,
    /// Step of the returned checkpoint.
    pub best_step: usize,
    /// Steps actually taken (fewer when the run diverged).
    pub steps_done: usize,
    /// Whether a NaN or infinite loss stopped the run.
    pub diverged: bool,
    /// Training wall time, evaluation excluded, with the device synced before each clock read.
    pub seconds: f64,
}

/// Train `model` (on an autodiff device) with Adam for `config.steps` steps. At the end of each
/// evaluation period the mean loss is read (a NaN or infinite one stops the run as diverged)
/// and, given validation data, the model is scored on it in inference mode; the best checkpoint
/// is kept (early stopping by checkpoint selection: the step budget stays the same for every
/// method).
///
/// Batch norm layers whose `training` flag is on use batch statistics and update their running
/// statistics, whether or not their affine parameters are trainable.
///
/// # Errors
/// [`ExpError::Input`], before the first step, for a learning rate that is not a finite
/// positive number or training data holding a NaN or an infinity (either would poison the
/// model silently; a run that diverges from finite inputs is recorded as diverged instead).
pub fn train<const N: usize, M: Classifier<N>>(
    model: M,
    data: &Images,
    val: Option<(&Images, Metric)>,
    config: &TrainConfig,
    device: &Device,
    what: &str,
) -> Result<Trained<M>> {
    if !(config.lr.is_finite() && config.lr > 0.0) {
        return Err(ExpError::Input(format!(
            "{what}: learning rate {} must be a finite positive number",
            config.lr
        )));
    }
    if let Some((i, v)) = data.pixels.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ExpError::Input(format!(
            "{what}: training value {i} (example {}) is {v}; the data must be finite",
            i / data.example_size().max(1)
        )));
    }
    let bar = progress(config.steps as u64, what);
    let mut optim = AdamConfig::new().init();
    let mut batches = Batches::new(data.len(), config.batch_size, config.seed);
    let period = config.steps.div_ceil(config.evals.max(1)).max(1);
    let mut out = Trained {
        model: model.clone(),
        loss_curve: Vec::new(),
        val_curve: Vec::new(),
        eval_steps: Vec::new(),
        val_score: f64::NAN,
        best_step: 0,
        steps_done: 0,
        diverged: false,
        seconds: 0.0,
    };
    let mut model = model;
    let mut best = f64::NEG_INFINITY;
    let _ = device.sync();
    let mut clock = Instant::now();
    let mut loss_sum: Option<Tensor<1>> = None;
    let mut in_period = 0usize;
    for step in 1..=config.steps {
        let (x, y) = batch::<N>(data, batches.next_batch(), device);
        let loss = cross_entropy(model.logits(x), y);
        let detached = loss.clone().detach();
        loss_sum = Some(match loss_sum {
            Some(s) => s + detached,
            None => detached,
        });
        in_period += 1;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(config.lr, model, grads);
        bar.inc(1);
        if step % period == 0 || step == config.steps {
            let mean = loss_sum
                .take()
                .map_or(f64::NAN, |s| f64::from(s.into_scalar::<f32>()))
                / in_period as f64;
            let _ = device.sync();
            out.seconds += clock.elapsed().as_secs_f64();
            out.steps_done = step;
            in_period = 0;
            out.loss_curve.push(mean);
            out.eval_steps.push(step);
            if !mean.is_finite() {
                out.diverged = true;
                break;
            }
            match val {
                Some((set, metric)) => {
                    let score = metric.score(&predict::<N, M>(&model, set, device), &set.labels);
                    out.val_curve.push(score);
                    if score > best {
                        best = score;
                        out.val_score = score;
                        out.best_step = step;
                        // A deep copy: `clone` shares batch norm's running statistics (burn's
                        // `RunningState` is shared mutable state), so later steps would move
                        // the checkpoint's statistics away from its weights. `valid` snapshots
                        // them; `train` makes the copy trainable again.
                        out.model = model.valid().train();
                    }
                }
                None => {
                    out.best_step = step;
                    out.model = model.clone();
                }
            }
            let _ = device.sync();
            clock = Instant::now();
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Recall per class `0..classes` (`NaN` for a class absent from `labels`) and the confusion
/// matrix `[true][predicted]`.
pub fn confusion(pred: &[usize], labels: &[usize], classes: usize) -> (Vec<f64>, Vec<Vec<usize>>) {
    let mut matrix = vec![vec![0usize; classes]; classes];
    for (&p, &l) in pred.iter().zip(labels) {
        if p < classes && l < classes {
            matrix[l][p] += 1;
        }
    }
    let recall = matrix
        .iter()
        .enumerate()
        .map(|(c, row)| {
            let total: usize = row.iter().sum();
            if total == 0 {
                f64::NAN
            } else {
                row[c] as f64 / total as f64
            }
        })
        .collect();
    (recall, matrix)
}

/// Predicted classes for every example (inference mode: batch norm uses running statistics).
pub fn predict<const N: usize, M: Classifier<N>>(
    model: &M,
    data: &Images,
    device: &Device,
) -> Vec<usize> {
    let model = model.valid();
    let device = device.clone().inner();
    let all: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for chunk in all.chunks(256) {
        let (x, _) = batch::<N>(data, chunk, &device);
        let pred = model.logits(x).argmax(1).into_data();
        out.extend(pred.iter::<i64>().map(|p| p as usize));
    }
    out
}

/// Fraction of correct predictions.
pub fn accuracy(pred: &[usize], labels: &[usize]) -> f64 {
    let correct = pred.iter().zip(labels).filter(|(p, l)| p == l).count();
    correct as f64 / labels.len().max(1) as f64
}

/// Mean over the classes present in `labels` of the per-class recall.
pub fn balanced_accuracy(pred: &[usize], labels: &[usize]) -> f64 {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut hit = vec![0usize; classes];
    let mut total = vec![0usize; classes];
    for (&p, &l) in pred.iter().zip(labels) {
        total[l] += 1;
        if p == l {
            hit[l] += 1;
        }
    }
    let recalls: Vec<f64> = hit
        .iter()
        .zip(&total)
        .filter(|(_, t)| **t > 0)
        .map(|(h, t)| *h as f64 / *t as f64)
        .collect();
    recalls.iter().sum::<f64>() / recalls.len().max(1) as f64
}

static TRACK_MEMORY: AtomicBool = AtomicBool::new(true);

/// Whether [`peak_memory_bytes`] reports anything: process memory says nothing about a GPU's,
/// so the binaries turn it off for `wgpu` and `cuda`.
pub fn track_memory(on: bool) {
    TRACK_MEMORY.store(on, Ordering::Relaxed);
}

/// Peak resident memory of this process since the last [`reset_peak_memory`], in bytes (Linux
/// `VmHWM`), or `None` where it cannot be read or is not tracked.
pub fn peak_memory_bytes() -> Option<u64> {
    if !TRACK_MEMORY.load(Ordering::Relaxed) {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Reset the peak-memory mark (Linux: `echo 5 > /proc/self/clear_refs`); returns whether it
/// worked.
pub fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
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
}
