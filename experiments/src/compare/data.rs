//! `compare`'s data: Fashion-MNIST for pretraining (with its cached checkpoint), MNIST split
//! into a training pool, a validation split and a test split.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Device;

use super::plan::{PRETRAIN_SEED, Plan, PretrainPlan};
use crate::data::idx::read_images;
use crate::data::mnist_json::read_digits;
use crate::data::split::stratified;
use crate::data::{Images, require};
use crate::error::{ExpError, Result};
use crate::model::Cnn;
use crate::record::write_atomic;
use crate::train::{Metric, TrainConfig, predict, train};

/// Fashion-MNIST's pixel mean and standard deviation (of `pixel/255` over the training set),
/// applied to both datasets.
const MEAN: f32 = 0.286;
const STD: f32 = 0.353;

fn normalise(mut images: Images) -> Images {
    for p in &mut images.pixels {
        *p = (*p - MEAN) / STD;
    }
    images
}

/// Labels must lie in `0..classes`.
///
/// # Errors
/// [`ExpError::Input`] naming the file, the label and the range.
pub fn check_labels(set: &Images, classes: usize, file: &Path) -> Result<()> {
    match set.labels.iter().find(|&&l| l >= classes) {
        Some(l) => Err(ExpError::Input(format!(
            "{}: label {l} is out of range 0..{classes}",
            file.display()
        ))),
        None => Ok(()),
    }
}

fn fashion_files(data: &Path, split: &str) -> Result<(PathBuf, PathBuf)> {
    let dir = data.join("fashion-mnist");
    let file = |kind: &str| require(data, dir.join(format!("{split}-{kind}.gz")));
    Ok((file("images-idx3-ubyte")?, file("labels-idx1-ubyte")?))
}

/// One Fashion-MNIST split (`train` or `t10k`), normalised, labels checked.
///
/// # Errors
/// Missing or malformed files, labels out of range.
pub fn load_fashion(data: &Path, split: &str) -> Result<Images> {
    let (images, labels) = fashion_files(data, split)?;
    let set = read_images(&images, &labels)?;
    check_labels(&set, 10, &labels)?;
    Ok(normalise(set))
}

/// Check that the Fashion-MNIST training files exist (they are read only to pretrain).
///
/// # Errors
/// Missing files, with the fetch command.
pub fn require_fashion_train(data: &Path) -> Result<()> {
    fashion_files(data, "train").map(|_| ())
}

/// MNIST: the training pool, the validation split and the test split.
#[derive(Debug, Clone)]
pub struct Mnist {
    /// Training pool: the settings draw their labelled examples from it.
    pub pool: Images,
    /// Validation split.
    pub val: Images,
    /// Test split.
    pub test: Images,
}

impl Mnist {
    /// The training set of a setting for a seed: the whole pool if the setting is as large,
    /// else a stratified subset drawn with the seed (the same for every method).
    pub fn train_set(&self, setting: usize, seed: u64) -> Images {
        if setting >= self.pool.len() {
            return self.pool.clone();
        }
        let (idx, _) = stratified(&self.pool.labels, setting, 0, 500 + seed);
        self.pool.select(&idx)
    }
}

/// MNIST split into disjoint stratified test, validation and pool sets (seed 0).
///
/// # Errors
/// Missing or malformed files, or fewer images than the splits need.
pub fn load_mnist(data: &Path, plan: &Plan) -> Result<Mnist> {
    let all = normalise(read_digits(data, &data.join("mnist"))?);
    let need = plan.pool_examples + plan.val_examples + plan.test_examples;
    if all.len() < need {
        return Err(ExpError::Input(format!(
            "{}: {} MNIST images, but the plan needs {need} (pool {} + validation {} + test {})",
            data.join("mnist").display(),
            all.len(),
            plan.pool_examples,
            plan.val_examples,
            plan.test_examples
        )));
    }
    if let Some(&n) = plan.settings.iter().find(|&&n| n > plan.pool_examples) {
        return Err(ExpError::Input(format!(
            "setting of {n} labels exceeds the training pool of {}",
            plan.pool_examples
        )));
    }
    let (rest, test) = stratified(&all.labels, all.len(), plan.test_examples, 0);
    let rest = all.select(&rest);
    let (pool, val) = stratified(&rest.labels, plan.pool_examples, plan.val_examples, 1);
    Ok(Mnist {
        pool: rest.select(&pool),
        val: rest.select(&val),
        test: all.select(&test),
    })
}

/// FNV-1a over bytes, continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The pretraining cache key: the pretraining plan, the crate version, and the bytes of the
/// Fashion-MNIST training files.
///
/// # Errors
/// Missing or unreadable files.
pub fn cache_key(plan: &PretrainPlan, data: &Path) -> Result<u64> {
    let text = serde_json::to_string(&(plan, PRETRAIN_SEED, env!("CARGO_PKG_VERSION")))
        .map_err(|e| ExpError::Input(format!("serialising the pretraining plan: {e}")))?;
    let mut h = fnv(0xcbf2_9ce4_8422_2325, text.as_bytes());
    let (images, labels) = fashion_files(data, "train")?;
    for file in [images, labels] {
        let bytes = std::fs::read(&file)
            .map_err(crate::error::io(format!("reading {}", file.display())))?;
        h = fnv(h, &bytes);
    }
    Ok(h)
}

/// The pretrained CNN and what is known about it.
#[derive(Debug)]
pub struct Pretrained {
    /// The network.
    pub model: Cnn<Conv2d>,
    /// Fashion-MNIST test accuracy.
    pub test_accuracy: f64,
    /// Loaded from the cache.
    pub cached: bool,
    /// Mean training loss per epoch (empty when cached).
    pub loss_curve: Vec<f64>,
    /// The checkpoint file.
    pub path: PathBuf,
}

/// Pretrain on Fashion-MNIST, or load the checkpoint cached under `cache` for this plan, data
/// and crate version. The checkpoint is written atomically.
///
/// # Errors
/// Data or checkpoint errors; a pretraining run that diverges.
pub fn pretrained(
    plan: &PretrainPlan,
    data: &Path,
    cache: &Path,
    fashion_test: &Images,
    device: &Device,
) -> Result<Pretrained> {
    let hash = cache_key(plan, data)?;
    let path = cache.join(format!("pretrained-{hash:016x}.bin"));
    let test =
        fashion_test.select(&(0..plan.test_examples.min(fashion_test.len())).collect::<Vec<_>>());
    device.seed(PRETRAIN_SEED);
    let fresh = plan.cnn.init(device);
    let checkpoint = |reason: String| ExpError::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    let mut loss_curve = Vec::new();
    let (model, cached) = if path.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| checkpoint(e.to_string()))?;
        let record =
            burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
                .map_err(|e| checkpoint(format!("{e:?}")))?;
        (fresh.load_record(record), true)
    } else {
        let fashion = load_fashion(data, "train")?;
        let (subset, _) = stratified(&fashion.labels, plan.examples, 0, 0);
        let subset = fashion.select(&subset);
        let per_epoch = (subset.len() / plan.batch_size.max(1)).max(1);
        let config = TrainConfig {
            steps: per_epoch * plan.epochs,
            batch_size: plan.batch_size,
            lr: plan.lr,
            seed: PRETRAIN_SEED,
            evals: plan.epochs,
        };
        let trained = train::<4, _>(fresh, &subset, None, &config, device, "pretrain")?;
        if trained.diverged {
            return Err(ExpError::Input(format!(
                "pretraining diverged (loss {:?}); lower the pretraining rate",
                trained.loss_curve
            )));
        }
        loss_curve = trained.loss_curve;
        let bytes = trained
            .model
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| checkpoint(format!("{e:?}")))?;
        write_atomic(&path, &bytes[..])?;
        (trained.model, false)
    };
    let test_accuracy =
        Metric::Accuracy.score(&predict::<4, _>(&model, &test, device), &test.labels);
    Ok(Pretrained {
        model,
        test_accuracy,
        cached,
        loss_curve,
        path,
    })
}
