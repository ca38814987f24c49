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

/// Optimisation settings of one run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam learning rate (constant).
    pub lr: f64,
    /// Seed for the data order.
    pub seed: u64,
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

/// Train `model` (on an autodiff device) with Adam; returns the model and the wall time.
///
/// Batch norm layers whose `training` flag is on use batch statistics and update their running
/// statistics, whether or not their affine parameters are trainable.
pub fn train<const N: usize, M: Classifier<N>>(
    mut model: M,
    data: &Images,
    config: &TrainConfig,
    device: &Device,
    what: &str,
) -> (M, f64) {
    let n = data.len();
    let steps_per_epoch = n.div_ceil(config.batch_size.max(1));
    let bar = progress((steps_per_epoch * config.epochs) as u64, what);
    let mut optim = AdamConfig::new().init();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let start = Instant::now();
    let mut order: Vec<usize> = (0..n).collect();
    for _ in 0..config.epochs {
        order.shuffle(&mut rng);
        for chunk in order.chunks(config.batch_size.max(1)) {
            if chunk.len() < 2 {
                continue; // batch norm needs two examples
            }
            let (x, y) = batch::<N>(data, chunk, device);
            let loss = cross_entropy(model.logits(x), y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(config.lr, model, grads);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    (model, start.elapsed().as_secs_f64())
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

/// What a run is, for its [`Run`](crate::report::Run) record.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    /// Task name.
    pub task: &'a str,
    /// Method name.
    pub method: String,
    /// Rank.
    pub rank: Option<usize>,
    /// Forward mode.
    pub forward: Option<&'a str>,
    /// Whether to score with balanced accuracy.
    pub balanced: bool,
}

/// Train `model` on `train_set`, score it on `test_set`, and record the run: parameter counts
/// (trainable as `Module::train` restores them), wall time and peak memory.
pub fn one_run<const N: usize, M: Classifier<N>>(
    model: M,
    spec: &RunSpec<'_>,
    train_set: &Images,
    test_set: &Images,
    config: &TrainConfig,
    device: &Device,
) -> crate::report::Run {
    let counts = lora_core::param_counts(&model);
    reset_peak_memory();
    let label = format!(
        "{} {} r{} s{}",
        spec.task,
        spec.method,
        spec.rank.map_or("-".into(), |r| r.to_string()),
        config.seed
    );
    let (model, seconds) = train::<N, M>(model, train_set, config, device, &label);
    let peak = peak_memory_bytes();
    let pred = predict::<N, M>(&model, test_set, device);
    let score = if spec.balanced {
        balanced_accuracy(&pred, &test_set.labels)
    } else {
        accuracy(&pred, &test_set.labels)
    };
    crate::report::Run {
        task: spec.task.to_string(),
        method: spec.method.clone(),
        rank: spec.rank,
        forward: spec.forward.map(str::to_string),
        seed: config.seed,
        train_examples: train_set.len(),
        trainable_params: counts.trainable,
        total_params: counts.total,
        test_accuracy: score,
        train_seconds: seconds,
        peak_memory_bytes: peak,
    }
}
