//! Pretraining on Fashion-MNIST, shared by the studies that fine-tune its network (`compare`,
//! `inflate3d`): the pretraining plan, the Fashion-MNIST files, and the checkpoint cache keyed
//! by the plan, the data and the crate version.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::cli::Overrides;
use crate::data::idx::read_images;
use crate::data::split::stratified;
use crate::data::{Images, require};
use crate::error::{ExpError, Result};
use crate::harness::dataset::DataShape;
use crate::harness::runlog::write_atomic;
use crate::model::{Cnn, CnnConfig};
use crate::train::{Augment, Metric, Schedule, TrainConfig, predict, train};

/// Seed of the pretraining run (init and data order).
pub const PRETRAIN_SEED: u64 = 0;

/// Fashion-MNIST's classes.
pub const FASHION_CLASSES: usize = 10;

/// Pretraining on Fashion-MNIST.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainPlan {
    /// The CNN.
    pub cnn: CnnConfig,
    /// Fashion-MNIST training examples used (of 60,000; stratified).
    pub examples: usize,
    /// Fashion-MNIST test examples scored (of 10,000).
    pub test_examples: usize,
    /// Passes over the examples.
    pub epochs: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl PretrainPlan {
    /// The `--quick` (smoke) or default pretraining, with the command line's overrides of the
    /// CNN's shape and the epochs.
    pub fn new(quick: bool, o: &Overrides) -> Self {
        let cnn = |widths| CnnConfig {
            pool_after: vec![0, 2],
            ..CnnConfig::vgg(widths, FASHION_CLASSES)
        };
        let mut plan = if quick {
            Self {
                cnn: cnn([8, 8, 16, 16, 32]),
                examples: 3000,
                test_examples: 1000,
                epochs: 1,
                batch_size: 64,
                lr: 2e-3,
            }
        } else {
            Self {
                // Half the reference CNN's widths (32-32-64-64-128, 140,778 parameters): at
                // the reference widths the `compare` plan measured about 3.5 hours on 2 CPU
                // cores; at these about one. `--widths 32-32-64-64-128` runs the reference.
                cnn: cnn([16, 16, 32, 32, 64]),
                examples: 60_000,
                test_examples: 10_000,
                epochs: 2,
                batch_size: 64,
                lr: 1e-3,
            }
        };
        if let Some(w) = &o.widths {
            plan.cnn.widths.clone_from(w);
        }
        if let Some(p) = &o.pool_after {
            plan.cnn.pool_after.clone_from(p);
        }
        if let Some(e) = o.pretrain_epochs {
            plan.epochs = e;
        }
        plan
    }

    /// The input the pretrained network takes (and fine-tuning data must have): Fashion-MNIST's
    /// examples.
    pub fn input(&self) -> DataShape {
        DataShape {
            channels: self.cnn.in_channels,
            dims: FASHION_DIMS.to_vec(),
            classes: self.cnn.classes,
        }
    }
}

/// The size of a Fashion-MNIST image, as its IDX files store it.
const FASHION_DIMS: [usize; 2] = [28, 28];

/// Fashion-MNIST's pixel mean and standard deviation (of `pixel/255` over the training set),
/// applied to both datasets.
const MEAN: f32 = 0.286;
const STD: f32 = 0.353;

/// Standardise pixels with Fashion-MNIST's statistics (the fine-tuning data of the studies
/// built on it gets the same).
pub fn normalise(mut images: Images) -> Images {
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
    check_labels(&set, FASHION_CLASSES, &labels)?;
    Ok(normalise(set))
}

/// Check that the Fashion-MNIST training files exist (they are read only to pretrain).
///
/// # Errors
/// Missing files, with the fetch command.
pub fn require_fashion_train(data: &Path) -> Result<()> {
    fashion_files(data, "train").map(|_| ())
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
            schedule: Schedule::Constant,
            augment: Augment::None,
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
