//! Training and evaluation loops, shared by the binaries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Shape, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

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

/// A training batch: [`batch`], with each example under a symmetry drawn from `rng` when
/// `augment` asks for one.
///
/// # Panics
/// As [`batch`]; with [`Augment::Dihedral`], if the examples are not square 2D images (the
/// plan's `check` refuses that first).
pub fn augmented_batch<const N: usize>(
    data: &Images,
    idx: &[usize],
    augment: Augment,
    rng: &mut StdRng,
    device: &Device,
) -> (Tensor<N>, Tensor<1, Int>) {
    match augment {
        Augment::None => batch::<N>(data, idx, device),
        Augment::Dihedral => {
            let mut part = data.select(idx);
            let n = data.dims[0];
            let size = n * n;
            let mut tmp = vec![0f32; size];
            for k in 0..idx.len() {
                let t = rng.random_range(0..8usize);
                let image = &mut part.pixels[k * size..(k + 1) * size];
                crate::data::augment::dihedral(image, n, t, &mut tmp);
                image.copy_from_slice(&tmp);
            }
            let all: Vec<usize> = (0..idx.len()).collect();
            batch::<N>(&part, &all, device)
        }
    }
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
    /// Adam learning rate (at the first step; see `schedule`).
    pub lr: f64,
    /// Seed of the data order.
    pub seed: u64,
    /// Evaluation periods: the training loss is averaged and the validation accuracy measured
    /// at the end of each of `evals` equal slices of the steps.
    pub evals: usize,
    /// How the rate changes over the steps.
    pub schedule: Schedule,
    /// What each training example goes through before its batch.
    pub augment: Augment,
}

/// The learning rate over a run of `steps` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    /// `lr` at every step.
    #[default]
    Constant,
    /// Cosine decay from `lr` at step 1 towards 0: `lr · (1 + cos(π·(t−1)/steps)) / 2` at step
    /// `t` (1-based), so the last step still moves.
    Cosine,
}

impl Schedule {
    /// The rate at step `t` (1-based) of `steps`, for a base rate `lr`.
    pub fn rate(self, lr: f64, t: usize, steps: usize) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Cosine => {
                let progress = t.saturating_sub(1) as f64 / steps.max(1) as f64;
                lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }
}

/// Augmentation of training examples (validation and test examples are never augmented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Augment {
    /// Examples as they are.
    #[default]
    None,
    /// Each example of a batch under one of the 8 symmetries of the square, drawn uniformly
    /// from the run's seed ([`crate::data::augment::dihedral`]); square 2D examples only.
    Dihedral,
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
    // Augmentation draws from its own stream, so the data order is the same with or without it.
    let mut augment_rng = StdRng::seed_from_u64(config.seed ^ 0xA5A5_5A5A_D1E7_0001);
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
        let (x, y) = augmented_batch::<N>(
            data,
            batches.next_batch(),
            config.augment,
            &mut augment_rng,
            device,
        );
        let loss = cross_entropy(model.logits(x), y);
        let detached = loss.clone().detach();
        loss_sum = Some(match loss_sum {
            Some(s) => s + detached,
            None => detached,
        });
        in_period += 1;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(
            config.schedule.rate(config.lr, step, config.steps),
            model,
            grads,
        );
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
mod tests;
